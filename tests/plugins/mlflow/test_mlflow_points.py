"""Live events as ``live.*`` points: names, units, steps and timestamps."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiperf import Phase, Progress
from aiperf_mlflow import points
from support.mlflow_values import ANCHOR_WALL_NS, gpu_sample, make_run, request_done


class TestRequestPoints:
    def test_request_points_seed_keys_in_seconds_and_tokens(self, tmp_path: Path) -> None:
        """The four keys the docs promise, in seconds (and tokens), one point each."""
        run = make_run(tmp_path)
        event = request_done(
            7, latency_ms=250.0, ttft_ms=40.0, gaps_ms=(10.0, 20.0), isl=100, osl=30
        )
        got = {p.key: p.value for p in points.request_points(event, run)}
        assert pytest.approx(0.25) == got["live.gen_ai.client.operation.duration"]
        assert pytest.approx(0.04) == got["live.gen_ai.client.operation.time_to_first_chunk"]
        assert pytest.approx(0.015) == got["live.gen_ai.client.operation.time_per_output_chunk"]
        assert 130.0 == got["live.gen_ai.client.token.usage"]
        assert 100.0 == got["live.gen_ai.client.token.usage.input"]
        assert 30.0 == got["live.gen_ai.client.token.usage.output"]

    def test_request_points_step_is_index_time_is_end(self, tmp_path: Path) -> None:
        """Step = the request's index; timestamp = its end on the wall clock, in ms."""
        run = make_run(tmp_path)
        event = request_done(3, latency_ms=100.0)
        expected_ms = run.to_wall_ns(event.metrics.end_ns) // 1_000_000
        got = points.request_points(event, run)
        assert {3} == {p.step for p in got}
        assert {expected_ms} == {p.timestamp_ms for p in got}

    def test_request_points_skip_warmup(self, tmp_path: Path) -> None:
        """Warm-up requests are not part of the measured curves."""
        run = make_run(tmp_path)
        assert [] == points.request_points(request_done(0, phase=Phase.WARMUP), run)

    def test_request_points_absent_metrics_are_left_out(self, tmp_path: Path) -> None:
        """Without streaming there is no TTFT or chunk gap; a failed request keeps its duration."""
        run = make_run(tmp_path)
        event = request_done(1, ttft_ms=None, gaps_ms=(), osl=None, ok=False)
        keys = {p.key for p in points.request_points(event, run)}
        assert {
            points.DURATION,
            points.TOKEN_USAGE,
            points.TOKEN_USAGE_INPUT,
        } == keys


class TestOtherPoints:
    def test_hardware_points_per_gpu_keys(self) -> None:
        """Each reading becomes live.hw.*.gpu<N> at the sample's time."""
        got = {p.key: p for p in points.hardware_points(gpu_sample(gpu=1, power_watts=300.0), 4)}
        assert {
            "live.hw.gpu.utilization.gpu1",
            "live.hw.gpu.memory.usage.gpu1",
            "live.hw.gpu.memory.limit.gpu1",
            "live.hw.power.gpu1",
            "live.hw.energy.gpu1",
            "live.hw.temperature.gpu1",
            "live.hw.gpu.clock.sm.gpu1",
        } == set(got)
        power = got["live.hw.power.gpu1"]
        assert (300.0, 4, (ANCHOR_WALL_NS + 2_000_000_000) // 1_000_000) == (
            power.value,
            power.step,
            power.timestamp_ms,
        )

    def test_hardware_points_skip_missing_fields(self) -> None:
        """A sampler that cannot read power logs no power point."""
        got = {p.key for p in points.hardware_points(gpu_sample(power_watts=None), 0)}
        assert "live.hw.power.gpu0" not in got
        assert "live.hw.gpu.utilization.gpu0" in got

    def test_progress_points_measured_phase_only(self) -> None:
        """Progress counters become points in the measured phase, none in warm-up."""
        progress = Progress(
            phase=Phase.PROFILE, sent=10, completed=8, failed=1, in_flight=2, elapsed_s=3.7
        )
        got = {p.key: (p.value, p.step) for p in points.progress_points(progress, 123)}
        assert {
            points.COMPLETED: (8.0, 3),
            points.FAILED: (1.0, 3),
            points.IN_FLIGHT: (2.0, 3),
        } == got
        warmup = Progress(
            phase=Phase.WARMUP, sent=1, completed=1, failed=0, in_flight=0, elapsed_s=1
        )
        assert [] == points.progress_points(warmup, 123)

    def test_progress_points_carry_the_loop_lag_in_seconds(self) -> None:
        """Measurement health live: the load processes' largest loop lag of the last second."""
        progress = Progress(
            phase=Phase.PROFILE, sent=10, completed=8, failed=1, in_flight=2, elapsed_s=2.2,
            loop_lag_ms=12.5,
        )  # fmt: skip
        got = {p.key: (p.value, p.step) for p in points.progress_points(progress, 123)}
        assert (0.0125, 2) == got[points.LOOP_LAG]
        assert "live.aiperf.client.loop_lag" == points.LOOP_LAG
