"""Sample this machine's GPUs through aiperf-gpu's real NVML path for a few seconds.

Run it on a machine with an NVIDIA GPU and driver (with aiperf and aiperf-gpu installed)::

    python scripts/gpu_smoke.py --seconds 5 --interval 0.5

It prints every reading as it arrives (the same objects the live bus carries), then the
per-GPU summary and energy the exports would hold, and keeps the JSONL file it wrote. Exit
status: 0 when at least one GPU was read on every tick, 1 when NVML gave nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio
from aiperf import (
    HardwareSample,
    LiveEvent,
    MetricStats,
    ProfileConfig,
    RunContext,
    RunResult,
    RunStatus,
)
from aiperf_gpu.config import GpuConfig
from aiperf_gpu.sampler import JSONL_FILE, create_sampler


@attrs.define
class PrintingContext:
    run: RunContext
    samples: list[HardwareSample] = attrs.field(factory=list)

    def publish(self, event: LiveEvent) -> None:
        if isinstance(event, HardwareSample):
            self.samples.append(event)
            print(
                f"{event.phase or '-':>8} gpu{event.gpu_index} {event.name} "
                f"util={_pct(event.gpu_utilization)} "
                f"mem={_gib(event.memory_used_bytes)}/{_gib(event.memory_total_bytes)} GiB "
                f"power={event.power_watts} W energy={event.energy_joules} J "
                f"temp={event.temperature_celsius} C sm={event.sm_clock_mhz} MHz",
                flush=True,
            )


def _pct(value: float | None) -> str:
    return "None" if value is None else f"{value * 100:.0f}%"


def _gib(value: float | None) -> str:
    return "None" if value is None else f"{value / 1024**3:.2f}"


async def sample(ctx: PrintingContext, seconds: float, interval: float) -> None:
    sampler = create_sampler(
        GpuConfig(nvml=True, nvml_requested=True, interval_s=interval), ctx.run
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        ctx.run.profile_start_ns = time.perf_counter_ns()
        await trio.sleep(seconds)
        ctx.run.profile_end_ns = time.perf_counter_ns()
        nursery.cancel_scope.cancel()
    ctx.run.state["sampler"] = sampler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument(
        "--out", type=Path, help="directory for the JSONL (default: a new temp dir)"
    )
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    now_wall, now_perf = time.time_ns(), time.perf_counter_ns()
    run = RunContext(
        config=ProfileConfig(model="gpu-smoke"),
        run_dir=out,
        benchmark_id="gpu-smoke",
        version="smoke",
        provider="_OTHER",
        operation_name="chat",
        server_address="localhost",
        server_port=0,
        load_setting="smoke",
        anchor_wall_ns=now_wall,
        anchor_perf_ns=now_perf,
    )
    ctx = PrintingContext(run=run)
    trio.run(sample, ctx, args.seconds, args.interval)

    sampler = run.state["sampler"]
    # As if the run had made 1000 output tokens in 10 requests, to show the derived figures.
    made_up = {"total_output_tokens": 1000.0, "request_count": 10.0}
    result = RunResult(
        status=RunStatus.FINISHED,
        was_cancelled=False,
        metrics={},
        run_metrics={
            k: MetricStats(tag=k, header=k, unit="", count=1, avg=v) for k, v in made_up.items()
        },
        errors=(),
        start_wall_ns=None,
        end_wall_ns=None,
    )
    for section in sampler.sections(run, result):
        print(f"\n== {section.title} ==")
        print(json.dumps(section.data, indent=2, default=str))
    note = sampler.report()
    if note:
        print(f"\nnote: {note}")
    print(f"\n{len(ctx.samples)} readings; JSONL: {out / JSONL_FILE}")
    ticks = max(1, int(args.seconds / args.interval))
    gpus = len({s.uuid for s in ctx.samples})
    return 0 if gpus and len(ctx.samples) >= gpus * ticks else 1


if __name__ == "__main__":
    sys.exit(main())
