"""Statistics: exact percentiles, population std, run metrics, goodput, bounded chunk gaps."""

from __future__ import annotations

import numpy as np
import pytest
from aiperf._metrics import METRICS, MetricSpec
from aiperf._stats import Aggregator, Reservoir, describe
from aiperf._types import ErrorInfo, Phase, RequestMetrics

MS = 1_000_000


def metrics(i: int, *, start: int, end: int, phase: Phase = Phase.PROFILE, error: ErrorInfo | None = None, **values: float) -> RequestMetrics:
    return RequestMetrics(
        index=i, phase=phase, ok=error is None, error=error, start_ns=start, end_ns=end,
        values=dict(values), inter_chunk_latency_ns=(),
    )


class TestDescribe:
    def test_describe_matches_numpy_linear_percentiles(self) -> None:
        """Percentiles interpolate linearly (numpy's default) and std is the population one."""
        values = [1.0, 2.0, 3.0, 4.0, 10.0]
        stats = describe("x", "X", "ms", values)
        assert np.percentile(values, 90) == stats.percentiles["p90"]
        assert 7.6 == pytest.approx(stats.percentiles["p90"])
        assert np.std(values) == pytest.approx(stats.std)
        assert (4.0, 1.0, 10.0, 5) == (stats.avg, stats.min, stats.max, stats.count)

    def test_describe_scales_to_display_unit(self) -> None:
        """Base nanoseconds become milliseconds."""
        assert 50.0 == describe("t", "T", "ms", [50 * MS], 1e-6).avg


class TestAggregator:
    def test_aggregator_run_metrics(self) -> None:
        """Duration spans first start to last end; throughputs divide by it; errors counted."""
        agg = Aggregator()
        agg.add(metrics(0, start=0, end=1_000 * MS, output_sequence_length=10, input_sequence_length=5))
        agg.add(metrics(1, start=500 * MS, end=2_000 * MS, output_sequence_length=30, input_sequence_length=5))
        agg.add(metrics(2, start=600 * MS, end=700 * MS, error=ErrorInfo(type="500", message="boom")))
        run = agg.run_metrics()
        assert 2.0 == run["benchmark_duration"].avg
        assert 2 == run["request_count"].avg
        assert 1 == run["error_request_count"].avg
        assert pytest.approx(100 / 3) == run["request_error_rate"].avg
        assert 1.0 == run["request_throughput"].avg
        assert 20.0 == run["output_token_throughput"].avg
        assert 25.0 == run["total_token_throughput"].avg
        assert [("500", 1, "boom")] == [(e.type, e.count, e.first_message) for e in agg.error_summary()]

    def test_aggregator_ignores_warmup(self) -> None:
        """Warm-up requests never reach the statistics."""
        agg = Aggregator()
        agg.add(metrics(0, start=0, end=10, phase=Phase.WARMUP, request_latency=10))
        assert {} == agg.request_metrics()
        assert 0 == agg.run_metrics()["request_count"].avg

    def test_aggregator_goodput_counts_requests_meeting_every_slo(self) -> None:
        """Goodput: only requests under every bound (display units) count."""
        agg = Aggregator(goodput={"time_to_first_token": 100.0, "inter_token_latency": 10.0})
        agg.add(metrics(0, start=0, end=1_000 * MS, time_to_first_token=50 * MS, inter_token_latency=5 * MS))
        agg.add(metrics(1, start=0, end=1_000 * MS, time_to_first_token=150 * MS, inter_token_latency=5 * MS))
        agg.add(metrics(2, start=0, end=1_000 * MS, time_to_first_token=50 * MS, inter_token_latency=15 * MS))
        assert 1.0 == agg.run_metrics()["goodput"].avg

    def test_reservoir_bounds_memory_and_keeps_distribution(self) -> None:
        """Past the cap the reservoir holds exactly cap values, spread over all seen."""
        res = Reservoir(cap=1000)
        res.extend(range(100_000))
        assert 1000 == len(res.values)
        assert 100_000 == res.seen
        assert 40_000 < float(np.median(res.values)) < 60_000


#: a plugin's metrics: one per request (bytes shown as KiB), and run summaries of one tag each.
PLUGIN_SPECS = {
    **METRICS,
    "cache_bytes": MetricSpec("cache_bytes", "Cache Bytes", "KiB", 1 / 1024, "request"),
    **{
        f"hits_{how}": MetricSpec(f"hits_{how}", f"Hits {how}", "hits", kind="run", summary=how)
        for how in ("sum", "avg", "min", "max", "rate")
    },
}


class TestPluginMetrics:
    def _aggregated(self) -> Aggregator:
        agg = Aggregator(specs=PLUGIN_SPECS)
        for i, (kib, hits) in enumerate([(1, 2.0), (2, 4.0), (3, 9.0), (4, 1.0)]):
            values = {f"hits_{how}": hits for how in ("sum", "avg", "min", "max", "rate")}
            agg.add(metrics(i, start=0, end=2_000 * MS, cache_bytes=kib * 1024, request_latency=MS, **values))
        agg.add(metrics(9, start=0, end=MS, error=ErrorInfo(type="500", message="x"), cache_bytes=1e9))
        return agg

    def test_registered_request_metric_is_a_distribution_in_display_units(self) -> None:
        stats = self._aggregated().request_metrics()["cache_bytes"]
        assert ("Cache Bytes", "KiB", 4) == (stats.header, stats.unit, stats.count)
        assert (2.5, 1.0, 4.0) == (stats.avg, stats.min, stats.max)
        assert np.percentile([1, 2, 3, 4], 90) == pytest.approx(stats.percentiles["p90"])

    def test_registered_run_metrics_reduce_the_per_request_values(self) -> None:
        """Failed requests are left out, as for the core's metrics; rate is per second of the
        benchmark duration (2 s here)."""
        run = self._aggregated().run_metrics()
        assert {"sum": 16.0, "avg": 4.0, "min": 1.0, "max": 9.0, "rate": 8.0} == {
            how: run[f"hits_{how}"].avg for how in ("sum", "avg", "min", "max", "rate")
        }
        assert ("Hits sum", "hits", 1) == (run["hits_sum"].header, run["hits_sum"].unit, run["hits_sum"].count)

    def test_run_metrics_are_not_distributions(self) -> None:
        assert not {tag for tag in self._aggregated().request_metrics() if tag.startswith("hits_")}

    def test_unregistered_values_are_not_summarised(self) -> None:
        """Without the plugin's specs (the core's table alone), its values are not shown."""
        agg = Aggregator()
        agg.add(metrics(0, start=0, end=MS, cache_bytes=1024.0, request_latency=MS))
        assert ["request_latency"] == list(agg.request_metrics())

    def test_metric_not_measured_is_left_out(self) -> None:
        agg = Aggregator(specs=PLUGIN_SPECS)
        agg.add(metrics(0, start=0, end=MS, request_latency=MS))
        assert "hits_sum" not in agg.run_metrics()
        assert "cache_bytes" not in agg.request_metrics()
