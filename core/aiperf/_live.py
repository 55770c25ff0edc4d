"""The live bus: every sink gets its own bounded channel, and publishing never waits.

A sink that falls behind (a slow collector, a stalled MLflow server) loses events, counted
per sink, instead of slowing down the requests whose timing we are measuring.
"""

from __future__ import annotations

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


@attrs.define
class _Outlet:
    sink: LiveSink
    send: trio.MemorySendChannel[LiveEvent]
    receive: trio.MemoryReceiveChannel[LiveEvent]
    dropped: int = 0
    broken: bool = False


@attrs.define
class LiveBus:
    outlets: list[_Outlet] = attrs.field(factory=list)

    @classmethod
    def for_sinks(cls, sinks: list[LiveSink], buffer: int = SINK_BUFFER) -> LiveBus:
        outlets = []
        for sink in sinks:
            send, receive = trio.open_memory_channel[LiveEvent](getattr(sink, "buffer_size", buffer))
            outlets.append(_Outlet(sink, send, receive))
        return cls(outlets)

    def publish(self, event: LiveEvent) -> None:
        for outlet in self.outlets:
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

    def end_streams(self) -> None:
        """No more events: each sink's ``run`` sees its channel end and returns."""
        for outlet in self.outlets:
            outlet.send.close()

    async def close_all(self, status: RunStatus) -> None:
        async def close_one(outlet: _Outlet) -> None:
            try:
                with trio.move_on_after(CLOSE_BUDGET_S):
                    await outlet.sink.close(status)
            except Exception as exc:  # noqa: BLE001
                log.warning("live_sink_failed", sink=outlet.sink.name, error=f"{type(exc).__name__}: {exc}")

        async with trio.open_nursery() as nursery:
            for outlet in self.outlets:
                nursery.start_soon(close_one, outlet)

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
