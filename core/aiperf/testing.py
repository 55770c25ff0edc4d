"""A kit for testing aiperf plugins, and aiperf itself, without a benchmark.

Importable without pytest; plugins import it in their own tests::

    from aiperf.testing import check_sink, fake_stream, make_run, run_sink

    def test_my_sink(tmp_path):
        check_sink(MySink)                       # the contract every live sink keeps
        sink = MySink()
        outcome = run_sink(sink, fake_stream(20), run=make_run(tmp_path))
        assert 20 == outcome.requests

What is here:

- :func:`make_run`: a :class:`aiperf.RunContext` as a hook or a sink gets it;
  :func:`make_result`: the :class:`aiperf.RunResult` of a stream of events.
- :func:`fake_records` and :func:`fake_stream`: realistic finished requests, and the live
  events a sink sees during a run (every kind of event, in the order the core sends them).
- :func:`run_sink`: a sink driven through its whole lifecycle, as ``aiperf profile`` does;
  :func:`drive_sink` is the same inside a trio test.
- :class:`LoopbackServer`: a base class for an HTTP server on loopback that records what it
  received (subclass it to answer differently); :class:`MockServer`: ``aiperf mock-server``
  for a ``with`` block.
- :func:`check_sink`, :func:`check_exporter`, :func:`check_endpoint`: the contracts the core
  relies on; each raises :class:`AssertionError` naming what the plugin got wrong.

The mock server runs in its own process (and process group) so that its CPU time never
competes with the client under test inside one interpreter, and it is always stopped on exit::

    with MockServer(ttft_ms=50, itl_ms=10) as server:
        ...  # send requests to server.url
        truth = server.stats()
        assert truth["ttft_ms"]["count"] == 64
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

import attrs

from aiperf.mock_server import LISTENING_PREFIX

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import (
        LiveEvent,
        LiveSink,
        Phase,
        RequestDone,
        RequestRecord,
        RunContext,
        RunResult,
        RunStatus,
    )

__all__ = [
    "LoopbackServer",
    "MockServer",
    "MockServerError",
    "Received",
    "Reply",
    "SinkRun",
    "WordTokenizer",
    "check_endpoint",
    "check_exporter",
    "check_sink",
    "drive_sink",
    "fake_records",
    "fake_stream",
    "free_port",
    "make_result",
    "make_run",
    "request_done",
    "run_sink",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago.

    Another process may take it before you bind it; prefer letting the server pick
    (``port=0``) and reading the port it reports, as :class:`MockServer` does.
    """
    with socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
    ) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MockServerError(RuntimeError):
    """The mock server did not start, or stopped answering."""


class MockServer:
    """``aiperf mock-server`` in a subprocess, for the length of a ``with`` block.

    Keyword arguments are :class:`aiperf.mock_server.MockServerConfig` fields (``ttft_ms``,
    ``itl_ms``, ``output_tokens``, ``tokens_per_chunk``, ``error_rate``, ``error_status``,
    ``faults={"reset": 0.5}``, ``stall_seconds``, ``seed``, ...). They are checked before the
    process starts, so a bad value raises :class:`aiperf.UsageError` here.
    """

    def __init__(self, *, start_timeout: float = 15.0, **options: Any) -> None:
        from aiperf._mock.config import MockServerConfig

        self.config = MockServerConfig(**{"port": 0, **options})
        self.start_timeout = start_timeout
        self.url = ""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start the process and wait for its listening line."""
        if self.process is not None:
            raise MockServerError("the mock server is already running")
        # Kept open for the server's lifetime (closed in stop()) so a failed start can be explained.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiperf.mock_server", *self.config.to_argv()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        try:
            line = self._read_listening_line()
        except BaseException:
            self.stop()
            raise
        self.url = line[len(LISTENING_PREFIX) :].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def _read_listening_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MockServerError(
                        f"the mock server did not report its port within {self.start_timeout} s"
                        + self._stderr_tail()
                    )
                if sel.select(remaining):
                    break
        line = stdout.readline().decode("utf-8", "replace")
        if not line.startswith(LISTENING_PREFIX):
            self.process.wait(timeout=self.start_timeout)
            raise MockServerError(
                f"the mock server exited with code {self.process.returncode}" + self._stderr_tail()
            )
        return line

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return f": {text[-2000:]}" if text else ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(process, signal.SIGKILL)
                    process.wait(timeout=timeout)
            else:
                # The server is gone, but anything it started may not be.
                _signal_group(process, signal.SIGKILL)
        finally:
            if process.stdout is not None:
                process.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    # -- ground truth ----------------------------------------------------------------------------

    def stats(self, *, raw: bool = False) -> dict[str, Any]:
        """``GET /stats`` (``?raw=1`` with ``raw=True``): what the server measured."""
        return self._call("GET", "/stats?raw=1" if raw else "/stats")

    def reset_stats(self) -> None:
        """``POST /stats/reset``: start a new measurement window."""
        self._call("POST", "/stats/reset")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        if not self.url:
            raise MockServerError("the mock server is not running")
        request = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None
        )
        # The server is on loopback; a proxy from the environment must not be used.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except ProcessLookupError:
        pass


# -- a run, and its result -------------------------------------------------------------------

#: the fixed (wall, perf) anchor of :func:`make_run`: times in tests are reproducible.
ANCHOR_WALL_NS = 1_700_000_000_000_000_000
ANCHOR_PERF_NS = 1_000_000_000_000


class WordTokenizer:
    """A tokenizer that counts words: one token per whitespace-separated word."""

    name = "words"

    def encode(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join("w" * max(1, i) for i in ids)

    def count(self, text: str) -> int:
        return len(text.split())


def make_run(
    run_dir: str | os.PathLike[str] | None = None,
    *,
    config: ProfileConfig | None = None,
    plugin_options: dict[str, Any] | None = None,
    **fields: Any,
) -> RunContext:
    """A :class:`aiperf.RunContext` as hooks and sinks get it from ``aiperf profile``.

    :param run_dir: the run directory, created if missing; when omitted, a new temporary one
        that nothing removes (in a test, pass pytest's ``tmp_path``).
    :param config: the run's configuration; by default ``ProfileConfig(model="test-model",
        url="http://127.0.0.1:8000", streaming=True, plugin_options=plugin_options)``.
    :param plugin_options: your flags' values as the CLI would pass them (``{"my_flag": 1}``),
        when ``config`` is not given.
    :param fields: any other :class:`aiperf.RunContext` field (``phase``, ``metrics``, ...).
        The server's address and port, the provider and the load setting follow ``config``
        unless given here.
    """
    from urllib.parse import urlsplit

    from aiperf import __version__
    from aiperf._config import ProfileConfig
    from aiperf._provider import infer_provider
    from aiperf._types import RunContext

    if config is None:
        config = ProfileConfig(
            model="test-model",
            url="http://127.0.0.1:8000",
            streaming=True,
            plugin_options=dict(plugin_options or {}),
        )
    elif plugin_options is not None:
        raise TypeError("make_run: give plugin_options or config, not both")
    if run_dir is None:
        path = Path(tempfile.mkdtemp(prefix="aiperf-test-run-"))
    else:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
    parts = urlsplit(config.url)
    values: dict[str, Any] = {
        "config": config,
        "run_dir": path,
        "benchmark_id": "0123456789abcdef0123456789abcdef",
        "version": __version__,
        "provider": infer_provider(config.url, config.gen_ai_provider, None),
        "operation_name": "chat",
        "server_address": parts.hostname or "",
        "server_port": parts.port or (443 if parts.scheme == "https" else 80),
        "load_setting": config.load_setting,
        "anchor_wall_ns": ANCHOR_WALL_NS,
        "anchor_perf_ns": ANCHOR_PERF_NS,
        "tokenizer": WordTokenizer(),
    }
    values.update(fields)
    return RunContext(**values)


def _scratch_run() -> RunContext:
    """A run for making events only: its directory is the system's temporary one, untouched."""
    return make_run(tempfile.gettempdir())


def make_result(
    run: RunContext,
    events: Iterable[LiveEvent] | None = None,
    *,
    status: RunStatus | None = None,
) -> RunResult:
    """The :class:`aiperf.RunResult` the core would hand exporters after ``events`` (by default
    :func:`fake_stream` of ``run``): statistics of the measured phase's requests, errors by type.
    """
    from aiperf._stats import Aggregator
    from aiperf._types import RequestDone, RunResult, RunStatus

    agg = Aggregator(specs=dict(run.metrics))
    for event in fake_stream(run=run) if events is None else events:
        if isinstance(event, RequestDone):
            agg.add(event.metrics)
    if status is None:
        status = RunStatus.FAILED if agg.ok == 0 and agg.failed > 0 else RunStatus.FINISHED
    return RunResult(
        status=status,
        was_cancelled=status is RunStatus.KILLED,
        metrics=agg.request_metrics(),
        run_metrics=agg.run_metrics(),
        errors=agg.error_summary(),
        start_wall_ns=run.to_wall_ns(agg.first_start_ns) if agg.first_start_ns else None,
        end_wall_ns=run.to_wall_ns(agg.last_end_ns) if agg.last_end_ns else None,
    )


# -- a fake request stream -------------------------------------------------------------------

_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "again")


def fake_records(
    count: int = 10,
    *,
    run: RunContext | None = None,
    phase: Phase | None = None,
    first_index: int = 0,
    output_tokens: int = 16,
    ttft_ms: float = 50.0,
    itl_ms: float = 10.0,
    interval_ms: float = 20.0,
    errors: int = 0,
    seed: int = 0,
) -> list[RequestRecord]:
    """``count`` finished requests as a worker fills them in: chunk arrival times, text, usage.

    Times are ``perf_counter_ns`` values after ``run.anchor_perf_ns``, with a few percent of
    seeded jitter; the last ``errors`` requests failed (HTTP 500). Streamed when the run's
    config streams, one word per chunk.
    """
    import random

    from aiperf._types import ErrorInfo, Phase, RequestRecord, Usage

    run = run or _scratch_run()
    rng = random.Random(seed)
    streaming = bool(run.config.streaming)
    anchor = run.anchor_perf_ns + 1_000_000
    ms = 1_000_000
    records = []
    for n in range(count):
        index = first_index + n
        start = anchor + int(index * interval_ms * ms)
        record = RequestRecord(
            index=index,
            phase=phase or Phase.PROFILE,
            worker=0,
            start_ns=start,
            sent_end_ns=start + 50_000,
            input_tokens=32,
            max_tokens=output_tokens,
        )
        if n >= count - errors:
            record.response_ns = record.end_ns = start + int(ttft_ms * ms)
            record.status_code = 500
            record.error = ErrorInfo(type="500", message="Internal Server Error")
            records.append(record)
            continue
        words = [_WORDS[(index + i) % len(_WORDS)] for i in range(output_tokens)]
        t = start + int(ttft_ms * ms * rng.uniform(0.95, 1.05))
        record.response_ns = t
        if streaming:
            for _ in range(output_tokens):
                record.chunk_ns.append(t)
                t += int(itl_ms * ms * rng.uniform(0.95, 1.05))
            record.first_chunk_text = words[0]
            record.first_answer_chunk = 0
        record.end_ns = (record.chunk_ns[-1] if record.chunk_ns else t) + 100_000
        record.output_text = " ".join(words)
        record.status_code = 200
        record.usage = Usage(prompt_tokens=32, completion_tokens=output_tokens)
        record.response_model = run.config.model
        records.append(record)
    return records


def request_done(record: RequestRecord, run: RunContext | None = None) -> RequestDone:
    """The :class:`aiperf.RequestDone` event of a finished record, its metrics computed by the
    core's own processor (``run.tokenizer``, a word count when it has none)."""
    import attrs

    from aiperf._metrics import TimingProcessor, inter_chunk_gaps
    from aiperf._types import RequestDone, RequestMetrics

    run = run or _scratch_run()
    if run.tokenizer is None:
        run = attrs.evolve(run, tokenizer=WordTokenizer())
    values: dict[str, float] = {}
    TimingProcessor().process(record, values, run)
    end = record.chunk_ns[-1] if record.chunk_ns else (record.end_ns or record.start_ns)
    metrics = RequestMetrics(
        index=record.index,
        phase=record.phase,
        ok=record.ok,
        error=record.error,
        start_ns=record.start_ns,
        end_ns=end,
        values=values,
        inter_chunk_latency_ns=inter_chunk_gaps(record) if record.ok else (),
        response_model=record.response_model,
    )
    return RequestDone(metrics=metrics, record=record)


def fake_stream(
    count: int = 10,
    *,
    run: RunContext | None = None,
    warmup: int = 0,
    errors: int = 0,
    progress_every: int = 5,
    samples: bool = True,
    seed: int = 0,
    **record_options: Any,
) -> Iterator[LiveEvent]:
    """The live events of a run of ``count`` measured requests, in the order a sink gets them.

    ``warmup`` requests first, then :class:`aiperf.PhaseChanged` to the measured phase, every
    request's :class:`aiperf.RequestDone` with a :class:`aiperf.Progress` every
    ``progress_every`` requests and at the end; with ``samples``, a
    :class:`aiperf.HardwareSample` and a :class:`aiperf.ServerMetricSample` at the start of the
    measured phase and at its end (every kind of event a sink may see). ``record_options`` go to
    :func:`fake_records` (``output_tokens``, ``ttft_ms``, ``itl_ms``, ...).
    """
    from aiperf._types import HardwareSample, Phase, PhaseChanged, Progress, ServerMetricSample

    run = run or _scratch_run()
    warm = fake_records(warmup, run=run, phase=Phase.WARMUP, seed=seed, **record_options)
    measured = fake_records(
        count, run=run, first_index=warmup, errors=errors, seed=seed + 1, **record_options
    )
    yield from (request_done(record, run) for record in warm)
    start_ns = measured[0].start_ns if measured else run.anchor_perf_ns
    yield PhaseChanged(phase=Phase.PROFILE, perf_ns=start_ns)

    def sample_events(perf_ns: int) -> Iterator[LiveEvent]:
        if not samples:
            return
        wall = run.to_wall_ns(perf_ns)
        yield HardwareSample(
            source="fake", host="localhost", gpu_index=0, uuid="GPU-00000000", name="Fake GPU",
            wall_ns=wall, phase=Phase.PROFILE, gpu_utilization=0.5, power_watts=300.0,
            memory_used_bytes=8e9, memory_total_bytes=80e9, energy_joules=1e5,
        )  # fmt: skip
        yield ServerMetricSample(
            source="fake", name="requests_running", value=4.0, unit="{request}",
            wall_ns=wall, phase=Phase.PROFILE, labels=(("model_name", run.config.model),),
        )  # fmt: skip

    yield from sample_events(start_ns)
    completed = failed = 0
    for n, record in enumerate(measured, 1):
        event = request_done(record, run)
        completed += event.record.ok
        failed += not event.record.ok
        yield event
        if n == len(measured) or (progress_every and n % progress_every == 0):
            yield Progress(
                phase=Phase.PROFILE,
                sent=n,
                completed=completed,
                failed=failed,
                in_flight=0,
                elapsed_s=(event.metrics.end_ns - start_ns) / 1e9,
                loop_lag_ms=0.5,
            )
    yield from sample_events(measured[-1].end_ns or start_ns if measured else start_ns)


# -- driving a live sink ---------------------------------------------------------------------


@attrs.define
class SinkRun:
    """What :func:`run_sink` saw."""

    sink: Any
    run: RunContext
    status: RunStatus
    #: every event offered to the sink, and how many did not fit in its channel.
    events: list[LiveEvent]
    dropped: int
    #: the sink's :meth:`report` line at the end.
    report: str | None

    @property
    def requests(self) -> int:
        """The :class:`aiperf.RequestDone` events offered (dropped ones included)."""
        from aiperf._types import RequestDone

        return sum(isinstance(e, RequestDone) for e in self.events)


def run_sink(
    sink: LiveSink,
    events: Iterable[LiveEvent | RequestRecord] | None = None,
    *,
    run: RunContext | None = None,
    status: RunStatus | None = None,
    timeout: float = 30.0,
) -> SinkRun:
    """Drive ``sink`` through a whole run as ``aiperf profile`` does, in a fresh trio loop.

    ``open(run)``; ``run(events)`` in a task of its own, over a channel of the sink's
    ``buffer_size`` (the core's 65,536 by default) that never makes the publisher wait; the
    events (by default :func:`fake_stream` of ``run``; a :class:`aiperf.RequestRecord` becomes
    its ``RequestDone``); the end of the channel, which ``run`` must return at; ``close(status)``
    (``FINISHED`` by default); ``report()``.

    Unlike the core, which logs a sink's failure and goes on, any exception of the sink is
    raised here, and a sink that has not returned within ``timeout`` seconds fails the test.
    Inside a trio test, ``await drive_sink(...)`` instead.
    """
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run_sink() starts its own trio loop: use `await drive_sink(...)` here")
    return trio.run(
        functools.partial(drive_sink, sink, events, run=run, status=status, timeout=timeout)
    )


async def drive_sink(
    sink: LiveSink,
    events: Iterable[LiveEvent | RequestRecord] | None = None,
    *,
    run: RunContext | None = None,
    status: RunStatus | None = None,
    timeout: float = 30.0,
) -> SinkRun:
    """:func:`run_sink` inside a running trio loop."""
    import trio

    from aiperf._live import SINK_BUFFER
    from aiperf._types import Phase, PhaseChanged, RequestDone, RequestRecord, RunStatus

    if run is None:
        with tempfile.TemporaryDirectory(prefix="aiperf-test-run-") as tmp:
            return await drive_sink(sink, events, run=make_run(tmp), status=status, timeout=timeout)
    status = status or RunStatus.FINISHED
    name = getattr(sink, "name", type(sink).__name__)
    stream = fake_stream(run=run) if events is None else events
    offered: list[LiveEvent] = []
    dropped = 0
    send, receive = trio.open_memory_channel[Any](getattr(sink, "buffer_size", SINK_BUFFER))
    ended = returned_early = False
    stage = "open()"

    async def run_it() -> None:
        nonlocal returned_early
        async with receive:
            await sink.run(receive)
        returned_early = not ended

    try:
        with trio.fail_after(timeout):
            await sink.open(run)
            stage = "run()"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_it)
                for item in stream:
                    event = request_done(item, run) if isinstance(item, RequestRecord) else item
                    if isinstance(event, PhaseChanged) and event.phase is Phase.PROFILE:
                        run.phase = Phase.PROFILE
                        run.profile_start_ns = event.perf_ns
                    offered.append(event)
                    try:
                        send.send_nowait(event)
                    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        dropped += 1
                    # In the core the loop waits on requests between events: the sink runs.
                    await trio.lowlevel.checkpoint()
                ends = [e.metrics.end_ns for e in offered if isinstance(e, RequestDone)]
                run.profile_end_ns = max(ends, default=run.profile_start_ns)
                ended = True
                send.close()
            if returned_early:
                raise AssertionError(
                    f"sink {name!r}: run() returned before its channel ended; "
                    "the events after it would be lost"
                )
            stage = "close()"
            await sink.close(status)
    except trio.TooSlowError:
        raise AssertionError(f"sink {name!r}: {stage} did not return within {timeout} s") from None
    except BaseExceptionGroup as group:
        # The sink's own exception, not trio's group around it.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    return SinkRun(
        sink=sink, run=run, status=status, events=offered, dropped=dropped, report=sink.report()
    )


# -- a test server ---------------------------------------------------------------------------


@attrs.frozen
class Received:
    """One request a :class:`LoopbackServer` received."""

    method: str
    path: str
    #: header names in lower case.
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[str]:
        """The body's non-empty lines (JSON Lines, NDJSON)."""
        return [line for line in self.body.decode("utf-8").splitlines() if line.strip()]


@attrs.frozen
class Reply:
    """What a :class:`LoopbackServer` answers."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = attrs.field(factory=dict)


class LoopbackServer:
    """An HTTP/1.1 server on ``127.0.0.1`` in threads of the test process, for a ``with`` block.

    It records every request it receives (:attr:`received`) and answers ``200 {}``; subclass it
    and override :meth:`respond` to answer otherwise (the ``aiperf-sink-jsonl-http`` example's
    tests use it as it is)::

        class Failing(LoopbackServer):
            def respond(self, request):
                return Reply(503, b"busy")

        with Failing() as server:
            ...  # point the plugin at server.url
        assert server.received[0].path == "/ingest"

    The port is chosen by the system when the server starts; :meth:`stop` (called on leaving
    the block, whatever happened in it) closes the port and waits for the serving thread.
    """

    host = "127.0.0.1"

    def __init__(self) -> None:
        import threading

        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._arrived = threading.Condition(self.lock)
        self._server: Any = None
        self._thread: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; still the address it had once stopped, for messages."""
        if not self.port:
            raise RuntimeError(f"{type(self).__name__} has not started")
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        server = ThreadingHTTPServer((self.host, 0), self._handler())
        # A handler still busy (a slow answer) never holds up stop().
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port; safe to call twice, or before :meth:`start`."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.shutdown()
        finally:
            server.server_close()
            self._thread.join(timeout=5)

    def respond(self, request: Received) -> Reply:
        """The answer to ``request`` (already recorded). Runs in a thread of the server."""
        return Reply()

    def requests(self, path: str | None = None) -> list[Received]:
        """A copy of what was received so far (to ``path`` only, when given)."""
        with self.lock:
            return [r for r in self.received if path is None or r.path.split("?")[0] == path]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` requests have arrived; :class:`AssertionError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{type(self).__name__} received {len(self.received)} requests "
                        f"in {timeout} s, expected {count}"
                    )
                self._arrived.wait(remaining)
            return list(self.received)

    def _handler(self) -> type:
        from http.server import BaseHTTPRequestHandler

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass  # trailers
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                request = Received(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self._body(),
                )
                with outer._arrived:
                    outer.received.append(request)
                    outer._arrived.notify_all()
                reply = outer.respond(request)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up waiting

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        return Handler


# -- contract checks -------------------------------------------------------------------------

#: the API key :func:`check_exporter` gives the run: it must appear in no file written.
CHECK_SECRET = "sk-aiperf-testing-0123456789-do-not-export"


def _instance(kind: str, given: Any, required: str) -> tuple[Any, bool]:
    """``(object, fresh)``: ``given`` itself when it already is the plugin object, or what the
    factory (a class, a function) returns."""
    if not isinstance(given, type) and hasattr(given, required):
        return given, False
    if not callable(given):
        raise AssertionError(f"check_{kind}: expected a {kind} or a factory of one, got {given!r}")
    try:
        return given(), True
    except Exception as exc:
        raise AssertionError(
            f"check_{kind}: {given!r}() failed: {type(exc).__name__}: {exc} "
            f"(pass a factory that takes no arguments, e.g. lambda: My{kind.title()}(...))"
        ) from exc


def _named(kind: str, obj: Any) -> str:
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise AssertionError(
            f"{kind} {type(obj).__name__}: `name` must be a non-empty str (got {name!r})"
        )
    return name


def _methods(
    kind: str, name: str, obj: Any, coroutines: Sequence[str], plain: Sequence[str]
) -> None:
    import inspect

    for method in (*coroutines, *plain):
        if not callable(getattr(obj, method, None)):
            raise AssertionError(f"{kind} {name!r}: has no method {method}()")
    for method in coroutines:
        if not inspect.iscoroutinefunction(getattr(obj, method)):
            raise AssertionError(f"{kind} {name!r}: {method}() must be `async def`")
    for method in plain:
        if inspect.iscoroutinefunction(getattr(obj, method)):
            raise AssertionError(f"{kind} {name!r}: {method}() must not be `async def`")


def _config(config: ProfileConfig | None, plugin_options: dict[str, Any] | None) -> ProfileConfig:
    from aiperf._config import ProfileConfig

    if config is not None:
        if plugin_options is not None:
            raise TypeError("give plugin_options or config, not both")
        return config
    return ProfileConfig(
        model="test-model", url="http://127.0.0.1:8000", streaming=True,
        plugin_options=dict(plugin_options or {}),
    )  # fmt: skip


def check_sink(
    sink: Any,
    *,
    config: ProfileConfig | None = None,
    plugin_options: dict[str, Any] | None = None,
    timeout: float = 30.0,
) -> None:
    """Check that a live sink keeps the contract the core relies on; :class:`AssertionError`
    says what it breaks.

    ``sink`` is a factory of sinks (the class, or a function taking no arguments), so that each
    scenario gets a fresh one; given a sink object, only the first scenario runs. The sink has a
    ``name``; ``open``, ``run`` and ``close`` are coroutines, ``report`` (and ``backlog``, when
    there is one) plain methods returning a line or ``None``. Driven by :func:`run_sink`, it
    goes through a whole run (warm-up, failed requests and every kind of event), a run killed
    before its first request and a run where every request failed, without raising, with
    ``run`` reading its channel to the end, within ``timeout`` seconds each.
    """
    from aiperf._types import RunStatus

    first, fresh = _instance("sink", sink, "open")
    name = _named("sink", first)
    _methods("sink", name, first, ("open", "run", "close"), ("report",))
    if hasattr(first, "backlog"):
        _methods("sink", name, first, (), ("backlog",))
    scenarios: list[tuple[str, Any, RunStatus]] = [
        (
            "a whole run",
            lambda run: fake_stream(20, run=run, warmup=2, errors=2),
            RunStatus.FINISHED,
        ),
        ("a run killed before its first request", lambda run: [], RunStatus.KILLED),
        (
            "a run where every request failed",
            lambda run: fake_stream(5, run=run, errors=5),
            RunStatus.FAILED,
        ),
    ]
    for n, (what, make_events, status) in enumerate(scenarios if fresh else scenarios[:1]):
        obj = first if n == 0 else sink()
        with tempfile.TemporaryDirectory(prefix="aiperf-check-sink-") as tmp:
            run = make_run(tmp, config=_config(config, plugin_options))
            events: list[LiveEvent] = list(make_events(run))
            try:
                outcome = run_sink(obj, events, run=run, status=status, timeout=timeout)
            except AssertionError as exc:
                raise AssertionError(f"{exc} (in {what})") from exc
            except Exception as exc:
                raise AssertionError(
                    f"sink {name!r} failed in {what}: {type(exc).__name__}: {exc}"
                ) from exc
            if outcome.report is not None and not isinstance(outcome.report, str):
                raise AssertionError(
                    f"sink {name!r}: report() must return a str or None (got {outcome.report!r})"
                )
            backlog = getattr(obj, "backlog", None)
            if backlog is not None:
                line = backlog()
                if line is not None and not isinstance(line, str):
                    raise AssertionError(
                        f"sink {name!r}: backlog() must return a str or None (got {line!r})"
                    )


def check_exporter(
    exporter: Any,
    *,
    config: ProfileConfig | None = None,
    plugin_options: dict[str, Any] | None = None,
) -> None:
    """Check that an exporter keeps the contract the core relies on; :class:`AssertionError`
    says what it breaks.

    ``exporter`` is a factory of exporters (the class, or a function taking no arguments), or
    an exporter (then only the first scenario runs). The exporter has a ``name`` and an integer
    ``order``; its plain (not ``async``) ``export(run, result)`` returns a list of the paths it
    wrote, each an existing file or folder inside the run directory, and leaves no ``.tmp``
    file behind. The run's API key (:data:`CHECK_SECRET`) appears in no file of the run
    directory. A run where every request failed and a run killed before its first request are
    exported without an exception too.
    """
    from aiperf._types import RunStatus

    first, fresh = _instance("exporter", exporter, "export")
    name = _named("exporter", first)
    order = getattr(first, "order", None)
    if not isinstance(order, int) or isinstance(order, bool):
        raise AssertionError(f"exporter {name!r}: `order` must be an int (got {order!r})")
    _methods("exporter", name, first, (), ("export",))
    base = attrs.evolve(_config(config, plugin_options), api_key=CHECK_SECRET)
    scenarios: list[tuple[str, Any]] = [
        ("a whole run", lambda run: make_result(run, fake_stream(20, run=run, errors=2))),
        (
            "a run where every request failed",
            lambda run: make_result(run, fake_stream(5, run=run, errors=5)),
        ),
        (
            "a run killed before its first request",
            lambda run: make_result(run, [], status=RunStatus.KILLED),
        ),
    ]
    for n, (what, make) in enumerate(scenarios if fresh else scenarios[:1]):
        obj = first if n == 0 else exporter()
        with tempfile.TemporaryDirectory(prefix="aiperf-check-exporter-") as tmp:
            run = make_run(Path(tmp) / "run", config=base)
            try:
                paths = obj.export(run, make(run))
            except Exception as exc:
                raise AssertionError(
                    f"exporter {name!r} failed on {what}: {type(exc).__name__}: {exc}"
                ) from exc
            _check_exported(name, what, run.run_dir, paths)


def _check_exported(name: str, what: str, run_dir: Path, paths: Any) -> None:
    if isinstance(paths, str | bytes | os.PathLike) or not isinstance(paths, Sequence):
        raise AssertionError(
            f"exporter {name!r}: export() must return a list of paths (got {paths!r} on {what})"
        )
    root = run_dir.resolve()
    for path in paths:
        if not isinstance(path, os.PathLike):
            raise AssertionError(f"exporter {name!r}: export() returned {path!r}, not a Path")
        resolved = Path(path).resolve()
        if not resolved.exists():
            raise AssertionError(
                f"exporter {name!r}: export() returned {path}, which does not exist"
            )
        if not resolved.is_relative_to(root):
            raise AssertionError(
                f"exporter {name!r}: wrote {path} outside the run directory {run_dir}"
            )
    for file in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        if file.name.endswith(".tmp"):
            raise AssertionError(
                f"exporter {name!r}: left {file.name} behind (write files with aiperf.write_text_atomic)"
            )
        if CHECK_SECRET.encode() in file.read_bytes():
            raise AssertionError(
                f"exporter {name!r}: the run's API key is in {file.relative_to(run_dir)} "
                "(export run.redacted_config(), never run.config)"
            )


def check_endpoint(
    endpoint: Any,
    *,
    response: Any = None,
    chunks: Sequence[Any] | None = None,
    text: str | None = None,
    config: ProfileConfig | None = None,
) -> None:
    """Check that an :class:`aiperf.EndpointType` keeps the contract the core relies on;
    :class:`AssertionError` says what it breaks.

    Its ``name`` is a word (``--endpoint-type NAME``), ``default_path`` starts with ``/``;
    ``build_payload`` makes a JSON-serialisable dict holding the prompt's text, streamed too
    when the type supports streaming. Given a decoded ``response`` body and the decoded JSON of
    a stream's ``chunks``, both parse into :class:`aiperf.ResponseData`, whose text is ``text``
    when given (the chunks' texts joined). Bodies of the wrong shape (``None``, a number, a
    string, a list, an object without the expected keys) either parse or raise
    :class:`aiperf.ParseError` (any :class:`ValueError`): anything else would end the run
    instead of failing one request.
    """
    import re

    from aiperf._config import ProfileConfig
    from aiperf._endpoints import bound
    from aiperf._types import EndpointType, Prompt, ResponseData

    if not isinstance(endpoint, EndpointType):
        raise AssertionError(f"check_endpoint: expected an aiperf.EndpointType, got {endpoint!r}")
    name = endpoint.name
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise AssertionError(f"endpoint {name!r}: `name` must be one word (letters, digits, _ . -)")
    label = f"endpoint {name!r}"
    if not isinstance(endpoint.operation_name, str) or not endpoint.operation_name:
        raise AssertionError(f"{label}: `operation_name` must be a non-empty str")
    for field in ("default_path", "streaming_path"):
        path = getattr(endpoint, field)
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise AssertionError(f"{label}: `{field}` must start with '/' (got {path!r})")
    base = config or ProfileConfig(model="test-model", url="http://127.0.0.1:8000")
    prompt = Prompt(text="hello from aiperf testing", input_tokens=4, max_tokens=16)
    for streaming in (False, True) if endpoint.supports_streaming else (False,):
        run_config = attrs.evolve(base, streaming=streaming)
        try:
            used = bound(endpoint, run_config)
        except Exception as exc:
            raise AssertionError(f"{label}: bind() failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(used, EndpointType):
            raise AssertionError(f"{label}: bind() must return an EndpointType (got {used!r})")
        mode = "streamed" if streaming else "not streamed"
        try:
            payload = used.build_payload(prompt, run_config)
            encoded = json.dumps(payload)
        except Exception as exc:
            raise AssertionError(
                f"{label}: build_payload() failed ({mode}): {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(payload, dict):
            raise AssertionError(
                f"{label}: build_payload() must return a dict (got {type(payload).__name__})"
            )
        if prompt.text not in encoded:
            raise AssertionError(
                f"{label}: the prompt's text is not in the payload ({mode}): {encoded}"
            )
        if used.headers is not None:
            headers = used.headers(run_config)
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
            ):
                raise AssertionError(
                    f"{label}: headers() must return a dict of str (got {headers!r})"
                )

    def chunk_parser() -> Any:
        return endpoint.new_stream_parser() if endpoint.new_stream_parser else endpoint.parse_chunk

    def parsed(what: str, parse: Any, body: Any) -> Any:
        try:
            data = parse(body)
        except Exception as exc:
            raise AssertionError(
                f"{label}: {what} failed on {body!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(data, ResponseData):
            raise AssertionError(
                f"{label}: {what} must return an aiperf.ResponseData (got {data!r})"
            )
        return data

    if response is not None:
        data = parsed("parse_response()", endpoint.parse_response, response)
        if text is not None and data.text != text:
            raise AssertionError(
                f"{label}: parse_response() found {data.text!r}, expected {text!r}"
            )
    if chunks is not None:
        parse = chunk_parser()
        joined = "".join(parsed("parsing a chunk", parse, chunk).text for chunk in chunks)
        if text is not None and joined != text:
            raise AssertionError(f"{label}: the chunks' texts make {joined!r}, expected {text!r}")
    body: object
    for body in (None, 42, "not an object", [], {}, {"unexpected": True}):
        for what, parse in (
            ("parse_response()", endpoint.parse_response),
            ("parsing a chunk", chunk_parser()),
        ):
            try:
                data = parse(body)
            except ValueError:
                continue
            except Exception as exc:
                raise AssertionError(
                    f"{label}: {what} raised {type(exc).__name__} on {body!r}; raise "
                    "aiperf.ParseError for a body of the wrong shape, so that only that request fails"
                ) from exc
            if not isinstance(data, ResponseData):
                raise AssertionError(
                    f"{label}: {what} must return an aiperf.ResponseData (got {data!r} for {body!r})"
                )
