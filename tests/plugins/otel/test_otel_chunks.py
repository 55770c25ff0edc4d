"""The chunk-gap histogram aiperf bins itself must export exactly what the SDK would."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from aiperf_otel import semconv as sc
from aiperf_otel.chunks import ChunkGapHistogram, with_metric
from aiperf_otel.sink import OtelSink
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from otel_fakes import Direct, drive, make_run, otel_config, request_done

ATTRIBUTES = {"gen_ai.operation.name": "chat", "aiperf.phase": "profile"}
# Nanosecond gaps that land exactly on bucket bounds, between them, below and above all.
EDGES = [1_000_000, 2_500_000, 10_000_000, 81_920_000_000, 1, 90_000_000_000, 7_300_000]


def _sdk_point(gaps_ns: list[int], delta: bool = False) -> object:
    temporality = {HistogramInstrument: AggregationTemporality.DELTA} if delta else None
    reader = InMemoryMetricReader(preferred_temporality=temporality)
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    histogram = provider.get_meter("t").create_histogram(
        "h", explicit_bucket_boundaries_advisory=list(sc.CHUNK_BUCKETS)
    )
    for gap in gaps_ns:
        histogram.record(gap / 1e9, ATTRIBUTES)
    data = reader.get_metrics_data()
    return data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]


def _ours(requests: list[list[int]], delta: bool = False) -> ChunkGapHistogram:
    histogram = ChunkGapHistogram(
        name="h", unit="s", description="", bounds=sc.CHUNK_BUCKETS, delta=delta
    )
    for gaps in requests:
        histogram.add(("profile", "m"), ATTRIBUTES, gaps)
    return histogram


def _summary(point: object) -> tuple[object, ...]:
    return (
        point.count,
        point.sum,
        list(point.bucket_counts),
        list(point.explicit_bounds),  # type: ignore[attr-defined]
        point.min,
        point.max,
        dict(point.attributes),  # type: ignore[attr-defined]
    )


class TestChunkGapHistogram:
    """Same buckets, count, sum, min, max and attributes as the SDK's explicit histogram."""

    def test_chunk_histogram_matches_sdk_on_bucket_edges(self) -> None:
        """Values on a bound go to the bucket that bound closes, as in the SDK."""
        metric = _ours([EDGES[:3], EDGES[3:]]).collect()
        assert metric is not None
        [point] = metric.data.data_points
        expected = _sdk_point(EDGES)
        assert _summary(expected) == _summary(point)

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.lists(st.integers(min_value=0, max_value=200_000_000_000), min_size=1, max_size=40),
            min_size=1,
            max_size=8,
        )
    )
    def test_chunk_histogram_matches_sdk(self, requests: list[list[int]]) -> None:
        """Any gaps, any split into requests: the same point as recording each in the SDK."""
        metric = _ours(requests).collect()
        assert metric is not None
        [point] = metric.data.data_points
        expected = _summary(_sdk_point([g for gaps in requests for g in gaps]))
        actual = _summary(point)
        assert (expected[0], expected[2], expected[3], expected[6]) == (
            actual[0],
            actual[2],
            actual[3],
            actual[6],
        )
        assert expected[1] == pytest.approx(actual[1], rel=1e-12, abs=1e-12)
        assert (expected[4], expected[5]) == (actual[4], actual[5])

    def test_chunk_histogram_cumulative_keeps_growing(self) -> None:
        """Cumulative: every collection reports everything since the start."""
        histogram = _ours([[10_000_000]])
        first = histogram.collect()
        histogram.add(("profile", "m"), ATTRIBUTES, [20_000_000, 30_000_000])
        second = histogram.collect()
        assert first is not None and second is not None
        assert AggregationTemporality.CUMULATIVE == second.data.aggregation_temporality
        assert [1, 3] == [m.data.data_points[0].count for m in (first, second)]
        assert (
            first.data.data_points[0].start_time_unix_nano
            == second.data.data_points[0].start_time_unix_nano
        )

    def test_chunk_histogram_delta_reports_each_interval(self) -> None:
        """Delta: each collection reports what came since the last; quiet series are left out."""
        histogram = _ours([[10_000_000]], delta=True)
        first = histogram.collect()
        assert histogram.collect() is None
        histogram.add(("profile", "m"), ATTRIBUTES, [20_000_000, 30_000_000])
        third = histogram.collect()
        assert first is not None and third is not None
        assert AggregationTemporality.DELTA == third.data.aggregation_temporality
        point = third.data.data_points[0]
        assert (2, pytest.approx(0.05), 0.02, 0.03) == (
            point.count,
            point.sum,
            point.min,
            point.max,
        )
        assert first.data.data_points[0].time_unix_nano <= point.start_time_unix_nano

    def test_chunk_histogram_series_per_attribute_set(self) -> None:
        """Each key is its own series with its own attributes."""
        histogram = ChunkGapHistogram(name="h", unit="s", description="", bounds=sc.CHUNK_BUCKETS)
        histogram.add("a", {"k": "a"}, [1_000_000])
        histogram.add("b", {"k": "b"}, [1_000_000, 2_000_000])
        histogram.add("a", {"k": "a"}, [])
        metric = histogram.collect()
        assert metric is not None
        assert {"a": 1, "b": 2} == {p.attributes["k"]: p.count for p in metric.data.data_points}


class TestWithMetric:
    """Our points join the SDK's export under the same resource and scope."""

    def test_with_metric_joins_existing_scope(self) -> None:
        """Into the aiperf scope of the SDK's data, beside the SDK's metrics."""
        resource = Resource.create({"service.name": "aiperf"})
        reader = InMemoryMetricReader()
        provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        provider.get_meter("aiperf", "1").create_counter("c").add(1)
        data = reader.get_metrics_data()
        merged = with_metric(
            data, _ours([[1_000_000]]).collect(), resource, InstrumentationScope("aiperf", "1")
        )
        assert merged is not None
        [rm] = merged.resource_metrics
        [sm] = rm.scope_metrics
        assert ["c", "h"] == [m.name for m in sm.metrics]

    def test_with_metric_builds_data_when_sdk_has_none(self) -> None:
        """Nothing from the SDK yet: the point goes out under our resource and scope."""
        resource = Resource.create({"service.name": "aiperf"})
        merged = with_metric(
            None, _ours([[1_000_000]]).collect(), resource, InstrumentationScope("aiperf", "1")
        )
        assert merged is not None
        [rm] = merged.resource_metrics
        assert (resource, "aiperf", ["h"]) == (
            rm.resource,
            rm.scope_metrics[0].scope.name,
            [m.name for m in rm.scope_metrics[0].metrics],
        )


async def test_sink_delta_temporality_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With delta temporality every export carries only what is new, and the totals still hold."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    direct = Direct()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    # The receiver-backed fake exporter takes the OTLP exporter's temporality preference.
    direct.metrics._preferred_temporality = OTLPMetricExporter()._preferred_temporality
    sink = OtelSink(
        config=otel_config(export_interval_s=0.05), make_exporters=direct, probe=lambda u, t: True
    )
    rng = random.Random(3)
    events = [request_done(i, gaps_ms=[rng.uniform(1, 30) for _ in range(20)]) for i in range(30)]
    await drive(sink, make_run(tmp_path), events)
    points = direct.receiver.points(sc.TIME_PER_OUTPUT_CHUNK)
    assert {"delta"} == {p.temporality for p in points}
    total = direct.receiver.histogram(sc.TIME_PER_OUTPUT_CHUNK)
    expected = sum(sum(e.metrics.inter_chunk_latency_ns) for e in events) / 1e9
    assert (600, pytest.approx(expected, rel=1e-9)) == (total.count, total.sum)
    assert 600 == sum(p.count or 0 for p in points)
