"""Helpers of the aiperf-gpu tests: a run context to sample into, and a sampler context."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
from aiperf import LiveEvent, ProfileConfig, RunContext, testing


def make_run(run_dir: Path) -> RunContext:
    return testing.make_run(
        run_dir, config=ProfileConfig(model="test-model", url="http://127.0.0.1:8000"),
        benchmark_id="b" * 32, provider="_OTHER", anchor_perf_ns=time.perf_counter_ns(),
    )  # fmt: skip


@attrs.define
class RecordingContext:
    """A :class:`aiperf.SamplerContext` that keeps what was published."""

    run: RunContext
    events: list[LiveEvent] = attrs.field(factory=list)

    def publish(self, event: LiveEvent) -> None:
        self.events.append(event)
