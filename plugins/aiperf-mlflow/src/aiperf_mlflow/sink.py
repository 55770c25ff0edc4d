"""The live MLflow sink: ``live.*`` points logged in batches while the benchmark runs.

Events arrive on the trio thread and become points in a bounded buffer; a background task
hands batches to MLflow through ``trio.to_thread.run_sync``. Nothing here ever makes the bus
wait on MLflow: a full buffer drops points (counted), a failing server loses them (counted).
"""

from __future__ import annotations

import collections
import functools
import time
from typing import TYPE_CHECKING

import attrs
import structlog
import trio
from aiperf import (
    HardwareSample,
    Phase,
    Progress,
    RequestDone,
    RunContext,
    RunStatus,
    ServerMetricSample,
)

from aiperf_mlflow import environment
from aiperf_mlflow.points import (
    Point,
    hardware_points,
    progress_points,
    request_points,
    server_key,
    server_point,
)
from aiperf_mlflow.session import BATCH_LIMIT, MlflowSession, describe_error

if TYPE_CHECKING:
    from aiperf import LiveEvent

log = structlog.get_logger()


@attrs.define(kw_only=True)
class MlflowLiveSink:
    session: MlflowSession
    name: str = "mlflow"
    #: how often points go out; short enough that the curves grow visibly in the UI.
    flush_interval_s: float = 1.0
    #: longest pause between tries while the server keeps failing.
    max_backoff_s: float = 30.0
    buffer_limit: int = 100_000
    #: per-request points of at most this many requests a second (by their end times, after
    #: the first ``request_burst``): a token bucket. A tracking server takes a few thousand
    #: points a second (a local one with its sqlite store about 0.3-0.5 s per 1000), while a
    #: fast server finishes over a thousand requests a second, six points each: sent in full,
    #: MLflow falls behind for the whole run and the end waits for it. MLflow's charts show a
    #: few hundred points per curve anyway. 0 keeps every request.
    request_rate: float = 100.0
    #: requests whose points are kept before the rate applies: a short run keeps them all.
    request_burst: int = 100
    #: creating the experiment and run, after the probe. With the probe it stays inside the
    #: core's budget for opening all sinks.
    start_budget_s: float = 8.0
    #: the final flush; what is still buffered after it is counted as failed.
    close_budget_s: float = 20.0
    #: why there is no live run (the server did not answer, MLflow refused), or None.
    unavailable: str | None = None
    _run: RunContext | None = None
    _buffer: collections.deque[Point] = attrs.field(factory=collections.deque)
    _wake: trio.Event = attrs.field(factory=trio.Event)
    _stopped: trio.Event = attrs.field(factory=trio.Event)
    _gpu_steps: dict[tuple[str, int], int] = attrs.field(factory=dict)
    _server_steps: dict[str, int] = attrs.field(factory=dict)
    #: metrics endpoints in the order their first sample came: all but the first are named.
    _server_sources: dict[str, None] = attrs.field(factory=dict)
    _failure_streak: int = 0
    _last_error: str | None = None
    #: the token bucket of the thinning, in nanoseconds of credit (a request costs 1 / rate s),
    #: and the latest end time it was refilled to.
    _credit_ns: int | None = None
    _refilled_ns: int | None = None
    #: points of the batch on its way to MLflow.
    _sending: int = 0

    async def open(self, run: RunContext) -> None:
        self._run = run
        config = self.session.config
        if config.is_server and not await self._probe():
            log.warning(environment.unresponsive_message(config, self.session.probe_timeout_s))
            self.unavailable = (
                f"the tracking server did not respond within {self.session.probe_timeout_s:g}s"
            )
            return
        start = functools.partial(self.session.start_run, run)
        with trio.move_on_after(self.start_budget_s) as scope:
            try:
                # Abandoned on timeout: the thread may still finish, and the exporter then
                # finds its run (start_run is idempotent and locked).
                await trio.to_thread.run_sync(start, abandon_on_cancel=True)
            except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; none may stop the run
                self.unavailable = describe_error(exc)
                log.warning(
                    "mlflow_live_run_failed", uri=config.display_uri, error=self.unavailable
                )
        if scope.cancelled_caught:
            self.unavailable = f"creating the MLflow run took longer than {self.start_budget_s:g}s"
            log.warning("mlflow_live_run_failed", uri=config.display_uri, error=self.unavailable)

    async def _probe(self) -> bool:
        probe = functools.partial(
            environment.probe, self.session.config, self.session.probe_timeout_s
        )
        # httpx's timeout is per phase (connect, read); this bounds the whole probe.
        with trio.move_on_after(self.session.probe_timeout_s + 0.5):
            return await trio.to_thread.run_sync(probe, abandon_on_cancel=True)
        return False

    async def run(self, events: trio.MemoryReceiveChannel[LiveEvent]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flush_loop)
            async for event in events:
                self.accept(event)
            # Let a batch in flight land (and count as logged); close() sends the rest. A batch
            # stuck on a hung server gets half of what is left of the deadline it shares with
            # the upload (--mlflow-upload-timeout), then is abandoned and counted as failed.
            self._stopped.set()
            self._wake.set()
            nursery.cancel_scope.deadline = trio.current_time() + min(
                self.close_budget_s, self.session.time_left() / 2
            )

    def accept(self, event: LiveEvent) -> None:
        """Turn one event into points and buffer them; never blocks."""
        if isinstance(event, RequestDone):
            if self._run is None:
                return
            if not self._may_keep(event.metrics.end_ns):
                if event.metrics.phase is Phase.PROFILE:
                    self.session.live_counts.thinned += 1
                return
            points = request_points(event, self._run)
            if points and self.request_rate > 0:
                assert self._credit_ns is not None
                self._credit_ns -= int(1e9 / self.request_rate)
        elif isinstance(event, HardwareSample):
            gpu = (event.host, event.gpu_index)
            step = self._gpu_steps.get(gpu, 0)
            self._gpu_steps[gpu] = step + 1
            first_host = next(iter(self._gpu_steps))[0]
            points = hardware_points(event, step, qualify_host=event.host != first_host)
        elif isinstance(event, ServerMetricSample):
            self._server_sources.setdefault(event.source)
            qualify = event.source != next(iter(self._server_sources))
            key = server_key(event, qualify_source=qualify)
            step = self._server_steps.get(key, 0)
            self._server_steps[key] = step + 1
            points = [server_point(event, step, qualify_source=qualify)]
        elif isinstance(event, Progress):
            points = progress_points(event, time.time_ns() // 1_000_000)
        else:
            return
        room = self.buffer_limit - len(self._buffer)
        if len(points) > room:
            self.session.live_counts.dropped += len(points) - max(room, 0)
            points = points[: max(room, 0)]
        self._buffer.extend(points)
        if len(self._buffer) >= BATCH_LIMIT:
            self._wake.set()

    def _may_keep(self, end_ns: int) -> bool:
        """Whether a request that ended at ``end_ns`` keeps its points (see request_rate)."""
        if self.request_rate <= 0:
            return True
        cost = int(1e9 / self.request_rate)
        full = cost * max(1, self.request_burst)
        if self._credit_ns is None or self._refilled_ns is None:
            self._credit_ns, self._refilled_ns = full, end_ns
        elif end_ns > self._refilled_ns:
            self._credit_ns = min(full, self._credit_ns + end_ns - self._refilled_ns)
            self._refilled_ns = end_ns
        return self._credit_ns >= cost

    async def _flush_loop(self) -> None:
        while not self._stopped.is_set():
            if self._failure_streak:
                # A failing server gets fewer tries, not more: each try can cost MLflow's
                # own timeout and retries.
                delay = min(self.flush_interval_s * 2**self._failure_streak, self.max_backoff_s)
                wake = self._stopped
            else:
                delay, wake = self.flush_interval_s, self._wake
            with trio.move_on_after(delay) as timer:
                await wake.wait()
            if self._stopped.is_set():
                return
            self._wake = trio.Event()
            # Woken by a full batch: send whole batches only, the rest waits for more points
            # or for the timer (fewer, fuller requests: each costs the server as much).
            await self.flush(whole_batches=not timer.cancelled_caught)

    async def flush(self, *, whole_batches: bool = False) -> None:
        """Send everything buffered, one request per :data:`BATCH_LIMIT` points (with
        ``whole_batches``, only full ones); stop at the first failure (the flush loop backs off
        before the next try).

        Without a live run the points stay buffered for the post-run exporter.
        """
        counts = self.session.live_counts
        while self._buffer and self.session.run_id is not None:
            if whole_batches and len(self._buffer) < BATCH_LIMIT:
                return
            batch = [self._buffer.popleft() for _ in range(min(BATCH_LIMIT, len(self._buffer)))]
            send = functools.partial(self.session.log_points, batch)
            self._sending = len(batch)
            try:
                # Abandoned on cancel so that the end of the run never waits on a hung server;
                # such a batch counts as failed even if it lands later.
                await trio.to_thread.run_sync(send, abandon_on_cancel=True)
            except trio.Cancelled:
                counts.failed += len(batch)
                raise
            except Exception as exc:  # noqa: BLE001 - a failing server loses points, nothing more
                counts.failed += len(batch)
                self._failure_streak += 1
                self._last_error = describe_error(exc)
                if self._failure_streak == 1:
                    log.warning(
                        "mlflow_live_logging_failed",
                        uri=self.session.config.display_uri,
                        error=self._last_error,
                    )
                return
            finally:
                self._sending = 0
            counts.logged += len(batch)
            self._failure_streak = 0

    async def close(self, status: RunStatus) -> None:
        if self.session.run_id is None:
            self.session.pending.extend(self._buffer)
            self._buffer.clear()
            return
        # The final flush takes its time from the deadline it shares with the upload
        # (--mlflow-upload-timeout), half of it at most: a hung server costs that long once, not once
        # per step, and the exporter keeps time to end the run.
        with trio.move_on_after(min(self.close_budget_s, self.session.time_left() / 2)):
            await self.flush()
        # What could not go out in time is lost: count it so the report is honest.
        self.session.live_counts.failed += len(self._buffer)
        self._buffer.clear()

    def backlog(self) -> str | None:
        """What is still to be sent, for the line shown while the end of the run waits."""
        waiting = len(self._buffer) + self._sending
        return f"{waiting:,} points to send" if waiting and self.session.run_id else None

    def report(self) -> str | None:
        counts = self.session.live_counts
        if self.session.run_id is None:
            # No live run: the post-run exporter makes one more attempt, and only it knows
            # what finally reached MLflow, so the one line about the loss is its to say.
            return None
        lost = counts.dropped + counts.failed
        if not lost:
            return None
        total = lost + counts.logged
        parts = []
        if counts.dropped:
            parts.append(f"{counts.dropped} dropped: buffer full")
        if counts.failed:
            parts.append(f"{counts.failed} failed: {self._last_error or 'not sent in time'}")
        return f"mlflow: {lost} of {total} live points not logged ({'; '.join(parts)})"
