"""The benchmark: prompts ready before the clock starts, load, live bus, samplers, results.

One trio loop drives everything. Requests are the only thing on the hot path; everything else
(metrics, the JSONL line, the live bus) is a finished request's bookkeeping, done when the loop
has nothing else to do (see :meth:`Engine.book_when_idle`), and sinks do their work in their
own tasks and threads.
"""

from __future__ import annotations

import gc
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Protocol

import attrs
import structlog
import trio

from aiperf import _arrivals, _conversations
from aiperf._health import LoopMonitor, ProcessHealth, assess
from aiperf._http import Sender, make_sender, request_url
from aiperf._live import CLOSE_BUDGET_S, LiveBus
from aiperf._metrics import TokenTally, inter_chunk_gaps
from aiperf._redact import scrub_error
from aiperf._stats import Aggregator
from aiperf._types import (
    EndpointType,
    ErrorInfo,
    LiveEvent,
    LoadStrategy,
    Phase,
    PhaseChanged,
    Progress,
    Prompt,
    RecordProcessor,
    ReportSection,
    RequestDone,
    RequestMetrics,
    RequestRecord,
    RunContext,
    RunFailure,
    RunResult,
    RunStatus,
    Sampler,
)

if TYPE_CHECKING:
    from pathlib import Path

    from aiperf._config import ProfileConfig
    from aiperf._health import MeasurementHealth
    from aiperf._types import LiveSink, MetricStats, RunWriter

log = structlog.get_logger()

CANCELLED = ErrorInfo(type="cancelled", message="cancelled by aiperf")
#: the longest the measured phase's first request waits for samplers' readings taken before
#: it (``Sampler.before_profile``); a sampler not ready by then reads as the phase starts.
SAMPLER_READY_BUDGET_S = 2.0

async def _wait_idle() -> None:
    """Return when every other task is blocked and no socket is ready (the loop is idle)."""
    await _all_tasks_blocked()


try:
    # What ``trio.testing.wait_all_tasks_blocked`` is; taken from trio's core because
    # importing ``trio.testing`` imports pytest, far too heavy (and odd) mid-run.
    from trio._core import wait_all_tasks_blocked as _all_tasks_blocked
except ImportError:  # pragma: no cover - a trio that moved it: book every millisecond instead

    async def _all_tasks_blocked(cushion: float = 0.0) -> None:
        await trio.sleep(0.001)


#: finished requests booked per idle moment of the loop.
BOOK_BATCH = 16
#: the longest the loop books without a break: after this much, it serves every socket and
#: timer that became ready before it books more. A request's bookkeeping costs 0.1 to 0.5 ms
#: (its tokenizer count, its JSONL line); sixteen of them in one go held the loop for up to
#: 13 ms on a 2-core machine at concurrency 64, time every other stream's tokens waited.
BOOK_SLICE_NS = 1_000_000
#: the longest a finished request waits for an idle loop before it is booked anyway (an
#: overloaded loop is never idle; its records must still reach the JSONL and the statistics).
BOOK_WAIT_S = 0.05
#: finished requests waiting to be booked beyond which they are booked at once (memory bound).
BOOK_BACKLOG = 1024


@contextmanager
def quiet_collector() -> Iterator[None]:
    """Keep the cyclic garbage collector's pauses off the load: freeze what set-up allocated.

    A full (generation 2) collection walks every container object the process holds, and
    at the start of a load that is mostly set-up: imported modules (numpy, httpx, the
    tokenizer's), the prompts, the configuration. While it runs, the trio loop does nothing
    and responses wait in their sockets; at concurrency 64 a gen-2 collection took 38 ms of
    CPU (46 ms at times) against 10 ms with set-up frozen. ``gc.freeze()`` moves every object
    alive now out of the collector's sight, so later collections walk only what the load
    itself allocates. It is a list splice, no collection: garbage that existed at the freeze
    is kept until ``gc.unfreeze()`` at the end of the load hands everything back. Collections
    still run during the load, over what the load allocates, so memory stays bounded.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class RemoteLoad(Protocol):
    """The load of a run spread over worker processes (see ``_workers.py``)."""

    async def run(self, engine: Engine) -> None: ...

    def stop(self, signum: int) -> None: ...

    def kill(self) -> None: ...


@attrs.define
class _SamplerContext:
    run: RunContext
    bus: LiveBus
    phases: dict[Phase, trio.Event]

    def publish(self, event: LiveEvent) -> None:
        self.bus.publish(event)

    async def phase_started(self, phase: Phase) -> None:
        await self.phases[phase].wait()


@attrs.define
class _PhaseLoad:
    """The :class:`aiperf.LoadContext` of one phase: hands out request indices until the
    phase's count or duration is reached."""

    engine: Engine
    phase: Phase
    count: int | None
    deadline: float | None
    concurrency: int | None
    request_rate: float | None
    random: random.Random
    _trio_anchor: float = attrs.field(factory=trio.current_time)
    _perf_anchor: int = attrs.field(factory=time.perf_counter_ns)
    issued: int = 0

    def claim(self) -> int | None:
        engine = self.engine
        if engine.stopping:
            return None
        if self.count is not None and self.issued >= self.count:
            return None
        if self.deadline is not None and trio.current_time() >= self.deadline:
            return None
        self.issued += 1
        index = engine.next_index
        engine.next_index += engine.index_stride
        return index

    async def execute(self, index: int, intended_ns: int | None = None, sent: trio.Event | None = None) -> None:
        await self.engine.execute(index, self.phase, intended_ns, sent)

    def to_perf_ns(self, trio_time: float) -> int:
        return self._perf_anchor + int((trio_time - self._trio_anchor) * 1e9)

    def prompt(self, index: int) -> Prompt:
        prompts = self.engine.prompts
        return prompts[index % len(prompts)]


@attrs.define
class Engine:
    config: ProfileConfig
    run: RunContext
    endpoint: EndpointType
    strategy: LoadStrategy
    prompts: Sequence[Prompt]
    bodies: Sequence[bytes]
    processors: Sequence[RecordProcessor]
    sinks: Sequence[LiveSink] = ()
    samplers: Sequence[Sampler] = ()
    #: the files written as requests are booked (``aiperf_run_writers``: the JSONL).
    writers: Sequence[RunWriter] = ()
    #: the terminal the progress line is drawn on, or None: the line that says what the end
    #: of the run waits for is then rewritten in place there.
    progress_stream: IO[str] | None = None
    #: in a worker process: hand finished requests to the coordinator instead of keeping them
    #: (metrics None: cancelled, to be written to the JSONL but never counted).
    forward: Callable[[RequestRecord, RequestMetrics | None], None] | None = None
    #: in the coordinator of several worker processes: the load runs there, not here.
    remote: RemoteLoad | None = None
    #: this process's share of request indices: offset, offset + stride, ...
    index_stride: int = 1
    #: signals that stop the run (a worker process listens to SIGTERM only: its coordinator
    #: decides, so a terminal's Ctrl-C reaching the whole group counts once).
    stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    #: the sessions of a conversation run (``--conversation-num``, a multi_turn file), or None.
    conversations: _conversations.ConversationSet | None = None
    #: this process's next session number (offset, offset + stride, ... as request indices).
    next_session: int = 0

    aggregator: Aggregator = attrs.field(init=False)
    tokens: TokenTally = attrs.field(factory=TokenTally)
    #: requests that failed because this process ran out of file descriptors.
    out_of_fds: int = 0
    bus: LiveBus = attrs.field(init=False)
    sender: Sender | None = None
    #: one sender per ``--url``, each with its own pool: request ``i`` uses ``senders[i % n]``.
    senders: list[Sender] = attrs.field(factory=list)
    #: the run writers' ``write`` methods, called for every request booked here.
    _record_writes: tuple[Callable[[RequestRecord, RequestMetrics | None], None], ...] = attrs.field(
        init=False
    )
    next_index: int = 0
    stopping: bool = False
    sent: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0
    cancelled_in_flight: int = 0
    #: requests sent and not finished, by index (a worker reports them, see ``_workers.py``).
    pending: dict[int, RequestRecord] = attrs.field(factory=dict)
    #: why the run could not be carried out whole (a worker process died), or None.
    failure: str | None = None
    #: requests sent twice because the first try never reached the server (keep-alive race).
    retries: int = 0
    _load_scope: trio.CancelScope | None = None
    #: the wait for samplers before the first request; a Ctrl-C there ends it.
    _ready_scope: trio.CancelScope | None = None
    _phase_started: float = 0.0
    _progress_started: float | None = None
    #: finished requests whose bookkeeping waits for an idle loop, oldest first.
    _unbooked: list[RequestRecord] = attrs.field(factory=list, init=False)
    #: set when a request finished while the bookkeeper waits; None while none runs.
    _books_due: trio.Event | None = attrs.field(default=None, init=False)
    #: set as each phase starts, for samplers that mark it (``SamplerContext.phase_started``).
    _phase_events: dict[Phase, trio.Event] = attrs.field(init=False)
    #: which requests the client closes early (``--request-cancellation-rate``), or None.
    cancellation: _arrivals.Cancellation | None = attrs.field(init=False)
    #: measured-phase requests closed by the client on purpose (not errors, not counted).
    client_cancelled: int = 0
    #: the measured phase's metrics by turn index (conversations).
    turn_stats: _conversations.TurnStats = attrs.field(factory=_conversations.TurnStats)
    #: this process's event-loop lag and CPU, when the load runs here (see ``_health.py``).
    monitor: LoopMonitor | None = attrs.field(default=None, init=False)
    #: what each load process measured about itself: this one's, or each worker's.
    process_health: list[ProcessHealth] = attrs.field(factory=list, init=False)
    #: in the coordinator: the largest loop lag the workers reported since the last Progress.
    _remote_lag_ms: float | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.aggregator = Aggregator(goodput=dict(self.config.goodput), specs=self.run.metrics)
        self.cancellation = _arrivals.cancellation(self.config)
        self.bus = LiveBus.for_sinks(list(self.sinks))
        self._phase_events = {phase: trio.Event() for phase in Phase}
        self._record_writes = tuple(w.write for w in self.writers if hasattr(w, "write"))

    # -- the request path ------------------------------------------------------------------

    async def execute(
        self, index: int, phase: Phase, intended_ns: int | None, sent: trio.Event | None = None
    ) -> None:
        prompt = self.prompts[index % len(self.prompts)]
        record = RequestRecord(
            index=index,
            phase=phase,
            intended_ns=intended_ns,
            input_tokens=prompt.input_tokens,
            max_tokens=prompt.max_tokens,
            values=prompt.input_values or None,
        )
        assert self.senders, "run_benchmark builds the senders before any request"
        sender = self.senders[index % len(self.senders)]
        await self.send_record(record, sender, self.bodies[index % len(self.bodies)], sent=sent)

    async def send_record(
        self,
        record: RequestRecord,
        sender: Sender,
        body: bytes,
        extra_head: bytes = b"",
        sent: trio.Event | None = None,
    ) -> str | None:
        """Send one request and hand it to the bookkeeping; returns the answer's text, or None
        when there is none (it failed, or the client cancelled it)."""
        index = record.index
        cancel_after = self.cancellation.delay_for(index) if self.cancellation is not None else None
        self.sent += 1
        self.in_flight += 1
        self.pending[index] = record
        try:
            if sent is None:
                await sender.send(record, body, extra_head, cancel_after)
            else:
                await sender.send(record, body, extra_head, cancel_after, sent)
        except trio.Cancelled:
            # Stopped by Ctrl-C or by the end of the grace period: keep what we saw, but a
            # request cut short by us says nothing about the server, so it is not counted.
            record.cancelled = True
            record.error = scrub_error(record.error) if record.error else CANCELLED
            self.cancelled_in_flight += 1
            if self.pending.get(index) is record:
                del self.pending[index]
            if self.forward is None:
                self.write_unfinished(record)
            else:
                # A worker: the coordinator writes the line; its final batch carries it.
                self.forward(record, None)
            raise
        finally:
            self.in_flight -= 1
        if record.client_cancelled:
            # Closed on purpose: its line is written and it is counted apart, never measured.
            if self.pending.get(index) is record:
                del self.pending[index]
            if self.forward is None:
                self.write_unfinished(record)
            else:
                self.forward(record, None)
            return None
        # Taken before the bookkeeping, which may strip the texts (a worker ships no text).
        reply = record.output_text if record.ok else None
        # The next request of this slot leaves now; the bookkeeping of this one (metrics with
        # the tokenizer, the JSONL line, aggregation, the live bus) waits for an idle loop.
        # Done here, it sat between a response's last byte and the next request on the wire
        # (turnaround), and at concurrency 64 several slots finishing together held the loop
        # for a millisecond while other streams' tokens waited in their sockets.
        self._unbooked.append(record)
        if self._books_due is None or len(self._unbooked) >= BOOK_BACKLOG:
            self.book()
        else:
            self._books_due.set()
        return reply

    def book(self, limit: int | None = None) -> None:
        """Do the bookkeeping of finished requests, oldest first (all, or ``limit``)."""
        unbooked = self._unbooked
        count = len(unbooked) if limit is None else min(limit, len(unbooked))
        batch = unbooked[:count]
        del unbooked[:count]
        pending = self.pending
        for record in batch:
            # Sent and not yet reported: a worker process lists it until its line is written.
            if pending.get(record.index) is record:
                del pending[record.index]
            self._finish(record)

    async def book_when_idle(self) -> None:
        """Book finished requests when no other task has work: between bursts of tokens.

        ``wait_all_tasks_blocked`` returns once the scheduler found nothing runnable and no
        socket ready; a batch of :data:`BOOK_BATCH` then runs. A loop that is never idle
        books everything after :data:`BOOK_WAIT_S`. Whatever is left when the load ends (or
        is cancelled) is booked by :meth:`run_benchmark`, so every request keeps its line.
        """
        try:
            while True:
                due = self._books_due = trio.Event()
                if not self._unbooked:
                    await due.wait()
                idle = False
                with trio.move_on_after(BOOK_WAIT_S):
                    await _wait_idle()
                    idle = True
                await self._book_in_slices(BOOK_BATCH if idle else len(self._unbooked))
        finally:
            self._books_due = None

    async def _book_in_slices(self, count: int) -> None:
        """Book ``count`` requests, yielding to the loop after each :data:`BOOK_SLICE_NS`."""
        clock = time.perf_counter_ns
        while count > 0 and self._unbooked:
            until = clock() + BOOK_SLICE_NS
            while count > 0 and self._unbooked:
                self.book(1)
                count -= 1
                if clock() >= until:
                    break
            # A checkpoint puts this task at the back of the run queue; the loop polls its
            # sockets before it runs again, so a token that arrived meanwhile is read now.
            await trio.lowlevel.checkpoint()

    def _finish(self, record: RequestRecord) -> None:
        metrics = self._measure(record)
        if self.forward is not None:
            self.completed += record.ok
            self.failed += not record.ok
            self.forward(record, metrics)
        else:
            self.accept(record, metrics)

    def _measure(self, record: RequestRecord) -> RequestMetrics:
        values: dict[str, float] = {}
        for processor in self.processors:
            try:
                processor.process(record, values, self.run)
            except Exception as exc:  # noqa: BLE001 - one response must never end the run
                # What a response held made a metric fail: that request is an error, its
                # half-computed values are dropped, the run goes on.
                values = {}
                record.error = ErrorInfo(
                    type="parse_error",
                    message=f"measuring failed in {processor.name}: {type(exc).__name__}: {exc}"[:300],
                )
                break
        if record.error is not None:
            # Before anything sees the record (JSONL, sinks, the coordinator), and after the
            # last error it can get (a processor's message may quote what the response held):
            # an error body may echo a credential the request carried.
            record.error = scrub_error(record.error)
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
        return metrics

    def accept(self, record: RequestRecord, metrics: RequestMetrics) -> None:
        """Count, aggregate, export and publish one finished request."""
        if record.ok:
            self.completed += 1
        else:
            self.failed += 1
        self.retries += record.retries
        lag = record.start_ns - record.intended_ns if record.intended_ns is not None else None
        self.aggregator.add(metrics, lag)
        if record.turn is not None:
            self.turn_stats.add(record.turn, metrics, record.session_id)
        if record.ok and record.phase is Phase.PROFILE:
            self.tokens.add(record, metrics.values)
        elif record.error is not None and _out_of_fds(record.error.message):
            self.out_of_fds += 1
        for write in self._record_writes:  # the JSONL line
            try:
                write(record, metrics)
            except Exception as exc:  # noqa: BLE001 - a plugin's writer must never stop the run
                self._writer_failed(write, exc)
        self.bus.publish(RequestDone(metrics=metrics, record=record))

    def write_unfinished(self, record: RequestRecord) -> None:
        """The JSONL line of a request that did not finish (cancelled, or lost with a worker
        process, or closed on purpose by the client): written, so that every request sent has
        its line, and never in the statistics."""
        if record.client_cancelled and record.phase is Phase.PROFILE:
            self.client_cancelled += 1
        for write in self._record_writes:
            try:
                write(record, None)
            except Exception as exc:  # noqa: BLE001
                self._writer_failed(write, exc)

    def _writer_failed(self, write: Callable[[RequestRecord, RequestMetrics | None], None], exc: Exception) -> None:
        """A run writer raised: said once, and it gets no more requests."""
        self._record_writes = tuple(w for w in self._record_writes if w != write)
        writer = getattr(write, "__self__", write)
        log.warning("run_writer_failed", writer=getattr(writer, "name", repr(writer)), error=f"{type(exc).__name__}: {exc}")

    # -- the run ---------------------------------------------------------------------------

    async def run_benchmark(self) -> RunResult:
        config = self.config
        # One sender (its own connection pool) per --url: request i goes to senders[i % n].
        self.senders = [
            make_sender(attrs.evolve(config, url=url, urls=()), self.endpoint) for url in config.urls
        ]
        self.sender = self.senders[0]
        status = RunStatus.FINISHED
        try:
            await self.bus.open_all(self.run)
            async with trio.open_nursery() as outer:
                outer.start_soon(self._watch_signals, outer.cancel_scope)
                async with trio.open_nursery() as sinks:
                    await self.bus.run_all(sinks)
                    async with trio.open_nursery() as background:
                        for sampler in self.samplers:
                            background.start_soon(self._run_sampler, sampler)
                        background.start_soon(self._report_progress)
                        background.start_soon(self.book_when_idle)
                        if self.remote is None:
                            self.monitor = LoopMonitor(in_flight=lambda: self.in_flight)
                            background.start_soon(self.monitor.run)
                        with quiet_collector():
                            try:
                                await self._run_phases()
                            finally:
                                # Finished requests still waiting for an idle loop: every
                                # one gets its line and its place in the statistics, Ctrl-C
                                # or not.
                                self.book()
                        background.cancel_scope.cancel()
                    # The once-a-second samples miss the end: sinks get the final counts.
                    self._publish_progress(final=True)
                    self.bus.end_streams()
                    if any(not getattr(o.sink, "in_process", False) for o in self.bus.outlets):
                        # Sinks still sending after a second: a line says what the end waits for.
                        outer.start_soon(self._report_flush)
                    # Sinks drain what is queued; one stuck in a blocking call is abandoned.
                    sinks.cancel_scope.deadline = trio.current_time() + CLOSE_BUDGET_S
                if self.failure is not None:
                    status = RunStatus.FAILED
                elif self.run.cancelled:
                    status = RunStatus.KILLED
                elif self.aggregator.ok == 0 and self.aggregator.failed > 0:
                    status = RunStatus.FAILED
                # Closing sinks can take long (a final flush to a slow collector): the signal
                # watcher stays up meanwhile, so a second Ctrl-C still exits at once.
                await self.bus.close_all(status)
                outer.cancel_scope.cancel()
        finally:
            for sender in self.senders:
                sender.close()
        return self._result(status)

    async def _run_phases(self) -> None:
        if self.remote is not None:
            # The warm-up runs in the worker processes: with one, the measured phase starts
            # there, and samplers take their readings as it does.
            if not self.config.warmup_request_count:
                await self._samplers_ready()
            if not self.stopping:  # Ctrl-C while samplers got ready
                await self.remote.run(self)
            return
        config = self.config
        # Each worker process draws its own arrivals: same seed, different stream.
        rng = random.Random(f"{config.random_seed}:{self.next_index}")
        count = config.effective_request_count
        if self.conversations is not None:
            count = config.request_count  # sessions bound the phase; a count is a cap on turns
        with trio.CancelScope() as scope:
            self._load_scope = scope
            if config.warmup_request_count:
                await self._run_phase(Phase.WARMUP, config.warmup_request_count, None, rng)
            await self._samplers_ready()
            self.run.profile_start_ns = time.perf_counter_ns()
            monitor = self.monitor
            if monitor is not None:
                monitor.begin()
            try:
                await self._run_phase(Phase.PROFILE, count, config.benchmark_duration, rng)
            finally:
                if monitor is not None:
                    monitor.end()
                    figures = monitor.figures()
                    if figures is not None:
                        self.process_health.append(figures)
        self.run.profile_end_ns = time.perf_counter_ns()

    async def _run_phase(
        self, phase: Phase, count: int | None, duration: float | None, rng: random.Random
    ) -> None:
        config = self.config
        self.run.phase = phase
        self._phase_started = trio.current_time()
        self.announce_phase(phase, time.perf_counter_ns())
        deadline = self._phase_started + duration if duration else None
        load = _PhaseLoad(
            engine=self,
            phase=phase,
            count=count,
            deadline=deadline,
            concurrency=config.concurrency,
            request_rate=config.request_rate,
            random=rng,
        )
        with trio.CancelScope() as scope:
            if deadline is not None:
                # In-flight requests get the grace period to finish once sending stops;
                # whatever is still running then is cancelled and reported, not counted.
                scope.deadline = deadline + config.benchmark_grace_period
            if self.conversations is not None:
                # The strategy hands out sessions; each runs its turns one after another.
                await self.strategy.drive(self.conversations.load(self, load))
            else:
                await self.strategy.drive(load)

    def announce_phase(self, phase: Phase, perf_ns: int) -> None:
        """Tell sinks and samplers that ``phase`` started; never waits (a sampler that takes a
        reading at the start does so in its own task, off the request path)."""
        self.bus.publish(PhaseChanged(phase=phase, perf_ns=perf_ns))
        self._phase_events[phase].set()

    async def _samplers_ready(self) -> None:
        """Right before the measured phase (after the warm-up, nothing in flight), wait for
        samplers that take a reading then (a server's counters, so that the phase counts
        exactly the requests it sent): ``Sampler.before_profile``."""
        waits = [
            (sampler.name, wait)
            for sampler in self.samplers
            if (wait := getattr(sampler, "before_profile", None)) is not None
        ]
        if not waits:
            return

        async def ready(name: str, wait: Callable[[], Awaitable[None]]) -> None:
            try:
                await wait()
            except Exception as exc:  # noqa: BLE001 - a sampler must never stop the benchmark
                log.warning("sampler_failed", sampler=name, error=f"{type(exc).__name__}: {exc}")

        with trio.move_on_after(SAMPLER_READY_BUDGET_S) as scope:
            self._ready_scope = scope
            async with trio.open_nursery() as nursery:
                for name, wait in waits:
                    nursery.start_soon(ready, name, wait)
        if scope.cancelled_caught:
            log.info("samplers_not_ready", waited_s=SAMPLER_READY_BUDGET_S)

    async def _run_sampler(self, sampler: Sampler) -> None:
        try:
            await sampler.run(_SamplerContext(self.run, self.bus, self._phase_events))
        except Exception as exc:  # noqa: BLE001 - a sampler must never stop the benchmark
            log.warning("sampler_failed", sampler=sampler.name, error=f"{type(exc).__name__}: {exc}")

    async def _watch_signals(self, outer: trio.CancelScope) -> None:
        if not self.stop_signals:  # stopped by request_stop only
            return
        with trio.open_signal_receiver(*self.stop_signals) as signals:
            async for signum in signals:
                if self.run.cancelled:
                    if self.remote is not None:
                        self.remote.kill()
                    # A second Ctrl-C: the user wants out now, exports or not.
                    _say("\naiperf: interrupted again, exiting without exports\n")
                    import os

                    # os._exit skips every buffer: keep the lines of requests already finished.
                    self.book()
                    for writer in self.writers:
                        flush = getattr(writer, "flush", None)
                        if flush is not None:
                            flush()
                    os._exit(128 + signum)
                self.request_stop(signum)

    def request_stop(self, signum: int) -> None:
        """Stop the run as the signal ``signum`` does the first time: requests in flight are
        cancelled and written, the finished ones kept. A worker whose trio loop does not run
        in its main thread (no signals there) is stopped by calling this from that loop."""
        self.run.cancelled = True
        self.run.state["signal"] = signum
        self.stopping = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.forward is None:  # a worker's stop is its coordinator's to announce
            _say(
                f"\naiperf: {name}: stopping, writing results of the completed requests "
                "(press Ctrl-C again to quit at once)\n"
            )
        if self._ready_scope is not None:
            self._ready_scope.cancel()
        if self.remote is not None:
            self.remote.stop(signum)
        elif self._load_scope is not None:
            self._load_scope.cancel()

    async def _report_flush(self) -> None:
        stream = self.progress_stream
        if stream is None:
            await self.bus.report_flush(_say, rewrite=False)
            return

        def write(text: str) -> None:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass

        await self.bus.report_flush(write, rewrite=True)

    async def _report_progress(self) -> None:
        self._progress_started = trio.current_time()
        while True:
            await trio.sleep(1.0)
            self._publish_progress()

    def _publish_progress(self, final: bool = False) -> None:
        """The run's counters, for live sinks (the progress line is one, see builtin/progress.py)."""
        elapsed = trio.current_time() - (self._progress_started or trio.current_time())
        total = self.config.effective_request_count if self.conversations is None else None
        self.bus.publish(
            Progress(
                phase=self.run.phase,
                sent=self.sent,
                completed=self.completed,
                failed=self.failed,
                in_flight=self.in_flight,
                elapsed_s=elapsed,
                # A worker's lag goes to its coordinator with its batches (``take_loop_lag``).
                loop_lag_ms=self.take_loop_lag() if self.forward is None else None,
                ok_rate=self.profile_rate(),
                total=total + self.config.warmup_request_count if total else None,
                final=final,
            )
        )

    def take_loop_lag(self) -> float | None:
        """The largest event-loop lag of the load processes since the last call (ms)."""
        if self.remote is not None:
            lag, self._remote_lag_ms = self._remote_lag_ms, None
            return lag
        return self.monitor.take_recent_ms() if self.monitor is not None else None

    def note_loop_lag(self, lag_ms: float | None) -> None:
        """A worker's largest loop lag since its last message (the coordinator's side)."""
        if lag_ms is not None and (self._remote_lag_ms is None or lag_ms > self._remote_lag_ms):
            self._remote_lag_ms = lag_ms

    def profile_rate(self, now_ns: int | None = None) -> float:
        """Successful requests per second of the measured phase so far.

        Taken from the records this process has received and the phase's start on the
        perf_counter clock, which worker processes share with their coordinator: the same
        figure whether the load runs here or in workers (which set ``profile_start_ns`` only
        through their messages).
        """
        start = self.run.profile_start_ns
        if self.run.phase is not Phase.PROFILE or start is None:
            return 0.0
        seconds = ((now_ns or time.perf_counter_ns()) - start) / 1e9
        return self.aggregator.ok / seconds if seconds > 0 else 0.0

    def _result(self, status: RunStatus) -> RunResult:
        agg = self.aggregator
        notes = self.bus.notes()
        if self.out_of_fds:
            notes.append(_fd_note(self.out_of_fds))
            log.warning("out_of_file_descriptors", note=notes[-1])
        for note in self.tokens.notes(self.config.use_server_token_count):
            # One line on stderr at the end of the run, and the same words in the summary.
            log.warning("token_counts", note=note)
            notes.append(note)
        if self.cancelled_in_flight and not self.run.cancelled:
            notes.append(
                f"{self.cancelled_in_flight} requests were still in flight when the grace "
                f"period ended; they were cancelled and are not counted"
            )
        metrics = agg.request_metrics()
        send_lag = agg.send_lag()
        return RunResult(
            status=status,
            was_cancelled=self.run.cancelled,
            metrics=metrics,
            run_metrics=agg.run_metrics(),
            errors=agg.error_summary(),
            start_wall_ns=self.run.to_wall_ns(agg.first_start_ns) if agg.first_start_ns else None,
            end_wall_ns=self.run.to_wall_ns(agg.last_end_ns) if agg.last_end_ns else None,
            send_lag=send_lag,
            health=self._health(metrics, send_lag),
            notes=tuple(notes),
            partial_reason=self.failure,
            sections=(
                # Requests sent a second time on a fresh connection because the first try
                # provably never reached the server (see docs/reliability.md).
                ReportSection(name="connections", title="Connections", data={"retries": self.retries}),
                *_conversations.sections(self),
            ),
        )


    def _health(
        self, metrics: dict[str, MetricStats], send_lag: MetricStats | None
    ) -> MeasurementHealth | None:
        if not self.process_health:
            return None

        def p50(tag: str) -> float | None:
            stats = metrics.get(tag)
            return stats.percentiles.get("p50") if stats is not None else None

        return assess(
            sorted(self.process_health, key=lambda p: -1 if p.worker is None else p.worker),
            ttft_p50_ms=p50("time_to_first_token"),
            itl_p50_ms=p50("inter_token_latency"),
            send_lag_p99_ms=send_lag.percentiles.get("p99") if send_lag is not None else None,
        )


def _out_of_fds(message: str) -> bool:
    return "Too many open files" in message or "EMFILE" in message


def _fd_note(failed: int) -> str:
    try:
        import resource

        limit = f" ({resource.getrlimit(resource.RLIMIT_NOFILE)[0]})"
    except (ImportError, OSError, ValueError):
        limit = ""
    return (
        f"{failed} requests failed because aiperf ran out of file descriptors{limit}: this is "
        "the client's limit, not the server's; lower --concurrency or raise 'ulimit -n'"
    )


def request_urls(config: ProfileConfig, endpoint: EndpointType) -> list[str]:
    """Where requests go, one per ``--url`` (request ``i`` to the ``i % n``-th)."""
    return [request_url(attrs.evolve(config, url=url, urls=()), endpoint) for url in config.urls]


async def check_servers(urls: Sequence[str], wait_s: float, ca_bundle: Path | None = None) -> None:
    """:func:`check_server` for every ``--url``, one after the other."""
    for url in urls:
        await check_server(url, wait_s, ca_bundle)


def _say(line: str) -> None:
    # After SIGHUP the terminal may be gone: a line that cannot be shown must not stop the run.
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


async def check_server(url: str, wait_s: float, ca_bundle: Path | None = None) -> None:
    """Fail fast, with one line, when nothing listens at ``url``; or wait for it to come up.

    For ``https://`` the TLS handshake is made too, so an untrusted certificate is one line
    before the run instead of every request failing the same way.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = trio.current_time() + wait_s
    waiting = False
    while True:
        try:
            with trio.fail_after(5):
                stream = await trio.open_tcp_stream(host, port)
            if parts.scheme == "https":
                await _check_tls(stream, host, f"https://{host}:{port}", ca_bundle)
            await stream.aclose()
            return
        except (OSError, trio.TooSlowError) as exc:
            if trio.current_time() >= deadline:
                reason = "timed out" if isinstance(exc, trio.TooSlowError) else (exc.strerror or str(exc))
                hint = (
                    f"waited {wait_s:g} s" if wait_s
                    else "start it first, or pass --wait-for-model-timeout SECONDS to wait for it"
                )
                raise RunFailure(
                    f"cannot reach the server at {parts.scheme}://{host}:{port} ({reason}); {hint}"
                ) from None
            if not waiting:
                waiting = True
                log.info("waiting_for_server", url=f"{parts.scheme}://{host}:{port}", timeout_s=wait_s)
            await trio.sleep(0.5)


#: what OpenSSL says when the answer to a ClientHello is not TLS (e.g. ``HTTP/1.1 400``).
_PLAIN_TEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE",
     "UNKNOWN_PROTOCOL"}
)


async def _check_tls(stream: trio.SocketStream, host: str, shown: str, ca_bundle: Path | None) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
    tls = trio.SSLStream(stream, context, server_hostname=host)
    plain = (
        f"the server at {shown} does not speak TLS (it sent no TLS answer to the handshake); "
        f"use {shown.replace('https://', 'http://', 1)} if it serves plain HTTP"
    )
    try:
        with trio.fail_after(5):
            await tls.do_handshake()
    except trio.TooSlowError:
        # It accepted the connection but never answered the handshake: a plain-HTTP server
        # waits for the end of a request line that never comes.
        raise RunFailure(plain) from None
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError) and cause.reason in _PLAIN_TEXT_REASONS:
            raise RunFailure(plain) from None
        if isinstance(cause, ssl.SSLCertVerificationError):
            hint = (
                "pass --ca-bundle FILE with the CA that signed it" if ca_bundle is None
                else f"{ca_bundle} does not hold the CA that signed it"
            )
            raise RunFailure(
                f"cannot verify the TLS certificate of {shown} ({cause.verify_message}); {hint}"
            ) from None
        raise RunFailure(f"the TLS handshake with {shown} failed ({cause or exc})") from None
    finally:
        await trio.aclose_forcefully(tls)
