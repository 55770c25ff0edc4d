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
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import struct
import time
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio

from aiperf._types import Phase, PhaseChanged, RequestMetrics, RequestRecord

if TYPE_CHECKING:
    from collections.abc import Sequence
    from multiprocessing.connection import Connection

    from aiperf._config import ProfileConfig
    from aiperf._engine import Engine
    from aiperf._types import Prompt

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


def auto_workers(config: ProfileConfig, cpus: int | None = None) -> int:
    """What the machine sensibly allows: one process until the load is heavy, then one per
    core (leaving one core for the coordinator and a local server), one per 64 of load."""
    if config.workers is not None:
        return config.workers
    cpus = cpus or os.cpu_count() or 1
    if cpus < 4:
        return 1
    load = config.request_rate if config.request_rate is not None else (config.effective_concurrency or 1)
    return max(1, min(cpus - 1, int(load // AUTO_SHARE)))


def needs_pool(workers: int, sinks: Sequence[object]) -> bool:
    """Whether the load runs in worker processes: when there are several, and whenever live
    sinks run, whose SDK threads would otherwise compete with the request loop for the
    interpreter lock (a span batch encoded in pure Python holds it for tens of milliseconds)."""
    return workers > 1 or bool(sinks)


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


def split(config: ProfileConfig, n: int) -> list[ProfileConfig]:
    """The configs of ``n`` workers: concurrency, rate, counts divided; workers with nothing to
    do are left out."""
    shares = []
    for i in range(n):
        concurrency = _share(config.concurrency, n, i)
        count = _share(config.effective_request_count, n, i)
        if concurrency == 0 or count == 0:
            continue
        shares.append(
            attrs.evolve(
                config,
                concurrency=concurrency,
                request_rate=config.request_rate / n if config.request_rate is not None else None,
                request_count=count,
                warmup_request_count=_share(config.warmup_request_count, n, i) or 0,
                workers=1,
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
    from aiperf._engine import Engine
    from aiperf._plugins import Plugins
    from aiperf._tokenizer import load_tokenizer
    from aiperf._types import RunContext

    config = spec.config
    plugins = Plugins.load()
    endpoint = plugins.endpoints()[config.endpoint_type]
    strategy_name = "concurrency" if config.request_rate is None else config.request_rate_mode
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
    )
    batch: list[tuple[RequestRecord, RequestMetrics]] = []

    def forward(record: RequestRecord, metrics: RequestMetrics) -> None:
        batch.append((_strip(record), metrics))

    engine = Engine(
        config=config,
        run=run,
        endpoint=endpoint,
        strategy=plugins.load_strategies()[strategy_name].create(config),
        prompts=spec.prompts,
        bodies=spec.bodies,
        processors=plugins.record_processors(),
        forward=forward,
        index_stride=spec.stride,
        stop_signals=(signal.SIGTERM,),
    )
    # The coordinator stops us with SIGTERM; Ctrl-C on the terminal is its to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine.next_index = spec.index

    async def ship(out: trio.lowlevel.FdStream) -> None:
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
                await send(out, after)

    async def send(out: trio.lowlevel.FdStream, after: list[tuple[Any, ...]]) -> None:
        # The batch is taken before the first await: requests finishing meanwhile go to the next.
        messages: list[tuple[Any, ...]] = [("done", batch[:])] if batch else []
        batch.clear()
        messages.append(("progress", engine.sent, engine.in_flight))
        await out.send_all(b"".join(encode(m) for m in messages + after))

    async def main() -> None:
        async with _stream(conn) as out:
            if spec.start_delay_s:
                await trio.sleep(spec.start_delay_s)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ship, out)
                result = await engine.run_benchmark()
                nursery.cancel_scope.cancel()
            cut = engine.cancelled_in_flight
            end = ("end", result.was_cancelled, cut, run.profile_start_ns, run.profile_end_ns)
            await send(out, [end])

    trio.run(main)


@attrs.define
class WorkerPool:
    """The coordinator's side: starts the workers and feeds their requests into the engine."""

    specs: list[WorkerSpec]
    processes: list[Any] = attrs.field(factory=list)
    sent: dict[int, int] = attrs.field(factory=dict)
    in_flight: dict[int, int] = attrs.field(factory=dict)
    stopping: bool = False
    #: this process runs live sinks: once the workers run, it yields the CPU to them.
    yield_cpu: bool = False

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
                os.kill(process.pid, signal.SIGTERM)

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
        for process, reader in self.processes:
            await reader.stream.aclose()
            await trio.to_thread.run_sync(process.join, 10)
        engine.run.profile_start_ns = min(starts) if starts else None
        engine.run.profile_end_ns = max(ends) if ends else time.perf_counter_ns()

    async def _drain(
        self, engine: Engine, i: int, reader: MessageReader, starts: list[int], ends: list[int]
    ) -> None:
        profile_seen = False
        while True:
            try:
                message = await reader.receive()
            except EOFError:
                return
            kind = message[0]
            if kind == "done":
                for record, metrics in message[1]:
                    engine.accept(record, metrics)
            elif kind == "progress":
                self.sent[i], self.in_flight[i] = message[1], message[2]
                engine.sent = sum(self.sent.values())
                engine.in_flight = sum(self.in_flight.values())
            elif kind == "phase":
                phase = message[1]
                if phase is Phase.PROFILE and not profile_seen:
                    profile_seen = True
                    if engine.run.phase is not Phase.PROFILE:
                        engine.run.phase = Phase.PROFILE
                        engine.run.profile_start_ns = message[2]
                        engine.bus.publish(PhaseChanged(phase=Phase.PROFILE, perf_ns=message[2]))
            elif kind == "end":
                _kind, cancelled, cut, start, end = message
                engine.cancelled_in_flight += cut
                if cancelled:
                    engine.run.cancelled = True
                if start is not None:
                    starts.append(start)
                if end is not None:
                    ends.append(end)
                return


def make_pool(
    config: ProfileConfig,
    n: int,
    prompts: list[Prompt],
    bodies: list[bytes],
    *,
    yield_cpu: bool = False,
) -> WorkerPool:
    shares = split(config, n)
    stride = len(shares)
    specs = [
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
        )
        for i, share in enumerate(shares)
    ]
    return WorkerPool(specs, yield_cpu=yield_cpu)
