"""A finished request's bookkeeping waits until its slot's next request has left."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path


def test_next_request_leaves_before_the_previous_one_is_booked(mock_server, tmp_path: Path) -> None:
    """At concurrency 1, request i is booked (metrics, JSONL, statistics) only once request
    i + 1 was sent: the bookkeeping never sits between a response and the next request."""
    script = textwrap.dedent(
        f"""
        import json
        from aiperf import _engine
        from aiperf.cli import main

        seen = []
        accept = _engine.Engine.accept

        def watching(self, record, metrics):
            seen.append([record.index, self.sent])
            accept(self, record, metrics)

        _engine.Engine.accept = watching
        code = main(["profile", "--url", {mock_server.url!r}, "--model", "m", "--streaming",
                     "--request-count", "30", "--concurrency", "1", "--no-progress",
                     "--workers", "1", "--artifact-dir", "run"])
        print(json.dumps({{"code": code, "seen": seen}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    seen = result["seen"]
    # Every request is booked once, in the order they finished.
    assert [index for index, _ in seen] == list(range(30))
    # When request i was booked, request i + 1 (the (i + 2)-th sent) had already left.
    assert all(sent >= index + 2 for index, sent in seen[:-1]), seen
    lines = (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_index"] for line in lines] == list(range(30))


def test_bookkeeping_yields_to_the_loop_after_each_slice(monkeypatch) -> None:
    """A backlog of finished requests is booked a millisecond at a time: between slices,
    every other task (a stream whose token arrived) runs before more is booked."""
    import types

    import trio
    from aiperf import _engine

    clock = [0]
    # Each request's bookkeeping "costs" 0.4 ms on a clock the test controls.
    monkeypatch.setattr(_engine, "time", types.SimpleNamespace(perf_counter_ns=lambda: clock[0]))

    class Books:
        def __init__(self) -> None:
            self._unbooked = list(range(20))
            self.booked: list[int] = []

        def book(self, limit: int | None = None) -> None:
            take = self._unbooked[: limit or len(self._unbooked)]
            del self._unbooked[: len(take)]
            self.booked += take
            clock[0] += 400_000

    books = Books()
    seen: list[int] = []
    finished = [False]

    async def booking() -> None:
        await _engine.Engine._book_in_slices(books, 17)  # type: ignore[arg-type]
        finished[0] = True

    async def other_stream() -> None:
        # What another task sees each time it gets the loop while the backlog is booked.
        while not finished[0]:
            seen.append(len(books.booked))
            await trio.lowlevel.checkpoint()

    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(booking)
                nursery.start_soon(other_stream)

    trio.run(main)
    # Three requests (1.2 ms) per slice, the other task in between; 17 of the 20 asked for.
    assert books.booked == list(range(17))
    assert books._unbooked == [17, 18, 19]
    # The other task got the loop between slices (trio orders a batch's tasks at random, so
    # it may see two slices at once), and booking only ever stopped at a slice's end.
    steps = sorted(set(seen))
    assert len(steps) >= 4, steps
    assert all(step % 3 == 0 or step == 17 for step in steps), steps
