"""``--workers N``: the load in N processes, each its own trio loop, merged into one result.

The coordinator (the ``aiperf profile`` process) keeps everything that is about the run as a
whole: live sinks, samplers, the aggregator, the JSONL file, the exports. Each worker gets a
share of the concurrency (or rate) and of the request count, sends requests exactly as a
single-process run does, computes each request's metrics, and ships finished requests to the
coordinator in small batches. perf_counter is the system's monotonic clock, so times taken in
different processes compare directly.

The split is by message passing only (a pipe per worker, length-prefixed pickled batches),
which is also the shape a run spread over several machines would take. Both ends do their pipe
I/O inside their trio loop and never block on it: a coordinator that is slow to read (it also
runs the live sinks, whose SDK threads hold its interpreter lock at times) makes a worker's
outgoing batches wait in its memory, never its requests.

Live sinks are the reason one worker is used even where one process could carry the load: with
OTel or MLflow on, the load runs in a process of its own (see :func:`needs_pool`), so that no
telemetry code ever shares an interpreter lock with the loop that stamps the chunks.

A worker that dies (an exception, an exit, a SIGKILL from the OOM killer) or stops talking (no
message for :data:`STALL_TIMEOUT_S`, while it sends one every 50 ms) is noticed: the run stops,
ends ``FAILED`` with what the coordinator received, marked partial, and the line that says so
names the worker, its pid and how it ended. Requests the worker had in flight at its last
message get a ``worker_lost`` line in the JSONL.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import struct
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import structlog
import trio

from aiperf._types import ErrorInfo, Phase, RequestMetrics, RequestRecord
from aiperf.urls import describe_error

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from multiprocessing.connection import Connection

    from aiperf._config import ProfileConfig
    from aiperf._conversations import ConversationSet
    from aiperf._engine import Engine
    from aiperf._types import Prompt, RunContext

log = structlog.get_logger()

#: how often a worker ships its finished requests (and its counters) to the coordinator.
BATCH_INTERVAL_S = 0.05
#: one worker process per this many concurrent requests (or requests per second) in auto mode.
AUTO_SHARE = 64
#: the length prefix of every message on a worker's pipe.
_HEADER = struct.Struct("<Q")
#: pipe buffer asked of Linux (the default 64 KiB holds less than one batch at full load).
_PIPE_BUFFER = 1 << 20
_F_SETPIPE_SZ = 1031
#: how far a coordinator that runs live sinks steps back in the CPU queue (see lower_priority).
SINK_NICENESS = 10
#: a worker that sends nothing this long (it sends every BATCH_INTERVAL_S) is stuck: killed.
STALL_TIMEOUT_S = 30.0
#: the same bound before a worker's first message: it imports aiperf and loads the tokenizer.
START_TIMEOUT_S = 120.0
#: environment variable that changes STALL_TIMEOUT_S (seconds).
STALL_TIMEOUT_ENV = "AIPERF_WORKER_STALL_TIMEOUT"
#: how long a worker may take to hand over its last batch once its run is over.
FINAL_SEND_S = 5.0
#: the JSONL error type of a request lost with the worker process that sent it.
WORKER_LOST = "worker_lost"


def auto_workers(config: ProfileConfig, cpus: int | None = None) -> int:
    """What the machine sensibly allows: one process until the load is heavy, then one per
    core (leaving one core for the coordinator and a local server), one per 64 of load.

    The cores are those this process may use: its CPU affinity, capped by its cgroup's quota
    (a container given 2 CPUs on a 64-core host has 2)."""
    if config.workers is not None:
        return config.workers
    if cpus is None:
        from aiperf._health import available_cpus

        cpus = int(available_cpus())
    if cpus < 4:
        return 1
    load = config.request_rate if config.request_rate is not None else (config.effective_concurrency or 1)
    return max(1, min(cpus - 1, int(load // AUTO_SHARE)))


def needs_pool(workers: int, sinks: Sequence[object]) -> bool:
    """Whether the load runs in worker processes: when there are several, and whenever live
    sinks run, whose SDK threads would otherwise compete with the request loop for the
    interpreter lock (a span batch encoded in pure Python holds it for tens of milliseconds).
    A sink that declares itself cheap (``in_process = True``, the progress line) does not
    count."""
    return workers > 1 or bool(heavy_sinks(sinks))


def heavy_sinks(sinks: Sequence[object]) -> list[object]:
    """The live sinks that must not share a process with the request loop: all but those
    declaring ``in_process = True``."""
    return [sink for sink in sinks if not getattr(sink, "in_process", False)]


def lower_priority(by: int) -> int | None:
    """Make every thread of this process ``by`` nicer; returns the new nice value.

    The coordinator does this once its workers run, when it hosts live sinks: wherever the CPUs
    are short (a small machine, a local server under test), the requests and the server come
    first and telemetry takes what is left, falling behind (and, past its buffers, dropping
    events, counted) rather than slowing the load. Linux keeps a nice value per thread and the
    sinks' SDK threads already run, so each thread is set; elsewhere one call covers the process.
    """
    if not hasattr(os, "setpriority"):
        return None
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    value = None
    for tid in threads:
        try:
            value = min(os.getpriority(os.PRIO_PROCESS, tid) + by, 19)
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except OSError:  # a thread that ended meanwhile
            continue
    return value


def _share(total: int | None, n: int, i: int) -> int | None:
    if total is None:
        return None
    return total // n + (1 if i < total % n else 0)


def split(config: ProfileConfig, n: int, conversations: ConversationSet | None = None) -> list[ProfileConfig]:
    """The configs of ``n`` workers: concurrency, rate, counts divided; workers with nothing to
    do are left out. A conversation run divides its sessions (each runs whole in one worker);
    a request count there stays a cap on turns, divided too when given."""
    from aiperf._conversations import session_limit

    sessions = session_limit(config, conversations)
    total = config.effective_request_count if conversations is None else config.request_count
    shares = []
    for i in range(n):
        concurrency = _share(config.concurrency, n, i)
        count = _share(total, n, i)
        share = _share(sessions, n, i)
        if concurrency == 0 or count == 0 or share == 0:
            continue
        options = config.plugin_options
        if share is not None:
            options = {**options, "conversation_num": share}
        shares.append(
            attrs.evolve(
                config,
                concurrency=concurrency,
                request_rate=config.request_rate / n if config.request_rate is not None else None,
                request_count=count,
                warmup_request_count=_share(config.warmup_request_count, n, i) or 0,
                workers=1,
                plugin_options=options,
            )
        )
    return shares


@attrs.frozen(kw_only=True)
class WorkerSpec:
    """Everything a worker process needs, picklable."""

    index: int
    stride: int
    config: ProfileConfig
    prompts: tuple[Prompt, ...]
    bodies: tuple[bytes, ...]
    #: seconds to wait before the first send (spreads constant-rate workers over the gap).
    start_delay_s: float = 0.0
    #: the secret values the coordinator knows of, to scrub from error messages here too.
    secrets: tuple[str, ...] = ()
    #: the sessions of a conversation run (each worker runs its share of them), or None.
    conversations: ConversationSet | None = None


def _strip(record: RequestRecord) -> RequestRecord:
    # The texts were only needed to count tokens, which the worker already did.
    record.output_text = ""
    record.reasoning_text = ""
    record.first_chunk_text = ""
    return record


def _stream(conn: Connection) -> trio.lowlevel.FdStream:
    """The pipe end as a non-blocking trio stream (which owns a duplicate of its descriptor)."""
    fd = os.dup(conn.fileno())
    conn.close()
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BUFFER)
    except (ImportError, OSError):  # not Linux, or above the system's limit: the default will do
        pass
    return trio.lowlevel.FdStream(fd)


def encode(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


@attrs.define
class MessageReader:
    """Reads the length-prefixed messages of :func:`encode` off a stream."""

    stream: trio.abc.ReceiveStream
    buffer: bytearray = attrs.field(factory=bytearray)

    async def receive(self) -> Any:
        """The next message; raises EOFError when the stream ends (mid-message or not)."""
        buffer = self.buffer
        while True:
            if len(buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer)
                end = _HEADER.size + size
                if len(buffer) >= end:
                    payload = bytes(buffer[_HEADER.size : end])
                    del buffer[:end]
                    return pickle.loads(payload)
            chunk = await self.stream.receive_some(_PIPE_BUFFER)
            if not chunk:
                raise EOFError("the worker's pipe closed" + (" mid-message" if buffer else ""))
            buffer += chunk


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a worker process."""
    # The coordinator stops us with SIGTERM; Ctrl-C on the terminal, or its hangup, is its to
    # handle (both reach the whole process group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        _work(spec, conn)
    except Exception as exc:  # noqa: BLE001 - before the loop ran: said once, by the coordinator
        if spec.config.verbose:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        try:
            os.write(conn.fileno(), encode(("failed", describe_error(exc, limit=None))))
        except (OSError, ValueError):  # the pipe is gone (or was handed to the loop): exit is enough
            pass
        sys.exit(1)
    # Everything this process had to say is on the pipe, and the coordinator waits for it to
    # end before it finishes the run: tearing the interpreter down (numpy, the tokenizer, the
    # HTTP stack) took 0.3 to 0.7 s of that wait on a busy 2-core machine.
    exit_now(0)


def exit_now(code: int) -> NoReturn:
    """Leave the process at once: exit handlers run and the standard streams are flushed,
    but the interpreter is not torn down module by module (every file the run writes is
    already closed). After a run with MLflow imported that teardown took about 0.5 s."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _work(spec: WorkerSpec, conn: Connection) -> None:
    worker = Worker.build(spec)

    async def main() -> str | None:
        async with _stream(conn) as out:

            async def send(messages: list[tuple[Any, ...]]) -> None:
                await out.send_all(b"".join(encode(m) for m in messages))

            return await worker.serve(send)

    if trio.run(main) is not None:
        sys.exit(1)


@attrs.define
class Worker:
    """One worker's engine, built from its spec, and the loop that runs it and reports.

    A worker process runs one over its pipe (:func:`worker_main`); a plugin that runs the load
    elsewhere (another machine) runs one with ``serve(send)``, ``send`` being its transport,
    and calls :meth:`stop` from the worker's trio loop to stop it as SIGTERM would.
    """

    spec: WorkerSpec
    engine: Engine
    run: RunContext
    batch: list[tuple[RequestRecord, RequestMetrics | None]]

    @classmethod
    def build(cls, spec: WorkerSpec, *, stop_signals: tuple[int, ...] = (signal.SIGTERM,)) -> Worker:
        """Load the plugins and the tokenizer and build the engine (seconds, before the load)."""
        from aiperf._endpoints import bound
        from aiperf._engine import Engine
        from aiperf._plugins import Plugins
        from aiperf._redact import remember_secrets
        from aiperf._schedule import strategy_name
        from aiperf._tokenizer import load_tokenizer
        from aiperf._types import RunContext

        remember_secrets(spec.secrets)
        config = spec.config
        plugins = Plugins.load()
        endpoint = bound(plugins.endpoints()[config.endpoint_type], config)
        run = RunContext(
            config=config,
            run_dir=config.artifact_dir or os.getcwd(),  # type: ignore[arg-type]
            benchmark_id="worker",
            version="",
            provider="",
            operation_name=endpoint.operation_name,
            server_address="",
            server_port=0,
            load_setting=config.load_setting,
            anchor_wall_ns=time.time_ns(),
            anchor_perf_ns=time.perf_counter_ns(),
            tokenizer=load_tokenizer(config.tokenizer),
            metrics=dict(plugins.metrics()),  # as in the coordinator, for processors that read it
        )
        batch: list[tuple[RequestRecord, RequestMetrics | None]] = []

        def forward(record: RequestRecord, metrics: RequestMetrics | None) -> None:
            record.worker = spec.index  # the JSONL's "worker": which process sent it
            batch.append((_strip(record), metrics))

        engine = Engine(
            config=config,
            run=run,
            endpoint=endpoint,
            strategy=plugins.load_strategies()[strategy_name(config)].create(config),
            prompts=spec.prompts,
            bodies=spec.bodies,
            processors=plugins.record_processors(),
            forward=forward,
            index_stride=spec.stride,
            stop_signals=stop_signals,
            conversations=spec.conversations,
        )
        engine.next_index = spec.index
        engine.next_session = spec.index
        return cls(spec=spec, engine=engine, run=run, batch=batch)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the load as the signal would (call it from the worker's trio loop)."""
        if not self.run.cancelled:
            self.engine.request_stop(signum)

    async def serve(
        self, send: Callable[[list[tuple[Any, ...]]], Awaitable[None]], *, start_delay_s: float | None = None
    ) -> str | None:
        """Run the load, handing every list of messages to ``send`` (the messages of the
        module's doc, in order); returns the failure, or None.

        ``start_delay_s`` replaces the spec's own (a caller that agreed on a common start
        instant with other workers counts it from there)."""
        spec, engine, run, batch = self.spec, self.engine, self.run, self.batch
        config = spec.config
        delay = spec.start_delay_s if start_delay_s is None else start_delay_s

        async def ship() -> None:
            last_phase = None
            while True:
                await trio.sleep(BATCH_INTERVAL_S)
                after = []
                if run.phase is not last_phase:
                    last_phase = run.phase
                    start = run.profile_start_ns if run.phase is Phase.PROFILE else time.perf_counter_ns()
                    after.append(("phase", run.phase, start))
                # A frame cut in half by the end of the run would garble the pipe.
                with trio.CancelScope(shield=True):
                    await flush(after)

        async def flush(after: list[tuple[Any, ...]]) -> None:
            # The batch is taken before the first await: requests finishing meanwhile go to the next.
            messages: list[tuple[Any, ...]] = [("done", batch[:])] if batch else []
            batch.clear()
            # What is in flight right now, so that the coordinator can account for these requests
            # if this process dies before they finish (a few hundred bytes per batch).
            pending = [(r.index, r.phase, r.start_ns) for r in engine.pending.values()]
            # With this process's largest event-loop lag since the last message, for live sinks.
            messages.append(("progress", engine.sent, engine.in_flight, pending, engine.take_loop_lag()))
            await send(messages + after)

        failure = None
        final: tuple[Any, ...]
        health: list[tuple[Any, ...]] = []
        try:
            if delay > 0:
                await trio.sleep(delay)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ship)
                result = await engine.run_benchmark()
                nursery.cancel_scope.cancel()
            cut = engine.cancelled_in_flight
            final = ("end", result.was_cancelled, cut, run.profile_start_ns, run.profile_end_ns)
            # What this process measured about its own loop and CPU: before "end", which
            # is the last message the coordinator reads.
            health = [("health", figures) for figures in engine.process_health]
        except Exception as exc:  # noqa: BLE001 - said to the coordinator, which stops the run
            failure = describe_error(exc, limit=None)
            if config.verbose:
                import traceback

                traceback.print_exception(exc, file=sys.stderr)
            final = ("failed", failure)
        # The last batch holds the lines of the requests cancelled at the end: it must get
        # out even while this process is being stopped, but never keep it alive for long.
        with trio.move_on_after(FINAL_SEND_S) as scope:
            scope.shield = True
            await flush([*health, final])
        return failure


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "closed its pipe but kept running (killed)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


class _Stalled(Exception):
    pass


@attrs.define
class WorkerPool:
    """The coordinator's side: starts the workers and feeds their requests into the engine."""

    specs: list[WorkerSpec]
    processes: list[Any] = attrs.field(factory=list)
    sent: dict[int, int] = attrs.field(factory=dict)
    in_flight: dict[int, int] = attrs.field(factory=dict)
    #: per worker, the requests in flight at its last message: (index, phase, start_ns).
    pending: dict[int, list[tuple[int, Phase, int]]] = attrs.field(factory=dict)
    stopping: bool = False
    #: this process runs live sinks: once the workers run, it yields the CPU to them.
    yield_cpu: bool = False
    #: a worker that sends nothing this long is stuck.
    stall_timeout_s: float = attrs.field(factory=lambda: stall_timeout())
    #: how the workers that did not finish ended, one sentence each.
    failures: list[str] = attrs.field(factory=list)
    #: a worker was lost: the others are being stopped because of it.
    failing: bool = False

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for spec in self.specs:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=worker_main, args=(spec, send), daemon=True)
            process.start()
            send.close()
            self.processes.append((process, MessageReader(_stream(receive))))
        if self.yield_cpu:
            # After the start: a child inherits its parent's nice value, and may not undo it.
            log.debug("coordinator_yields_cpu", nice=lower_priority(SINK_NICENESS))

    def stop(self, signum: int) -> None:
        """Tell every worker to stop (SIGTERM; workers ignore SIGINT, so a terminal's Ctrl-C,
        which reaches the whole process group, is counted once, here)."""
        self.stopping = True
        for process, _reader in self.processes:
            if process.is_alive():
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:  # ended meanwhile
                    pass

    def kill(self) -> None:
        """A second Ctrl-C: the coordinator exits at once, and takes its workers with it."""
        for process, _reader in self.processes:
            if process.is_alive():
                process.kill()

    async def run(self, engine: Engine) -> None:
        if not self.processes:
            self.start()
        starts: list[int] = []
        ends: list[int] = []
        async with trio.open_nursery() as nursery:
            for i, (_process, reader) in enumerate(self.processes):
                nursery.start_soon(self._drain, engine, i, reader, starts, ends)
        for i in range(len(self.processes)):
            await self._close(i)
        engine.run.profile_start_ns = min(starts) if starts else None
        engine.run.profile_end_ns = max(ends) if ends else time.perf_counter_ns()

    async def _drain(
        self, engine: Engine, i: int, reader: Any, starts: list[int], ends: list[int]
    ) -> None:
        profile_seen = False
        heard = False
        said: str | None = None
        while True:
            try:
                message = await self._receive(reader, heard)
            except EOFError:
                await self._lost(engine, i, said)
                return
            except _Stalled:
                await self._lost(engine, i, None, stalled=True)
                return
            heard = True
            kind = message[0]
            if kind == "done":
                for record, metrics in message[1]:
                    if metrics is None:
                        engine.write_unfinished(record)
                    else:
                        engine.accept(record, metrics)
            elif kind == "progress":
                self.sent[i], self.in_flight[i], self.pending[i] = message[1], message[2], message[3]
                engine.sent = sum(self.sent.values())
                engine.in_flight = sum(self.in_flight.values())
                engine.note_loop_lag(message[4])
            elif kind == "health":
                engine.process_health.append(attrs.evolve(message[1], worker=i))
            elif kind == "failed":
                said = message[1]
            elif kind == "phase":
                phase = message[1]
                if phase is Phase.PROFILE and not profile_seen:
                    profile_seen = True
                    if engine.run.phase is not Phase.PROFILE:
                        engine.run.phase = Phase.PROFILE
                        engine.run.profile_start_ns = message[2]
                        engine.announce_phase(Phase.PROFILE, message[2])
            elif kind == "end":
                _kind, cancelled, cut, start, end = message
                engine.cancelled_in_flight += cut
                self.pending.pop(i, None)
                # Stopped because another worker failed is not a user's cancellation.
                if cancelled and not self.failing:
                    engine.run.cancelled = True
                if start is not None:
                    starts.append(start)
                if end is not None:
                    ends.append(end)
                return

    # -- the transport: a subclass that runs its workers elsewhere replaces these ---------------

    def name(self, i: int) -> str:
        """Worker ``i`` as the line about a lost worker names it."""
        return f"worker {i} (pid {self.processes[i][0].pid})"

    def node(self, i: int) -> str | None:
        """The machine worker ``i`` runs on, for the JSONL's ``node``; None: this one."""
        return None

    async def _reap(self, i: int, stalled: bool) -> str:
        """Worker ``i`` ended without its final message: make sure it is gone; how it ended."""
        process, _reader = self.processes[i]
        if stalled:
            process.kill()
        await trio.to_thread.run_sync(process.join, FINAL_SEND_S)
        if process.exitcode is None:
            process.kill()
            await trio.to_thread.run_sync(process.join, FINAL_SEND_S)
        return _how_it_ended(process.exitcode)

    async def _close(self, i: int) -> None:
        """After the run: release worker ``i``'s channel and wait for it to exit."""
        process, reader = self.processes[i]
        await reader.stream.aclose()
        await trio.to_thread.run_sync(process.join, 10)

    async def _receive(self, reader: Any, heard: bool) -> Any:
        """The worker's next message; raises _Stalled when it has said nothing for too long."""
        bound = self.stall_timeout_s if heard else max(self.stall_timeout_s, START_TIMEOUT_S)
        with trio.move_on_after(bound):
            return await reader.receive()
        # One more short look: if this process was the one held up (a sink blocking its loop),
        # the worker's messages are waiting in the pipe.
        with trio.move_on_after(1.0):
            return await reader.receive()
        raise _Stalled

    async def _lost(self, engine: Engine, i: int, said: str | None, *, stalled: bool = False) -> None:
        """Worker ``i`` stopped without its final message: say so, stop the run, and write a
        line for each request it had in flight."""
        # Before the first await: from now on, a worker that reports it was stopped was stopped
        # because of this, not by the user.
        self.failing = True
        how = await self._reap(i, stalled)
        who = self.name(i)
        if stalled:
            reason = f"{who} sent nothing for {self.stall_timeout_s:g} s and was killed"
        elif said is not None:
            reason = f"{who} failed: {said} ({how})"
        else:
            reason = f"{who} {how}"
        self.failures.append(reason)
        lost = self.pending.pop(i, [])
        error = ErrorInfo(type=WORKER_LOST, message=f"in flight when {who} stopped")
        for index, phase, start_ns in lost:
            engine.write_unfinished(
                RequestRecord(
                    index=index, phase=phase, start_ns=start_ns, error=error, cancelled=True,
                    worker=i, node=self.node(i),
                )
            )  # fmt: skip
        self.in_flight[i] = 0
        engine.in_flight = sum(self.in_flight.values())
        engine.failure = "; ".join(self.failures)
        sys.stderr.write(f"\naiperf: {reason}; stopping the run, the results will be partial\n")
        sys.stderr.flush()
        log.debug("worker_lost", worker=i, how=how, in_flight=len(lost))
        # The other workers stop as on Ctrl-C: their requests in flight are cancelled and
        # written, and what they finished is kept.
        engine.stopping = True
        self.stop(signal.SIGTERM)


def make_pool(
    config: ProfileConfig,
    n: int,
    prompts: list[Prompt],
    bodies: list[bytes],
    *,
    yield_cpu: bool = False,
    conversations: ConversationSet | None = None,
) -> WorkerPool:
    specs = make_worker_specs(config, n, prompts, bodies, conversations=conversations)
    return WorkerPool(specs, yield_cpu=yield_cpu, stall_timeout_s=stall_timeout())


def make_worker_specs(
    config: ProfileConfig,
    n: int,
    prompts: Sequence[Prompt],
    bodies: Sequence[bytes],
    *,
    conversations: ConversationSet | None = None,
) -> list[WorkerSpec]:
    """What each of (at most) ``n`` workers runs: its share of the load (:func:`split`),
    request indices ``index, index + stride, ...``, the prompts and bodies made here, and for
    a constant rate a start offset that spaces the workers' sends over the rate's gap."""
    from aiperf._redact import known_secrets

    shares = split(config, n, conversations)
    stride = len(shares)
    secrets = tuple(sorted(known_secrets()))
    return [
        WorkerSpec(
            index=i,
            stride=stride,
            config=share,
            prompts=tuple(prompts),
            bodies=tuple(bodies),
            start_delay_s=(
                i / config.request_rate
                if config.request_rate is not None and config.request_rate_mode == "constant"
                else 0.0
            ),
            secrets=secrets,
            conversations=conversations,
        )
        for i, share in enumerate(shares)
    ]


def stall_timeout() -> float:
    """:data:`STALL_TIMEOUT_S`, or the seconds given in ``AIPERF_WORKER_STALL_TIMEOUT``."""
    raw = os.environ.get(STALL_TIMEOUT_ENV, "").strip()
    if not raw:
        return STALL_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        from aiperf._types import UsageError

        raise UsageError(f"{STALL_TIMEOUT_ENV}: must be a number of seconds > 0 (got {raw!r})")
    return value
