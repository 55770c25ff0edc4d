"""The live-sink bus: what a sink does not get is counted, never lost silently."""

from __future__ import annotations

import re
from typing import Any

import pytest
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


async def test_a_sink_gets_only_the_event_types_it_names(autojump_clock: trio.testing.MockClock) -> None:
    """A sink with ``events`` gets those types only; the others are neither queued for it
    nor counted as dropped."""
    from aiperf._types import Phase, PhaseChanged, Progress

    class CountersOnly(SlowSink):
        events = (Progress,)

    picky, every = CountersOnly(), SlowSink()
    bus = LiveBus.for_sinks([picky, every], buffer=100)  # type: ignore[list-item]
    progress = Progress(phase=Phase.PROFILE, sent=1, completed=0, failed=0, in_flight=1, elapsed_s=1.0)
    async with trio.open_nursery() as sinks:
        await bus.run_all(sinks)
        bus.publish(PhaseChanged(phase=Phase.PROFILE, perf_ns=0))
        bus.publish(progress)
        bus.publish("a request")  # type: ignore[arg-type]
        bus.end_streams()
        sinks.cancel_scope.deadline = trio.current_time() + 30
    assert (1, 0) == (picky.seen, bus.outlets[0].dropped)
    assert (3, 0) == (every.seen, bus.outlets[1].dropped)


class FlushingSink(SlowSink):
    """Takes a second per event, then 1.1 s per event to close (off the reporter's whole
    seconds: trio runs tasks due at the same time in any order), and says what it holds."""

    name = "flushing"

    def __init__(self) -> None:
        super().__init__()
        self.to_send = 0

    async def run(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for _ in events:
            self.seen += 1
            self.to_send += 1000
            await trio.sleep(1)

    async def close(self, status: Any) -> None:
        while self.to_send:
            await trio.sleep(1.1)
            self.to_send -= 1000

    def backlog(self) -> str | None:
        return f"{self.to_send:,} points to send" if self.to_send else None


async def _end_of_run(bus: LiveBus, write: Any, *, rewrite: bool, events: int) -> float:
    """What the engine does at the end of the load: end the streams, report while the sinks
    drain and close; returns how long that took."""
    started = trio.current_time()
    async with trio.open_nursery() as outer:
        async with trio.open_nursery() as sinks:
            await bus.run_all(sinks)
            for index in range(events):
                bus.publish(index)  # type: ignore[arg-type]
            bus.end_streams()
            outer.start_soon(lambda: bus.report_flush(write, rewrite=rewrite))
        await bus.close_all("FINISHED")  # type: ignore[arg-type]
        outer.cancel_scope.cancel()
    return trio.current_time() - started


async def test_a_long_flush_says_what_it_waits_for(autojump_clock: trio.testing.MockClock) -> None:
    """Past a second, one line every few seconds names each sink's backlog; one more says
    when it is over."""
    lines: list[str] = []
    took = await _end_of_run(LiveBus.for_sinks([FlushingSink()]), lines.append, rewrite=False, events=3)  # type: ignore[list-item]
    assert 6.3 == pytest.approx(took)  # 3 events at 1 s each, then 3.3 s to send 3000 points
    assert re.fullmatch(
        r"aiperf: finishing live telemetry, 1 s after the load: flushing [12] events to process, "
        r"[12],000 points to send\n",
        lines[0],
    ), lines
    # repeated every 5 s while it lasts; the closing sink still says what it holds
    assert "aiperf: finishing live telemetry, 6 s after the load: flushing 1,000 points to send\n" == lines[1]
    assert ["aiperf: live telemetry finished 6.3 s after the load\n"] == lines[2:]


async def test_a_long_flush_on_a_terminal_rewrites_its_line(autojump_clock: trio.testing.MockClock) -> None:
    """On a terminal the line is rewritten in place every second."""
    lines: list[str] = []
    took = await _end_of_run(LiveBus.for_sinks([FlushingSink()]), lines.append, rewrite=True, events=3)  # type: ignore[list-item]
    assert 6.3 == pytest.approx(took)
    assert len(lines) == 7  # at 1, 2, 3, 4, 5, 6 s, then the end
    assert all(line.startswith("\raiperf: finishing live telemetry, ") and line.endswith("\033[K") for line in lines[:-1])
    assert "4 s after the load: flushing 3,000 points to send" in lines[3]
    assert "\raiperf: live telemetry finished 6.3 s after the load\033[K\n" == lines[-1]


async def test_a_quick_flush_says_nothing(autojump_clock: trio.testing.MockClock) -> None:
    lines: list[str] = []
    sink = FlushingSink()
    took = await _end_of_run(LiveBus.for_sinks([sink]), lines.append, rewrite=False, events=0)  # type: ignore[list-item]
    assert 0.0 == took
    assert [] == lines
