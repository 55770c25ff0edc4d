"""Measurement health: the lag histogram, the CPU readings, the verdict and its one line."""

from __future__ import annotations

import mmap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from aiperf import _health as health
from aiperf._exporters import render_table, summary
from aiperf._health import (
    LagHistogram,
    LoopMonitor,
    ProcessHealth,
    assess,
    cgroup_cpu_limit,
    parse_cpu_max,
)
from aiperf._types import MetricStats, RunContext, RunResult, RunStatus
from aiperf.testing import make_run

MS = 1_000_000


def process(
    lag_p99_ms: float | None = 0.8,
    *,
    worker: int | None = None,
    lag_max_ms: float | None = None,
    busy: float = 0.3,
    wait: float | None = 0.01,
    cpus: float = 4.0,
) -> ProcessHealth:
    """A load process's figures over a 10 s phase with the given loop busy and wait shares."""
    return ProcessHealth(
        worker=worker,
        lag_count=1000,
        lag_p50_ms=None if lag_p99_ms is None else lag_p99_ms / 4,
        lag_p99_ms=lag_p99_ms,
        lag_max_ms=lag_max_ms if lag_max_ms is not None else lag_p99_ms,
        wall_s=10.0,
        cpu_s=10.0 * busy,
        loop_cpu_s=10.0 * busy,
        cpu_wait_s=None if wait is None else 10.0 * wait,
        cpus_available=cpus,
    )


class TestLagHistogram:
    def test_percentiles_err_high_by_at_most_one_bucket(self) -> None:
        hist = LagHistogram()
        for us in range(1, 1001):  # 1 us .. 1 ms, evenly
            hist.add(us * 1000)
        assert 1000 == hist.count
        assert 500 * 1000 <= hist.percentile_ns(50) <= 600 * 1000
        assert 990 * 1000 <= hist.percentile_ns(99) <= 1000 * 1000
        assert 1000 * 1000 == hist.max_ns

    def test_one_stall_shows_in_the_tail_not_the_median(self) -> None:
        hist = LagHistogram()
        for _ in range(98):
            hist.add(200_000)  # 0.2 ms
        hist.add(30 * MS)
        hist.add(31 * MS)
        assert hist.percentile_ns(50) == 200_000
        assert 30 * MS <= hist.percentile_ns(99) <= 31 * MS

    def test_beyond_the_last_edge_is_the_max(self) -> None:
        hist = LagHistogram()
        hist.add(25_000 * MS)  # 25 s: past the 10 s edge
        assert 25_000 * MS == hist.percentile_ns(99) == hist.max_ns

    def test_empty(self) -> None:
        assert LagHistogram().percentile_ns(99) is None

    def test_fixed_size(self) -> None:
        hist = LagHistogram()
        size = len(hist.counts)
        for late in (0, 5 * MS, 50 * MS, 500 * MS, 50_000 * MS):
            hist.add(late)
        assert size == len(hist.counts) == len(health.EDGES_NS) + 1


class TestCpuLimit:
    def test_parse_cpu_max(self) -> None:
        assert 0.5 == parse_cpu_max("50000 100000\n")
        assert 2.0 == parse_cpu_max("200000 100000")
        assert parse_cpu_max("max 100000") is None
        assert parse_cpu_max("garbage") is None

    def test_cgroup_v2_tightest_of_group_and_parents(self, tmp_path: Path) -> None:
        root = tmp_path / "cgroup"
        group = root / "machine" / "bench"
        group.mkdir(parents=True)
        (root / "machine" / "cpu.max").write_text("150000 100000\n")
        (group / "cpu.max").write_text("max 100000\n")
        proc = tmp_path / "self-cgroup"
        proc.write_text("0::/machine/bench\n")
        assert 1.5 == cgroup_cpu_limit(root, proc)

    def test_cgroup_v1_quota(self, tmp_path: Path) -> None:
        root = tmp_path / "cgroup"
        mount = root / "cpu,cpuacct"
        mount.mkdir(parents=True)
        (mount / "cpu.cfs_quota_us").write_text("250000\n")
        (mount / "cpu.cfs_period_us").write_text("100000\n")
        proc = tmp_path / "self-cgroup"
        proc.write_text("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n")
        assert 2.5 == cgroup_cpu_limit(root, proc)

    def test_no_limit(self, tmp_path: Path) -> None:
        proc = tmp_path / "self-cgroup"
        proc.write_text("0::/\n")
        assert cgroup_cpu_limit(tmp_path / "nothing", proc) is None
        assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None

    def test_available_cpus_is_positive(self) -> None:
        assert health.available_cpus() > 0


class TestVerdict:
    """Thresholds (the module's constants) to the line the console shows."""

    def test_ok_names_the_bound(self) -> None:
        verdict = assess([process(0.84)], ttft_p50_ms=50.0, itl_p50_ms=10.0)
        assert "ok" == verdict.verdict and verdict.ok
        assert 0.84 == verdict.overhead_p99_ms
        assert verdict.line.startswith("Measurement health: client overhead below 0.84 ms at p99")
        assert "1 load process" in verdict.line
        assert "WARNING" not in verdict.line

    def test_above_the_absolute_bound_warns_with_the_figure(self) -> None:
        verdict = assess([process(12.3, lag_max_ms=48.0)], ttft_p50_ms=500.0, itl_p50_ms=100.0)
        assert "warning" == verdict.verdict
        assert verdict.line.startswith(
            "Measurement health: WARNING: event-loop lag p99 12.3 ms is above 5 ms "
            "(1 load process, max 48.0 ms)"
        )
        assert "TTFT and ITL may read up to 12.3 ms high" in verdict.line
        assert "2% of the TTFT p50" in verdict.line and "12% of the ITL p50" in verdict.line
        assert "--workers N" in verdict.line and "more machines" in verdict.line
        assert ("event-loop lag p99 12.3 ms is above 5 ms",) == verdict.reasons

    def test_the_line_reads_the_figure_the_block_gives(self) -> None:
        """40.5501 ms: the block says 40.55, so the line says 40.5 (as the block's figure to
        one decimal would), never 40.6."""
        verdict = assess([process(40.5501)], ttft_p50_ms=50.0, itl_p50_ms=10.0)
        block = verdict.as_dict()
        assert 40.55 == block["overhead_p99_ms"]
        assert verdict.line.startswith(f"Measurement health: WARNING: event-loop lag p99 {block['overhead_p99_ms']:.1f} ms")

    def test_at_the_absolute_bound_with_slow_tokens_is_ok(self) -> None:
        assert assess([process(health.LAG_WARN_MS)], ttft_p50_ms=800.0, itl_p50_ms=60.0).ok

    def test_half_a_fast_itl_warns(self) -> None:
        """3 ms is under the absolute bound but 75 % of a 4 ms ITL: successive chunks merge."""
        verdict = assess([process(3.0)], ttft_p50_ms=50.0, itl_p50_ms=4.0)
        assert "warning" == verdict.verdict
        assert ("event-loop lag p99 3.00 ms is 75% of the ITL p50",) == verdict.reasons
        assert assess([process(1.9)], ttft_p50_ms=50.0, itl_p50_ms=4.0).ok  # 48 %
        assert assess([process(3.0)], ttft_p50_ms=50.0, itl_p50_ms=10.0).ok  # 30 %

    def test_a_tenth_of_a_short_ttft_warns(self) -> None:
        verdict = assess([process(3.0)], ttft_p50_ms=20.0, itl_p50_ms=30.0)
        assert ("event-loop lag p99 3.00 ms is 15% of the TTFT p50",) == verdict.reasons
        assert assess([process(3.0)], ttft_p50_ms=40.0, itl_p50_ms=30.0).ok  # 7.5 %

    def test_the_share_is_never_judged_below_the_floor(self) -> None:
        """Under 1 ms the lag is the poller's resolution: no warning whatever the ITL."""
        assert assess([process(0.9)], ttft_p50_ms=2.0, itl_p50_ms=1.0).ok
        assert not assess([process(1.1)], ttft_p50_ms=2.0, itl_p50_ms=1.0).ok

    def test_no_latency_figures_judges_the_absolute_bound_only(self) -> None:
        assert assess([process(4.9)]).ok
        assert not assess([process(5.1)]).ok

    def test_send_lag_warns(self) -> None:
        verdict = assess([process(0.5)], send_lag_p99_ms=25.0)
        assert "warning" == verdict.verdict
        assert verdict.line.startswith("Measurement health: WARNING: send lag p99 25.0 ms is above 10 ms")
        assert "event-loop lag" not in verdict.line
        assert assess([process(0.5)], send_lag_p99_ms=health.SEND_LAG_WARN_MS).ok

    def test_cause_saturated_loop(self) -> None:
        line = assess([process(20.0, busy=0.97)]).line
        assert "kept its CPU 97% busy" in line

    def test_cause_waiting_for_a_cpu(self) -> None:
        line = assess([process(20.0, busy=0.4, wait=0.35)]).line
        assert "waited for a CPU 35% of the time" in line
        assert "kept its CPU" not in line

    def test_cause_a_blocked_loop(self) -> None:
        line = assess([process(30.0, busy=0.2, wait=0.0)]).line
        assert "something blocked it now and then" in line

    def test_busy_share_is_of_the_cpu_the_process_may_use(self) -> None:
        """Under a half-CPU quota, 0.46 s of CPU per second is 92 % of what it may use."""
        assert 0.92 == pytest.approx(process(20.0, busy=0.46, cpus=0.5).loop_busy)
        assert "92% busy" in assess([process(20.0, busy=0.46, cpus=0.5)]).line

    def test_worst_worker_is_named(self) -> None:
        workers = [process(0.7, worker=0), process(9.5, worker=1), process(2.0, worker=2)]
        verdict = assess(workers)
        assert 9.5 == verdict.overhead_p99_ms and 1 == verdict.worst
        assert "worst of 3 worker processes: worker 1" in verdict.line
        data = verdict.as_dict()
        assert 3 == data["load_processes"] == len(data["processes"])
        assert 9.5 == data["loop_lag_ms"]["p99"]

    def test_nothing_measured(self) -> None:
        verdict = assess([process(None)])
        assert "unknown" == verdict.verdict and verdict.overhead_p99_ms is None
        assert "not measured" in verdict.line

    def test_as_dict_is_plain_data(self) -> None:
        data = assess([process(2.0, busy=0.5, wait=0.05)], itl_p50_ms=30.0).as_dict()
        assert {"verdict", "overhead_p99_ms", "message", "loop_lag_ms", "loop_busy_pct",
                "cpu_wait_pct", "cpus_available", "send_lag_p99_ms", "processes"} <= set(data)  # fmt: skip
        assert (50.0, 5.0) == (data["loop_busy_pct"], data["cpu_wait_pct"])
        assert data["message"].startswith("Measurement health: client overhead below 2.00 ms")


class TestExports:
    def _result(self, verdict: Any) -> RunResult:
        ttft = MetricStats(tag="time_to_first_token", header="Time to First Token", unit="ms", count=1, avg=50.0)
        return RunResult(
            status=RunStatus.FINISHED, was_cancelled=False, metrics={"time_to_first_token": ttft},
            run_metrics={}, errors=(), start_wall_ns=None, end_wall_ns=None, health=verdict,
        )  # fmt: skip

    def _run(self, tmp_path: Path) -> RunContext:
        return make_run(tmp_path)

    def test_summary_block_and_console_line(self, tmp_path: Path) -> None:
        verdict = assess([process(12.0)], ttft_p50_ms=50.0)
        run, result = self._run(tmp_path), self._result(verdict)
        assert verdict.as_dict() == summary(run, result)["measurement_health"]
        lines = render_table(run, result).splitlines()
        assert verdict.line in lines

    def test_no_block_without_a_load(self, tmp_path: Path) -> None:
        run, result = self._run(tmp_path), self._result(None)
        assert summary(run, result)["measurement_health"] is None
        assert "Measurement health" not in render_table(run, result)


class _StepCpu:
    """A trio instrument: CPU time of each step of the monitor's task."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self._start = 0

    def before_task_step(self, task: Any) -> None:
        self._start = time.thread_time_ns()

    def after_task_step(self, task: Any) -> None:
        if task.name.endswith("LoopMonitor.run"):
            self.steps.append(time.thread_time_ns() - self._start)


class TestLoopMonitor:
    def test_a_blocked_loop_is_seen(self) -> None:
        """A task that blocks the loop for 30 ms shows as lateness of about that much."""
        monitor = LoopMonitor()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor.run)
                monitor.begin()
                for _ in range(5):
                    await trio.sleep(0.025)
                    time.sleep(0.030)  # the loop can do nothing else meanwhile
                monitor.end()
                nursery.cancel_scope.cancel()

        trio.run(main)
        figures = monitor.figures()
        assert figures is not None
        assert figures.lag_count >= 4
        assert figures.lag_max_ms is not None and figures.lag_max_ms >= 20.0
        assert figures.wall_s >= 0.25
        assert figures.loop_cpu_s < figures.wall_s  # sleeping is not CPU
        assert figures.cpus_available > 0

    def test_recording_only_inside_the_window_but_recent_always(self) -> None:
        monitor = LoopMonitor()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor.run)
                await trio.sleep(0.05)
                assert monitor.take_recent_ms() is not None
                assert monitor.take_recent_ms() is None  # taken: nothing since
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert 0 == monitor.histogram.count
        assert monitor.figures() is None

    def test_a_tick_is_cheap_and_allocates_nothing_that_stays(self) -> None:
        """2000 wake-ups leave no memory behind."""
        monitor = LoopMonitor(period_s=0.0005)
        steps = _StepCpu()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor.run)
                monitor.begin()
                await trio.sleep(0.2)  # warm: the first ticks allocate the task's frame
                tracemalloc.start()
                before = tracemalloc.take_snapshot()
                await trio.sleep(1.0)
                after = tracemalloc.take_snapshot()
                tracemalloc.stop()
                monitor.end()
                nursery.cancel_scope.cancel()
            grown = sum(
                stat.size_diff
                for stat in after.compare_to(before, "filename")
                if stat.traceback[0].filename == health.__file__
            )
            # What is alive at the snapshot (the tick's own clock values) is a few hundred
            # bytes; anything kept per tick would be tens of kilobytes after 2000 ticks.
            assert grown < 1024, grown

        trio.run(main, instruments=[steps])
        # It ran (a monitor that never woke would leave nothing behind too); what a wake-up
        # costs in CPU is a figure of the bench, not an assertion here.
        assert len(steps.steps) >= 200


class TestMemoryPerStream:
    def test_growth_over_the_most_streams_in_flight(self) -> None:
        """40 MiB more with 2000 streams in flight at most: 20 KiB each."""
        figures = attrs.evolve(
            process(), rss_before_bytes=100 * 2**20, rss_peak_bytes=140 * 2**20, in_flight_peak=2000
        )
        assert figures.bytes_per_stream == pytest.approx(40 * 2**20 / 2000)
        memory = figures.as_dict()["memory"]
        assert memory == {
            "rss_before_load_mib": 100.0,
            "rss_peak_mib": 140.0,
            "in_flight_peak": 2000,
            "bytes_per_in_flight_stream": round(40 * 2**20 / 2000),
        }
        block = assess([figures, attrs.evolve(figures, worker=1, rss_peak_bytes=120 * 2**20)]).as_dict()
        assert block["bytes_per_in_flight_stream"] == round(40 * 2**20 / 2000)  # the costlier

    def test_too_few_streams_to_tell(self) -> None:
        figures = attrs.evolve(process(), rss_before_bytes=1, rss_peak_bytes=2**20, in_flight_peak=16)
        assert figures.bytes_per_stream is None
        assert attrs.evolve(figures, rss_before_bytes=None, in_flight_peak=500).bytes_per_stream is None

    def test_the_monitor_reads_the_peaks(self) -> None:
        """The largest resident size and in-flight count seen, from before the first tick."""
        in_flight = iter([10, 700, 300, 5])
        monitor = LoopMonitor(in_flight=lambda: next(in_flight, 0))

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(monitor.run)
                await trio.sleep(0)
                monitor.begin()
                # 32 MiB of fresh pages, each touched: resident. Not a bytearray: the
                # allocator may hand back heap pages earlier tests freed, already resident
                # (a full suite's process held 548 MB, and its RSS grew by 4 KiB).
                kept = mmap.mmap(-1, 32 * 2**20)
                for offset in range(0, len(kept), mmap.PAGESIZE):
                    kept[offset] = 1
                for _ in range(3):
                    monitor.read_memory()
                kept.close()
                monitor.end()  # the fourth reading
                nursery.cancel_scope.cancel()

        trio.run(main)
        figures = monitor.figures()
        assert figures is not None
        assert 700 == figures.in_flight_peak
        assert figures.rss_before_bytes is not None and figures.rss_peak_bytes is not None
        assert figures.rss_peak_bytes - figures.rss_before_bytes >= 30 * 2**20

    def test_resident_bytes(self, tmp_path: Path) -> None:
        statm = tmp_path / "statm"
        statm.write_text("5000 1200 300 10 0 900 0\n")
        assert 1200 * health._PAGE_SIZE == health.resident_bytes(str(statm))
        assert health.resident_bytes(str(tmp_path / "missing")) is None


def test_process_health_pickles() -> None:
    import pickle

    figures = process(2.0, worker=3)
    assert figures == pickle.loads(pickle.dumps(figures))
    assert attrs.evolve(figures, worker=1).worker == 1
