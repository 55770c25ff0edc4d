"""The live bus: every sink gets its own bounded channel, and publishing never waits.

A sink that falls behind (a slow collector, a stalled MLflow server) loses events, counted
per sink, instead of slowing down the requests whose timing we are measuring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from aiperf._types import LiveEvent, LiveSink, RunStatus

if TYPE_CHECKING:
    from aiperf._types import RunContext

log = structlog.get_logger()

#: events a sink may have waiting before new ones are dropped.
SINK_BUFFER = 65_536
#: how long all sinks together may take to open (probe a collector, create an MLflow run).
OPEN_BUDGET_S = 15.0
#: how long a sink may take for its final flush.
CLOSE_BUDGET_S = 30.0
#: how long the end of the run waits on the sinks before it says what it is waiting for.
FLUSH_NOTICE_S = 1.0
#: how often that line is written again where it cannot be rewritten in place (a log file).
FLUSH_REPEAT_S = 5.0


@attrs.define
class _Outlet:
    sink: LiveSink
    send: trio.MemorySendChannel[LiveEvent]
    receive: trio.MemoryReceiveChannel[LiveEvent]
    #: the event types the sink takes (its optional ``events``), or None for every event.
    wants: tuple[type, ...] | None = None
    dropped: int = 0
    broken: bool = False
    #: the sink's ``run`` or ``close`` is still going.
    running: bool = False
    closing: bool = False


@attrs.define
class LiveBus:
    outlets: list[_Outlet] = attrs.field(factory=list)

    @classmethod
    def for_sinks(cls, sinks: list[LiveSink], buffer: int = SINK_BUFFER) -> LiveBus:
        outlets = []
        for sink in sinks:
            send, receive = trio.open_memory_channel[LiveEvent](getattr(sink, "buffer_size", buffer))
            wants = getattr(sink, "events", None)
            outlets.append(_Outlet(sink, send, receive, tuple(wants) if wants is not None else None))
        return cls(outlets)

    def publish(self, event: LiveEvent) -> None:
        for outlet in self.outlets:
            if outlet.wants is not None and not isinstance(event, outlet.wants):
                continue
            if outlet.broken:
                outlet.dropped += 1
                continue
            try:
                outlet.send.send_nowait(event)
            except trio.WouldBlock:
                outlet.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                outlet.broken = True
                outlet.dropped += 1

    async def open_all(self, run: RunContext) -> None:
        async def open_one(outlet: _Outlet) -> None:
            try:
                await outlet.sink.open(run)
            except Exception as exc:  # noqa: BLE001 - a sink must never stop the benchmark
                outlet.broken = True
                log.warning("live_sink_failed", sink=outlet.sink.name, error=f"{type(exc).__name__}: {exc}")

        with trio.move_on_after(OPEN_BUDGET_S) as scope:
            async with trio.open_nursery() as nursery:
                for outlet in self.outlets:
                    nursery.start_soon(open_one, outlet)
        if scope.cancelled_caught:
            log.warning("live_sinks_slow_to_open", budget_s=OPEN_BUDGET_S)

    async def run_all(self, nursery: trio.Nursery) -> None:
        for outlet in self.outlets:
            if not outlet.broken:
                nursery.start_soon(self._run_one, outlet)

    async def _run_one(self, outlet: _Outlet) -> None:
        outlet.running = True
        try:
            async with outlet.receive:
                try:
                    await outlet.sink.run(outlet.receive)
                finally:
                    # A sink still draining at the close deadline is cancelled (or one that
                    # failed stops reading): what is still queued never reaches it. Count it
                    # as dropped before closing the channel discards it, so no loss is silent.
                    outlet.dropped += outlet.receive.statistics().current_buffer_used
        except Exception as exc:  # noqa: BLE001
            outlet.broken = True
            log.warning("live_sink_failed", sink=outlet.sink.name, error=f"{type(exc).__name__}: {exc}")
        finally:
            outlet.running = False

    def end_streams(self) -> None:
        """No more events: each sink's ``run`` sees its channel end and returns."""
        for outlet in self.outlets:
            outlet.send.close()

    async def close_all(self, status: RunStatus) -> None:
        async def close_one(outlet: _Outlet) -> None:
            outlet.closing = True
            try:
                with trio.move_on_after(CLOSE_BUDGET_S):
                    await outlet.sink.close(status)
            except Exception as exc:  # noqa: BLE001
                log.warning("live_sink_failed", sink=outlet.sink.name, error=f"{type(exc).__name__}: {exc}")
            finally:
                outlet.closing = False

        async with trio.open_nursery() as nursery:
            for outlet in self.outlets:
                nursery.start_soon(close_one, outlet)

    def backlog(self) -> list[str]:
        """What each sink still has to do, for the line shown while the end waits on them:
        events it has not taken yet, and what it says it still has to send (an optional
        ``backlog() -> str | None`` of the sink)."""
        parts = []
        for outlet in self.outlets:
            if not (outlet.running or outlet.closing):
                continue
            found = []
            queued = outlet.receive.statistics().current_buffer_used if outlet.running else 0
            if queued:
                found.append(f"{queued:,} events to process")
            try:
                extra = getattr(outlet.sink, "backlog", lambda: None)()
            except Exception:  # noqa: BLE001 - a progress line must never fail the run
                extra = None
            if extra:
                found.append(extra)
            parts.append(f"{outlet.sink.name} " + (", ".join(found) if found else "closing"))
        return parts

    async def report_flush(
        self,
        write: Callable[[str], None],
        *,
        rewrite: bool,
        notice_s: float = FLUSH_NOTICE_S,
        repeat_s: float = FLUSH_REPEAT_S,
    ) -> None:
        """Run from the end of the load until cancelled once the sinks are closed: past
        ``notice_s``, say what the run is waiting for, every second in place (``rewrite``, a
        terminal) or every ``repeat_s`` on a line of its own, and how long it took."""
        started = trio.current_time()
        await trio.sleep(notice_s)
        shown = False
        try:
            while True:
                waiting = "; ".join(self.backlog()) or "closing"
                text = (
                    f"aiperf: finishing live telemetry, {trio.current_time() - started:.0f} s "
                    f"after the load: {waiting}"
                )
                write(f"\r{text}\033[K" if rewrite else f"{text}\n")
                shown = True
                await trio.sleep(1.0 if rewrite else repeat_s)
        finally:
            if shown:
                done = (
                    f"aiperf: live telemetry finished "
                    f"{trio.current_time() - started:.1f} s after the load"
                )
                write(f"\r{done}\033[K\n" if rewrite else f"{done}\n")

    def notes(self) -> list[str]:
        lines = []
        for outlet in self.outlets:
            if outlet.dropped:
                lines.append(
                    f"{outlet.sink.name}: {outlet.dropped} live events dropped (the sink fell behind)"
                )
            try:
                line = outlet.sink.report()
            except Exception:  # noqa: BLE001
                line = None
            if line:
                lines.append(line)
        return lines
