"""The sampler: its schedule, the live bus, the JSONL file, and its summary sections."""

from __future__ import annotations

import json
import time
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from aiperf import (
    HardwareSample,
    MetricStats,
    Phase,
    RunContext,
    RunResult,
    RunStatus,
)
from aiperf_gpu.config import GpuConfig
from aiperf_gpu.dcgm import DcgmSource
from aiperf_gpu.nvml import NvmlSource
from aiperf_gpu.readings import GpuReading
from aiperf_gpu.sampler import JSONL_FILE, GpuSampler, create_sampler, phase_at
from gpu_fake_nvml import FakeDevice, FakeNvml
from gpu_helpers import RecordingContext
from structlog.testing import capture_logs

JSONL_KEYS = [
    "wall_ns",
    "phase",
    "source",
    "host",
    "gpu_index",
    "uuid",
    "name",
    "gpu_utilization",
    "memory_used_bytes",
    "memory_total_bytes",
    "power_watts",
    "energy_joules",
    "temperature_celsius",
    "sm_clock_mhz",
]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@attrs.define
class ScriptedSource:
    """An in-memory source: each read gives every GPU a reading, after ``read_s`` of trio time."""

    label: str = "scripted"
    available: bool = True
    gpus: int = 1
    read_s: float = 0.0
    fail_on_read: int | None = None
    reads: int = 0
    read_started: list[float] = attrs.field(factory=list)
    closed: bool = False

    async def open(self) -> bool:
        return self.available

    async def read(self) -> list[GpuReading]:
        self.read_started.append(trio.current_time())
        self.reads += 1
        if self.fail_on_read == self.reads:
            raise RuntimeError("device vanished")
        if self.read_s:
            await trio.sleep(self.read_s)
        return [
            GpuReading(
                source="fake",
                host="h",
                gpu_index=i,
                uuid=f"GPU-{i}",
                name="Fake GPU",
                perf_ns=time.perf_counter_ns(),
                values={
                    "gpu_utilization": 0.5,
                    "power_watts": 100.0,
                    "energy_joules": 10.0 * self.reads,
                },
            )
            for i in range(self.gpus)
        ]

    async def aclose(self) -> None:
        self.closed = True

    def report(self) -> str | None:
        return None


async def run_for(sampler: GpuSampler, ctx: RecordingContext, seconds: float) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def sampler_for(run: RunContext, *sources: object, interval_s: float = 0.25) -> GpuSampler:
    return GpuSampler(
        sources=list(sources), interval_s=interval_s, jsonl_path=run.run_dir / JSONL_FILE
    )


class TestSchedule:
    async def test_sampler_reads_each_interval_and_once_more_when_stopped(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext
    ) -> None:
        """Reads at 0, .25, .5, .75, 1.0 s, then one more as the core stops the sampler."""
        source = ScriptedSource(gpus=2)
        sampler = sampler_for(ctx.run, source)
        await run_for(sampler, ctx, 1.1)
        assert [0.0, 0.25, 0.5, 0.75, 1.0, 1.1] == pytest.approx(source.read_started)
        assert source.closed
        assert 12 == len(ctx.events) == sampler.store.count
        assert all(isinstance(e, HardwareSample) for e in ctx.events)
        assert 12 == len(read_jsonl(ctx.run.run_dir / JSONL_FILE))

    async def test_sampler_skips_ticks_a_slow_source_missed(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext
    ) -> None:
        """A read that takes 0.6 s with a 0.25 s interval: the next read starts right after,
        no burst of catch-up reads."""
        source = ScriptedSource(read_s=0.6)
        await run_for(sampler_for(ctx.run, source), ctx, 2.0)
        assert [0.0, 0.6, 1.2, 1.8, 2.0] == pytest.approx(source.read_started)

    async def test_sampler_source_failure_leaves_the_others_running(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext
    ) -> None:
        broken = ScriptedSource(label="broken", fail_on_read=2)
        healthy = ScriptedSource(label="healthy")
        with capture_logs() as logs:
            await run_for(sampler_for(ctx.run, broken, healthy), ctx, 1.1)
        assert [("warning", "gpu_source_failed", "broken")] == [
            (e["log_level"], e["event"], e["source"]) for e in logs
        ]
        assert 6 == healthy.reads
        assert broken.closed and healthy.closed

    async def test_sampler_without_available_sources_ends_and_writes_nothing(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext, run: RunContext
    ) -> None:
        """No GPU anywhere: run() returns on its own, no file, no sections."""
        sampler = sampler_for(ctx.run, ScriptedSource(available=False))
        with trio.fail_after(1):
            await sampler.run(ctx)
        assert not (run.run_dir / JSONL_FILE).exists()
        run.profile_start_ns, run.profile_end_ns = 0, time.perf_counter_ns()
        assert [] == list(sampler.sections(run, empty_result()))
        assert sampler.report() is None

    async def test_sampler_jsonl_write_failure_is_reported_and_sampling_goes_on(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext, tmp_path: Path
    ) -> None:
        sampler = GpuSampler(
            sources=[ScriptedSource()],
            interval_s=0.25,
            jsonl_path=tmp_path / "missing" / JSONL_FILE,
        )
        with capture_logs() as logs:
            await run_for(sampler, ctx, 0.6)
        assert ["gpu_telemetry_write_failed"] == [e["event"] for e in logs]
        assert 4 == sampler.store.count
        assert (
            f"gpu: could not write {JSONL_FILE}; samples after that are missing" == sampler.report()
        )


class TestSamples:
    def test_phase_at_marks_warmup_profile_and_after(self, run: RunContext) -> None:
        run.profile_start_ns, run.profile_end_ns = 1000, 2000
        assert [Phase.WARMUP, Phase.PROFILE, Phase.PROFILE, None] == [
            phase_at(run, t) for t in (999, 1000, 2000, 2001)
        ]

    def test_phase_at_before_the_measured_phase_starts_is_warmup(self, run: RunContext) -> None:
        assert Phase.WARMUP == phase_at(run, 5)

    async def test_sampler_jsonl_has_every_documented_field(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext
    ) -> None:
        ctx.run.profile_start_ns = 0
        await run_for(sampler_for(ctx.run, ScriptedSource()), ctx, 0.1)
        first = read_jsonl(ctx.run.run_dir / JSONL_FILE)[0]
        assert JSONL_KEYS == list(first)
        assert ("profile", "fake", "h", 0, "GPU-0", "Fake GPU", 0.5, None, 10.0) == (
            first["phase"],
            first["source"],
            first["host"],
            first["gpu_index"],
            first["uuid"],
            first["name"],
            first["gpu_utilization"],
            first["memory_used_bytes"],
            first["energy_joules"],
        )
        sample = ctx.events[0]
        assert sample.wall_ns == first["wall_ns"]
        assert ctx.run.anchor_wall_ns < sample.wall_ns < ctx.run.anchor_wall_ns + 60 * 10**9

    async def test_sampler_reads_nvml_through_the_fake_module(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext
    ) -> None:
        """The real NVML source in the sampler, with the fake module under it."""
        fake = FakeNvml([FakeDevice(uuid="GPU-n0"), FakeDevice(uuid="GPU-n1", power_mw=99_000)])
        sampler = sampler_for(ctx.run, NvmlSource(host="bench", load_module=lambda: fake))
        await run_for(sampler, ctx, 1.0)
        lines = read_jsonl(ctx.run.run_dir / JSONL_FILE)
        # NVML runs in worker threads, which the mock clock does not wait for: how many ticks
        # fit in the second varies, but the reading taken at the stop is always there.
        assert len(lines) >= 2
        assert {("nvml", "bench", 0, "GPU-n0", 250.0), ("nvml", "bench", 1, "GPU-n1", 99.0)} == {
            (x["source"], x["host"], x["gpu_index"], x["uuid"], x["power_watts"]) for x in lines
        }
        assert ["nvml"] == sampler.active
        assert 1 == fake.calls["nvmlShutdown"]


def empty_result(**run_metrics: float) -> RunResult:
    return RunResult(
        status=RunStatus.FINISHED,
        was_cancelled=False,
        metrics={},
        run_metrics={
            tag: MetricStats(tag=tag, header=tag, unit="", count=1, avg=value)
            for tag, value in run_metrics.items()
        },
        errors=(),
        start_wall_ns=None,
        end_wall_ns=None,
    )


class TestSections:
    async def test_sampler_sections_cover_the_measured_phase(
        self, autojump_clock: trio.testing.MockClock, ctx: RecordingContext
    ) -> None:
        run = ctx.run
        run.profile_start_ns = time.perf_counter_ns()
        sampler = sampler_for(run, ScriptedSource(gpus=2))
        await run_for(sampler, ctx, 1.0)
        run.profile_end_ns = time.perf_counter_ns()
        sections = {s.name: s for s in sampler.sections(run, empty_result(total_output_tokens=100))}
        assert ["gpu_energy", "gpu_telemetry"] == sorted(sections)
        telemetry = sections["gpu_telemetry"].data
        assert ["scripted"] == telemetry["sources"]
        assert [("GPU-0", "fake"), ("GPU-1", "fake")] == [
            (g["uuid"], g["source"]) for g in telemetry["gpus"]
        ]
        assert run.to_wall_ns(run.profile_start_ns) == telemetry["window"]["start_time_ns"]
        assert not sections["gpu_telemetry"].console

    def test_sampler_sections_before_the_measured_phase_are_none(self, run: RunContext) -> None:
        assert [] == list(sampler_for(run, ScriptedSource()).sections(run, empty_result()))


class TestCreate:
    def test_create_sampler_builds_nvml_then_each_endpoint(self, run: RunContext) -> None:
        gpu = GpuConfig(
            nvml=True,
            dcgm_urls=("http://a:9400/metrics", "http://u:pw@b:9400/metrics"),
            interval_s=0.2,
            table=True,
        )
        sampler = create_sampler(gpu, run)
        kinds = [(type(s).__name__, s.label) for s in sampler.sources]
        assert [
            ("NvmlSource", "nvml"),
            ("DcgmSource", "http://a:9400/metrics"),
            ("DcgmSource", "http://b:9400/metrics"),
        ] == kinds
        assert (0.2, True, run.run_dir / JSONL_FILE) == (
            sampler.interval_s,
            sampler.console,
            sampler.jsonl_path,
        )
        assert all(s.timeout_s == 1.0 for s in sampler.sources if isinstance(s, DcgmSource))

    def test_create_sampler_without_nvml(self, run: RunContext) -> None:
        sampler = create_sampler(GpuConfig(nvml=False, dcgm_urls=("http://a:9400/metrics",)), run)
        assert ["DcgmSource"] == [type(s).__name__ for s in sampler.sources]
