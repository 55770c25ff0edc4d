"""The benchmark suite's reading of run directories and of the mock server's ground truth."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import analysis


def _summary(**metrics: dict) -> dict:
    return {"metrics": metrics, "client": {"send_lag": {"p50": 0.2, "p99": 1.5}}}


def _server_request(ttft: float, latency: float, tokens: int, outcome: str = "ok", stream: bool = True) -> dict:
    return {"outcome": outcome, "stream": stream, "completion_tokens": tokens, "ttft_ms": ttft, "latency_ms": latency}


class TestAccuracy:
    def test_accuracy_errors_subtract_server_truth(self) -> None:
        """Each error is aiperf's percentile minus the server's, in ms."""
        summary = _summary(
            time_to_first_token={"p50": 50.4, "p99": 53.0},
            inter_chunk_latency={"p99": 10.5},
            inter_token_latency={"p50": 10.02},
        )
        stats = {
            "ttft_ms": {"p50": 50.1, "p99": 52.0},
            "chunk_gap_ms": {"p99": 10.2},
            "raw": {"requests": [_server_request(50.0, 200.0, 16), _server_request(50.0, 200.0, 16)]},
        }
        errors = analysis.accuracy_errors(summary, stats)
        assert pytest.approx(0.3) == errors.ttft_p50
        assert pytest.approx(1.0) == errors.ttft_p99
        assert pytest.approx(0.3) == errors.chunk_gap_p99
        assert pytest.approx(0.02) == errors.itl_p50

    def test_accuracy_errors_missing_metric_is_nan(self) -> None:
        """A run without streaming metrics yields NaN, never a silent zero."""
        errors = analysis.accuracy_errors(_summary(), {"ttft_ms": {"p50": 50.0, "p99": 51.0}})
        assert math.isnan(errors.ttft_p50) and math.isnan(errors.itl_p50)

    def test_server_itl_uses_tokens_after_the_first(self) -> None:
        """The server's ITL of a request is (last write − first write) / (tokens − 1)."""
        raw = {"raw": {"requests": [_server_request(50.0, 200.0, 16), _server_request(40.0, 140.0, 11)]}}
        assert [10.0, 10.0] == analysis.server_itl_values(raw)

    def test_server_itl_skips_failed_short_and_unstreamed(self) -> None:
        """Faulted, one-token and non-streamed requests have no ITL."""
        raw = {"raw": {"requests": [
            _server_request(50.0, 200.0, 16, outcome="reset"),
            _server_request(50.0, 50.0, 1),
            _server_request(50.0, 200.0, 16, stream=False),
            _server_request(50.0, 130.0, 9),
        ]}}  # fmt: skip
        assert [10.0] == analysis.server_itl_values(raw)

    def test_percentile_matches_numpy_linear(self) -> None:
        """Percentiles interpolate linearly, the definition aiperf and the server use."""
        values = [1.0, 2.0, 3.0, 4.0, 10.0]
        assert np.percentile(values, 99) == analysis.percentile(values, 99)
        assert 3.0 == analysis.percentile(values, 50)
        assert math.isnan(analysis.percentile([], 50))


def _record(start_ns: int, intended_ns: int | None, phase: str = "profile") -> dict:
    return {"phase": phase, "start_time_ns": start_ns, "end_time_ns": start_ns + 1000, "intended_start_time_ns": intended_ns}


class TestRates:
    def test_send_rates_count_gaps_not_requests(self) -> None:
        """n sends spaced 10 ms apart are 100 req/s: (n − 1) gaps over the span."""
        records = [_record(i * 10_000_000 + 5, i * 10_000_000) for i in range(11)]
        rates = analysis.send_rates(records)
        assert 11 == rates.requests
        assert pytest.approx(100.0) == rates.sent_rate
        assert pytest.approx(100.0) == rates.intended_rate

    def test_send_rates_slow_client_is_seen(self) -> None:
        """A client that sends every 11 ms against a 10 ms schedule achieves about 91 req/s."""
        records = [_record(i * 11_000_000, i * 10_000_000) for i in range(101)]
        rates = analysis.send_rates(records)
        assert pytest.approx(1000 / 11) == rates.sent_rate
        assert pytest.approx(-9.0909, abs=1e-3) == analysis.relative_error_pct(rates.sent_rate, rates.intended_rate)

    def test_send_rates_late_first_send_does_not_inflate(self) -> None:
        """A first request sent 50 ms late, the rest on time: the client delivered the rate asked."""
        records = [_record(i * 10_000_000 + (50_000_000 if i == 0 else 0), i * 10_000_000) for i in range(101)]
        assert pytest.approx(100.0) == analysis.send_rates(records).sent_rate

    def test_send_rates_leave_out_warmup(self) -> None:
        """Warm-up requests are not part of the measured rate."""
        records = [_record(0, None, phase="warmup")] + [_record(1_000_000_000 + i * 2_000_000, None) for i in range(6)]
        rates = analysis.send_rates(records)
        assert 6 == rates.requests
        assert pytest.approx(500.0) == rates.sent_rate
        assert math.isnan(rates.intended_rate)

    def test_send_rates_of_one_request_is_nan(self) -> None:
        """One request has no rate."""
        assert math.isnan(analysis.send_rates([_record(5, 5)]).sent_rate)

    def test_relative_error_pct(self) -> None:
        """Signed percent of the expected value; no expected value, no error."""
        assert pytest.approx(-1.0) == analysis.relative_error_pct(99.0, 100.0)
        assert math.isnan(analysis.relative_error_pct(99.0, 0.0))

    def test_poisson_sigma_shrinks_with_sqrt_n(self) -> None:
        """A Poisson schedule of 10 001 requests is off its rate by about 1 % (one sigma)."""
        assert pytest.approx(1.0) == analysis.poisson_rate_sigma_pct(10_001)
        assert pytest.approx(10.0) == analysis.poisson_rate_sigma_pct(101)

    def test_poisson_sigma_matches_simulation(self) -> None:
        """The stated sigma is what exponential gaps really give."""
        rng = np.random.default_rng(0)
        n = 301
        rates = [(n - 1) / rng.exponential(1 / 100, n - 1).sum() for _ in range(4000)]
        measured = 100 * float(np.std(rates)) / 100
        assert pytest.approx(analysis.poisson_rate_sigma_pct(n), rel=0.1) == measured


class TestRunFiles:
    def test_read_summary_and_records(self, tmp_path: Path) -> None:
        """The suite reads the run directory's summary and JSONL files as aiperf writes them."""
        (tmp_path / analysis.SUMMARY_FILE).write_text(json.dumps(_summary(request_throughput={"avg": 812.5})))
        lines = [json.dumps(_record(i, i)) for i in range(3)]
        (tmp_path / analysis.RECORDS_FILE).write_text("\n".join(lines) + "\n\n")
        summary = analysis.read_summary(tmp_path)
        assert 812.5 == analysis.metric(summary, "request_throughput")
        assert math.isnan(analysis.metric(summary, "goodput"))
        assert 1.5 == analysis.send_lag(summary, "p99")
        assert [0, 1, 2] == [r["start_time_ns"] for r in analysis.iter_records(tmp_path)]

    def test_send_lag_absent_for_closed_loop(self) -> None:
        """Concurrency runs have no send lag: NaN, not zero."""
        assert math.isnan(analysis.send_lag({"client": {"send_lag": None}}, "p99"))


class TestMemory:
    def test_memory_trend_flat(self) -> None:
        """A flat series after warm-up has a slope near zero."""
        samples = [(t / 10, 80.0 if t < 20 else 100.0) for t in range(200)]
        trend = analysis.memory_trend(samples, warmup_s=2.5)
        assert pytest.approx(0.0, abs=1e-9) == trend.slope_mib_per_s
        assert (100.0, 100.0) == (trend.early_mib, trend.late_mib)

    def test_memory_trend_growing(self) -> None:
        """Steady growth is measured as MiB per second, warm-up left out."""
        samples = [(t / 10, 50.0 + 0.2 * t) for t in range(100)]
        trend = analysis.memory_trend(samples, warmup_s=1.0)
        assert pytest.approx(2.0) == trend.slope_mib_per_s
        assert trend.late_mib > trend.early_mib

    def test_memory_trend_too_few_samples(self) -> None:
        """Too short a run has no trend."""
        assert math.isnan(analysis.memory_trend([(0.0, 1.0), (1.0, 1.0)], warmup_s=0).slope_mib_per_s)


class TestSteadyCpu:
    def test_steady_cpu_excludes_startup_and_exports(self) -> None:
        """Only CPU spent between samples inside the load window counts, per request done there."""
        # 2 CPU s of start-up, then 1 CPU s per 1000 requests over 10 s at 1000 req/s, then exports.
        samples = [(0.0, 0.0), (1.0, 2.0)] + [(1.0 + t, 2.0 + t) for t in range(1, 11)] + [(12.0, 20.0)]
        ends = [1.0 + i / 1000 for i in range(1, 10_001)]
        assert pytest.approx(1.0, rel=1e-3) == analysis.steady_cpu_per_1k(samples, ends, (1.0, 11.0))

    def test_steady_cpu_without_samples_inside_is_nan(self) -> None:
        """Fewer than two samples inside the load window: no figure."""
        assert math.isnan(analysis.steady_cpu_per_1k([(0.0, 1.0), (5.0, 2.0)], [1.0, 2.0], (1.0, 4.0)))
