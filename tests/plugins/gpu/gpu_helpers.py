"""Helpers of the aiperf-gpu tests: a run context to sample into, and a sampler context."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
from aiperf import LiveEvent, ProfileConfig, RunContext


def make_run(run_dir: Path) -> RunContext:
    return RunContext(
        config=ProfileConfig(model="test-model"),
        run_dir=run_dir,
        benchmark_id="b" * 32,
        version="0.1.0",
        provider="_OTHER",
        operation_name="chat",
        server_address="127.0.0.1",
        server_port=8000,
        load_setting="concurrency1",
        anchor_wall_ns=1_700_000_000_000_000_000,
        anchor_perf_ns=time.perf_counter_ns(),
    )


@attrs.define
class RecordingContext:
    """A :class:`aiperf.SamplerContext` that keeps what was published."""

    run: RunContext
    events: list[LiveEvent] = attrs.field(factory=list)

    def publish(self, event: LiveEvent) -> None:
        self.events.append(event)
