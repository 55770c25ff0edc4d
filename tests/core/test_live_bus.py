"""The live-sink bus: what a sink does not get is counted, never lost silently."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from aiperf._live import LiveBus


class SlowSink:
    """Takes a second per event: far behind a run that ends now."""

    name = "slow"

    def __init__(self) -> None:
        self.seen = 0

    async def open(self, run: Any) -> None:
        pass

    async def run(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for _ in events:
            self.seen += 1
            await trio.sleep(1)

    async def close(self, status: Any) -> None:
        pass

    def report(self) -> str | None:
        return None


async def test_events_queued_at_the_drain_deadline_are_counted_as_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sink still draining when the close deadline cancels it: every event it never got is
    in the dropped count and the note (they were once discarded without a word)."""
    sink = SlowSink()
    bus = LiveBus.for_sinks([sink], buffer=100)  # type: ignore[list-item]
    async with trio.open_nursery() as sinks:
        await bus.run_all(sinks)
        for index in range(50):
            bus.publish(index)  # type: ignore[arg-type]
        bus.end_streams()
        sinks.cancel_scope.deadline = trio.current_time() + 5
    dropped = bus.outlets[0].dropped
    assert 0 < sink.seen < 50
    assert 50 == sink.seen + dropped
    assert [f"slow: {dropped} live events dropped (the sink fell behind)"] == bus.notes()


async def test_a_sink_that_keeps_up_drops_nothing(autojump_clock: trio.testing.MockClock) -> None:
    sink = SlowSink()
    bus = LiveBus.for_sinks([sink], buffer=100)  # type: ignore[list-item]
    async with trio.open_nursery() as sinks:
        await bus.run_all(sinks)
        for index in range(5):
            bus.publish(index)  # type: ignore[arg-type]
        bus.end_streams()
        sinks.cancel_scope.deadline = trio.current_time() + 30
    assert (5, 0, []) == (sink.seen, bus.outlets[0].dropped, bus.notes())
