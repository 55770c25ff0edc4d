"""The progress line: a live sink of the built-in plugin, drawn on the terminal once a second.

It takes only the run's counters (:class:`aiperf.Progress`), never a request's event, and
writes one short line: cheap enough to run in the process that times the requests, so it
declares ``in_process`` and, unlike a telemetry sink, never moves the load into a worker.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

import attrs

from aiperf._types import Progress

if TYPE_CHECKING:
    import trio

    from aiperf._types import LiveEvent, RunContext, RunStatus


@attrs.define
class ProgressLine:
    """``[profile] 120/200 requests     40.1 req/s  0 errors  8 in flight     3.0 s``,
    rewritten in place; cleared when the run ends."""

    stream: IO[str]
    name: str = "progress"
    #: drawn in the measuring process: a write of one line a second.
    in_process: bool = True
    #: the counters only: a request's event never reaches this sink.
    events: tuple[type, ...] = (Progress,)

    async def open(self, run: RunContext) -> None:
        pass

    async def run(self, events: trio.MemoryReceiveChannel[LiveEvent]) -> None:
        async for event in events:
            # The final counts come once the load is over: the line is about to be cleared.
            if isinstance(event, Progress) and not event.final:
                self.draw(event)

    def draw(self, event: Progress) -> None:
        target = f"/{event.total}" if event.total else ""
        self.stream.write(
            f"\r[{event.phase.value}] {event.completed + event.failed}{target} requests  "
            f"{event.ok_rate:7.1f} req/s  {event.failed} errors  {event.in_flight} in flight  "
            f"{event.elapsed_s:6.1f} s "
        )
        self.stream.flush()

    async def close(self, status: RunStatus) -> None:
        self.stream.write("\r\033[K")
        self.stream.flush()

    def report(self) -> str | None:
        return None
