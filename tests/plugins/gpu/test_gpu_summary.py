"""Per-GPU statistics, energy over the measured phase, and the derived figures."""

from __future__ import annotations

import numpy as np
import pytest
from aiperf import HardwareSample, MetricStats, Phase, RunResult, RunStatus
from aiperf_gpu.summary import (
    TelemetryStore,
    build_sections,
    counter_increase,
    field_stats,
    output_tokens,
    phase_energy,
    power_integral,
)
from hypothesis import given
from hypothesis import strategies as st

S = 1_000_000_000  # ns


def sample(
    t_s: float,
    *,
    uuid: str = "GPU-0",
    host: str = "h",
    index: int = 0,
    source: str = "dcgm",
    **values: float | None,
) -> HardwareSample:
    return HardwareSample(
        source=source,
        host=host,
        gpu_index=index,
        uuid=uuid,
        name="GPU",
        wall_ns=int(t_s * S),
        phase=Phase.PROFILE,
        **values,
    )


def run_result(**run_metrics: float) -> RunResult:
    return RunResult(
        status=RunStatus.FINISHED,
        was_cancelled=False,
        metrics={},
        run_metrics={
            tag: MetricStats(
                tag=tag, header=tag, unit="", count=1, avg=value, min=value, max=value, std=0.0
            )
            for tag, value in run_metrics.items()
        },
        errors=(),
        start_wall_ns=None,
        end_wall_ns=None,
    )


def arr(*values: float | None) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


class TestCounter:
    def test_counter_increase_interpolates_at_the_window_edges(self) -> None:
        """Samples at 0, 10, 20 s; window 5..15 s: half of each step counts."""
        t = arr(0, 10 * S, 20 * S)
        increase, covered, resets = counter_increase(t, arr(100, 200, 400), 5 * S, 15 * S)
        assert (150.0, 10 * S, 0) == (increase, covered, resets)

    def test_counter_reset_counts_what_was_gained_after_it(self) -> None:
        """100 -> 300 (+200), reset, 50 (+50 since zero), 80 (+30)."""
        t = arr(0, S, 2 * S, 3 * S)
        increase, _, resets = counter_increase(t, arr(100, 300, 50, 80), 0, 3 * S)
        assert (280.0, 1) == (increase, resets)

    def test_counter_skips_missing_values(self) -> None:
        t = arr(0, S, 2 * S)
        assert (20.0, 2 * S, 0) == counter_increase(t, arr(10, None, 30), 0, 2 * S)

    def test_counter_needs_two_values_inside_or_around_the_window(self) -> None:
        assert counter_increase(arr(0), arr(5), 0, S) is None
        assert counter_increase(arr(0, S), arr(5, 6), 2 * S, 3 * S) is None

    @given(
        steps=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=40),
        resets=st.sets(st.integers(0, 39)),
        start=st.floats(0, 1e6, allow_nan=False),
    )
    def test_counter_increase_equals_energy_used_despite_resets(
        self, steps: list[float], resets: set[int], start: float
    ) -> None:
        """Whatever the resets (to zero), the increase over all samples is the true total.

        A reset is only visible when the counter comes back lower than it was; one that gained
        more since zero than it had before looks like growth, so the strategy does not make those.
        """
        values = [start]
        for i, step in enumerate(steps):
            reset = i in resets and step < values[-1]
            values.append(step if reset else values[-1] + step)
        t = np.arange(len(values), dtype=np.float64) * S
        increase, covered, _ = counter_increase(t, np.array(values), 0, t[-1])
        assert covered == t[-1]
        assert sum(steps) == pytest.approx(increase, rel=1e-9, abs=1e-6)


class TestEnergy:
    def test_power_integral_uses_trapezoids(self) -> None:
        """100 W then 300 W one second apart: 200 J."""
        assert (200.0, S) == power_integral(arr(0, S), arr(100, 300), 0, S)

    def test_phase_energy_prefers_the_counter(self) -> None:
        store = TelemetryStore()
        for i, (energy, power) in enumerate([(1000, 1.0), (1400, 1.0), (1800, 1.0)]):
            store.add(sample(i, energy_joules=energy, power_watts=power))
        (series,) = store.series.values()
        energy = phase_energy(series, 0, 2 * S)
        assert ("counter", 800.0, 1.0) == (energy.method, energy.joules, energy.coverage)

    def test_phase_energy_falls_back_to_power(self) -> None:
        store = TelemetryStore()
        for i in range(3):
            store.add(sample(i, power_watts=250.0))
        (series,) = store.series.values()
        energy = phase_energy(series, 0, 2 * S)
        assert ("power", 500.0) == (energy.method, energy.joules)

    def test_phase_energy_fills_an_uncovered_start_at_average_power(self) -> None:
        """Sampling began 1 s into a 4 s phase at a steady 100 W: 300 J measured, 400 J total."""
        store = TelemetryStore()
        for t, e in [(1, 0.0), (2, 100.0), (3, 200.0), (4, 300.0)]:
            store.add(sample(t, energy_joules=e))
        (series,) = store.series.values()
        energy = phase_energy(series, 0, 4 * S)
        assert (400.0, 0.75) == (pytest.approx(energy.joules), energy.coverage)

    def test_phase_energy_without_energy_or_power_is_none(self) -> None:
        store = TelemetryStore()
        store.add(sample(0, gpu_utilization=0.5))
        store.add(sample(1, gpu_utilization=0.5))
        (series,) = store.series.values()
        assert phase_energy(series, 0, S) is None


class TestStats:
    def test_field_stats_match_numpy(self) -> None:
        values = np.array([0.1, 0.5, 0.9, np.nan, 0.3])
        stats = field_stats(values, 100.0)
        finite = np.array([10.0, 50.0, 90.0, 30.0])
        assert {
            "avg": pytest.approx(45.0),
            "min": pytest.approx(10.0),
            "max": pytest.approx(90.0),
            "p50": pytest.approx(float(np.percentile(finite, 50))),
            "p99": pytest.approx(float(np.percentile(finite, 99))),
            "count": 4,
        } == stats

    def test_field_stats_of_nothing_have_no_values(self) -> None:
        assert {
            "avg": None,
            "min": None,
            "max": None,
            "p50": None,
            "p99": None,
            "count": 0,
        } == field_stats(arr(None), 1.0)


class TestDerived:
    def test_output_tokens_prefers_the_run_metric(self) -> None:
        assert 640.0 == output_tokens(
            run_result(total_output_tokens=640, output_token_throughput=1, benchmark_duration=1)
        )

    def test_output_tokens_falls_back_to_throughput_times_duration(self) -> None:
        assert 500.0 == output_tokens(run_result(output_token_throughput=100, benchmark_duration=5))
        assert output_tokens(run_result(request_count=3)) is None


class TestSections:
    def make_store(self) -> TelemetryStore:
        """Two GPUs over 0..10 s at 100 W and 300 W (energy counters), plus a warm-up sample."""
        store = TelemetryStore()
        for t in range(-2, 11):
            store.add(
                sample(
                    t,
                    uuid="GPU-0",
                    index=0,
                    energy_joules=100.0 * t + 5000,
                    power_watts=100.0,
                    gpu_utilization=0.2 if t < 0 else 0.8,
                    memory_used_bytes=2 * 1024**3,
                )
            )
            store.add(
                sample(
                    t,
                    uuid="GPU-1",
                    index=1,
                    energy_joules=300.0 * t + 9000,
                    power_watts=300.0,
                    gpu_utilization=0.4,
                )
            )
        return store

    def sections(self, store: TelemetryStore, result: RunResult, console: bool = False) -> dict:
        found = build_sections(
            store,
            start_ns=0,
            end_ns=10 * S,
            result=result,
            sources=["dcgm"],
            interval_s=1.0,
            console=console,
        )
        return {s.name: s for s in found}

    def test_sections_cover_only_the_measured_phase(self) -> None:
        """Warm-up samples (t < 0, 20 % busy) are not in the statistics."""
        telemetry = self.sections(self.make_store(), run_result())["gpu_telemetry"]
        gpu0 = telemetry.data["gpus"][0]
        assert ("GPU-0", 11) == (gpu0["uuid"], gpu0["samples"])
        util = gpu0["metrics"]["gpu_utilization"]
        assert ("%", 80.0, 80.0, 11) == (
            util["unit"],
            pytest.approx(util["min"]),
            pytest.approx(util["max"]),
            util["count"],
        )
        assert 2.0 == gpu0["metrics"]["memory_used_bytes"]["avg"]
        assert {
            "unit": "J",
            "joules": 1000.0,
            "method": "counter",
            "coverage": 1.0,
            "counter_resets": 0,
        } == gpu0["energy"]

    def test_sections_derive_tokens_per_joule_and_energy_per_request(self) -> None:
        """4000 J on two GPUs; 8000 tokens in 40 requests: 2 tokens/J, 100 J/request."""
        energy = self.sections(
            self.make_store(), run_result(total_output_tokens=8000, request_count=40)
        )["gpu_energy"]
        assert {
            "energy": {"unit": "J", "value": 4000.0},
            "output_tokens_per_joule": {"unit": "tokens/J", "value": 2.0},
            "energy_per_request": {"unit": "J/request", "value": 100.0},
            "output_tokens": 8000.0,
            "request_count": 40.0,
            "gpus": ["GPU-0", "GPU-1"],
        } == energy.data
        assert [
            {"Metric": "Energy h gpu0", "Unit": "J", "Value": 1000.0},
            {"Metric": "Energy h gpu1", "Unit": "J", "Value": 3000.0},
            {"Metric": "Energy, all GPUs", "Unit": "J", "Value": 4000.0},
            {"Metric": "Output Tokens per Joule", "Unit": "tokens/J", "Value": 2.0},
            {"Metric": "Energy per Request", "Unit": "J/request", "Value": 100.0},
        ] == list(energy.rows)

    def test_sections_count_a_gpu_seen_by_two_sources_once(self) -> None:
        """NVML and a DCGM exporter on the same machine report the same UUID."""
        store = TelemetryStore()
        for t in range(11):
            for source in ("nvml", "dcgm"):
                store.add(sample(t, uuid="GPU-same", source=source, energy_joules=50.0 * t))
        energy = self.sections(store, run_result(total_output_tokens=1000))["gpu_energy"]
        assert 500.0 == energy.data["energy"]["value"]
        assert ["h gpu0 (dcgm)", "h gpu0 (nvml)"] == [
            g["host"] + f" gpu{g['gpu_index']} ({g['source']})"
            for g in self.sections(store, run_result())["gpu_telemetry"].data["gpus"]
        ]

    def test_sections_rows_are_one_per_gpu_and_metric_with_values(self) -> None:
        telemetry = self.sections(self.make_store(), run_result(), console=True)["gpu_telemetry"]
        assert telemetry.console
        assert ["GPU", "Metric", "Unit", "avg", "min", "max", "p50", "p99"] == list(
            telemetry.rows[0]
        )
        assert [
            ("h gpu0", "GPU Utilization"),
            ("h gpu0", "Memory Used"),
            ("h gpu0", "Power"),
            ("h gpu1", "GPU Utilization"),
            ("h gpu1", "Power"),
        ] == [(r["GPU"], r["Metric"]) for r in telemetry.rows]

    def test_sections_without_energy_leave_derived_figures_empty(self) -> None:
        store = TelemetryStore()
        for t in range(11):
            store.add(sample(t, gpu_utilization=0.5))
        energy = self.sections(store, run_result(total_output_tokens=100, request_count=4))[
            "gpu_energy"
        ]
        assert (None, None, None) == (
            energy.data["energy"]["value"],
            energy.data["output_tokens_per_joule"]["value"],
            energy.data["energy_per_request"]["value"],
        )
        assert "" == energy.rows[-1]["Value"]

    def test_sections_of_an_empty_store_are_none(self) -> None:
        assert [] == build_sections(
            TelemetryStore(),
            start_ns=0,
            end_ns=S,
            result=run_result(),
            sources=[],
            interval_s=1.0,
            console=False,
        )
