"""``--workers N``: the load in N processes, each its own trio loop, merged into one result.

The coordinator (the ``aiperf profile`` process) keeps everything that is about the run as a
whole: live sinks, samplers, the aggregator, the JSONL file, the exports. Each worker gets a
share of the concurrency (or rate) and of the request count, sends requests exactly as a
single-process run does, computes each request's metrics, and ships finished requests to the
coordinator in small batches. perf_counter is the system's monotonic clock, so times taken in
different processes compare directly.

The split is by message passing only (a pipe per worker, pickled batches), which is also the
shape a run spread over several machines would take.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import attrs
import trio

from aiperf._types import Phase, PhaseChanged, RequestMetrics, RequestRecord

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from aiperf._config import ProfileConfig
    from aiperf._engine import Engine
    from aiperf._types import Prompt

#: a worker ships finished requests at least this often, or when this many have piled up.
BATCH_INTERVAL_S = 0.05
BATCH_SIZE = 256
#: one worker process per this many concurrent requests (or requests per second) in auto mode.
AUTO_SHARE = 64


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

    async def ship() -> None:
        last_phase = None
        while True:
            await trio.sleep(BATCH_INTERVAL_S)
            flush()
            if run.phase is not last_phase:
                last_phase = run.phase
                start = run.profile_start_ns if run.phase is Phase.PROFILE else time.perf_counter_ns()
                conn.send(("phase", run.phase, start))

    def flush() -> None:
        conn.send(("progress", engine.sent, engine.in_flight))
        if batch:
            conn.send(("done", batch[:]))
            batch.clear()

    async def main() -> None:
        if spec.start_delay_s:
            await trio.sleep(spec.start_delay_s)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ship)
            result = await engine.run_benchmark()
            nursery.cancel_scope.cancel()
        flush()
        conn.send(("end", result.was_cancelled, engine.cancelled_in_flight, run.profile_start_ns, run.profile_end_ns))

    try:
        trio.run(main)
    finally:
        conn.close()


@attrs.define
class WorkerPool:
    """The coordinator's side: starts the workers and feeds their requests into the engine."""

    specs: list[WorkerSpec]
    processes: list[Any] = attrs.field(factory=list)
    sent: dict[int, int] = attrs.field(factory=dict)
    in_flight: dict[int, int] = attrs.field(factory=dict)
    stopping: bool = False

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for spec in self.specs:
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=worker_main, args=(spec, send), daemon=True)
            process.start()
            send.close()
            self.processes.append((process, receive))

    def stop(self, signum: int) -> None:
        """Tell every worker to stop (SIGTERM; workers ignore SIGINT, so a terminal's Ctrl-C,
        which reaches the whole process group, is counted once, here)."""
        self.stopping = True
        for process, _conn in self.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def kill(self) -> None:
        """A second Ctrl-C: the coordinator exits at once, and takes its workers with it."""
        for process, _conn in self.processes:
            if process.is_alive():
                process.kill()

    async def run(self, engine: Engine) -> None:
        if not self.processes:
            self.start()
        starts: list[int] = []
        ends: list[int] = []
        async with trio.open_nursery() as nursery:
            for i, (_process, conn) in enumerate(self.processes):
                nursery.start_soon(self._drain, engine, i, conn, starts, ends)
        for process, _conn in self.processes:
            await trio.to_thread.run_sync(process.join, 10)
        engine.run.profile_start_ns = min(starts) if starts else None
        engine.run.profile_end_ns = max(ends) if ends else time.perf_counter_ns()

    async def _drain(self, engine: Engine, i: int, conn: Connection, starts: list[int], ends: list[int]) -> None:
        profile_seen = False
        while True:
            try:
                message = await trio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
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


def make_pool(config: ProfileConfig, n: int, prompts: list[Prompt], bodies: list[bytes]) -> WorkerPool:
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
    return WorkerPool(specs)
