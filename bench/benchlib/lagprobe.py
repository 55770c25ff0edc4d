"""Run ``aiperf`` with a loop-lag probe and a garbage-collection timer (a bench diagnostic).

    python bench/benchlib/lagprobe.py OUT.json profile --url ... (aiperf's arguments)

Every ``trio.run`` aiperf makes gets one more task: it sleeps ``AIPERF_BENCH_PROBE_MS``
(1 ms by default) again and again and records how late it wakes. A late wake-up is time
the loop spent on something else (a callback, a collection, a blocking write): every
response that arrived meanwhile waited in its socket. ``gc.callbacks`` times every
collection. Both are written to OUT.json when aiperf exits, each entry with its wall-clock
time (ns), so that a reader can keep those inside the load phase of aiperf's JSONL. This is not part of aiperf:
the probe's own wake-ups (1000 a second) are a small cost a user's run does not pay.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

_now = time.perf_counter_ns


def install(period_s: float) -> dict[str, Any]:
    """Patch ``trio.run`` and register the GC timer; returns what they fill."""
    import trio

    found: dict[str, Any] = {"period_ms": period_s * 1e3, "lag": [], "gc": []}
    started: list[int] = [0, 0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        # Wall time is what the loop lost; CPU time is what the collection itself cost, the
        # figure that does not grow when another process takes the CPU meanwhile.
        if phase == "start":
            started[0], started[1] = _now(), time.thread_time_ns()
        else:
            wall_ms = (_now() - started[0]) / 1e6
            cpu_ms = (time.thread_time_ns() - started[1]) / 1e6
            found["gc"].append([info["generation"], wall_ms, cpu_ms, time.time_ns()])

    gc.callbacks.append(on_gc)
    original = trio.run

    async def probe() -> None:
        lag: list[list[float]] = []
        found["lag"].append(lag)
        cpu_before = time.thread_time_ns()
        while True:
            deadline = trio.current_time() + period_s
            await trio.sleep_until(deadline)
            late = (trio.current_time() - deadline) * 1e3
            # The loop thread's CPU time since the last wake-up tells a late wake-up's two
            # causes apart: the loop busy with its own work (CPU time close to the gap) or
            # the thread waiting for a core another process held (CPU time far below it).
            cpu_now = time.thread_time_ns()
            lag.append([late, time.time_ns(), (cpu_now - cpu_before) / 1e6])
            cpu_before = cpu_now

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if os.environ.get("AIPERF_BENCH_PROBE_STEPS"):
            kwargs.setdefault("instruments", []).append(StepTimer(found))

        async def with_probe(*inner: Any) -> Any:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                result = await fn(*inner)
                nursery.cancel_scope.cancel()
            return result

        return original(with_probe, *args, **kwargs)

    trio.run = run
    return found


class StepTimer:
    """A trio instrument: the task steps and the run batches that held the loop longest.

    A run batch is everything the loop ran between two waits for I/O: every task step in it
    delays every socket and timer that became ready meanwhile. Steps over 0.5 ms are kept
    with their task's name; batches over 2 ms with their length and how many steps they
    held. Set ``AIPERF_BENCH_PROBE_STEPS=1`` to record them (it costs two clock reads a step).
    """

    def __init__(self, found: dict[str, Any]) -> None:
        self.steps: list[list[Any]] = found.setdefault("steps", [])
        self.batches: list[list[Any]] = found.setdefault("batches", [])
        self.step_start = 0
        self.batch_start = _now()
        self.batch_cpu = time.thread_time_ns()
        self.batch_steps = 0

    def before_task_step(self, task: Any) -> None:
        self.step_start = _now()

    def after_task_step(self, task: Any) -> None:
        took = _now() - self.step_start
        self.batch_steps += 1
        if took > 500_000:
            self.steps.append([task.name.rsplit(".", 1)[-1], took / 1e6, time.time_ns()])

    def before_io_wait(self, timeout: float) -> None:
        took = _now() - self.batch_start
        if took > 2_000_000:
            cpu = (time.thread_time_ns() - self.batch_cpu) / 1e6
            self.batches.append([took / 1e6, cpu, self.batch_steps, time.time_ns()])

    def after_io_wait(self, timeout: float) -> None:
        self.batch_start = _now()
        self.batch_cpu = time.thread_time_ns()
        self.batch_steps = 0


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    found = install(float(os.environ.get("AIPERF_BENCH_PROBE_MS", "1")) / 1e3)
    from aiperf.cli import main as aiperf_main

    try:
        return aiperf_main(argv)
    finally:
        # Only the longest trio.run is the benchmark (the others check the server).
        runs = sorted(found.pop("lag"), key=len)
        found["lag"] = runs[-1] if runs else []
        found["tracked_objects"] = len(gc.get_objects())
        with open(out, "w") as stream:
            json.dump(found, stream)


if __name__ == "__main__":
    sys.exit(main())
