"""The GenAI histograms, binned here rather than value by value in the SDK.

Each SDK ``record`` cleans, copies and hashes the attribute set (~8 us with aiperf's ten
attributes). A streamed answer brings one ``time_per_output_chunk`` gap per chunk (127 for a
128-token answer), which made about 1 ms of event-loop time per request; three other values
of a request (time to first chunk, input and output tokens) cost another 50 us. In
the process that also receives every finished request from the load processes, that was most
of its time per request, and where it shares the CPUs with the load, it fell behind and the
run's end waited for it. Binning with ``bisect`` costs about 0.3 us a value and a lock per
request. (numpy did it in ~20 us a request where nothing else ran, but releases the interpreter
lock in each call: next to the SDK's export threads, taking it back cost ~100 us a request.)

The exported histograms are the ones the SDK would produce: explicit buckets (upper bound
inclusive), count, sum, min and max per attribute set, in the temporality the exporter asks
for. The points are added to the SDK's own export, under the same resource and scope.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope


@attrs.define
class _Tally:
    #: plain lists and Python arithmetic: numpy releases the interpreter lock in its calls, and
    #: in the process that also runs the SDK's export threads, taking it back cost ~100 us a call.
    buckets: list[int]
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, buckets: Sequence[int], count: int, total: float, low: float, high: float) -> None:
        mine = self.buckets
        for index, n in enumerate(buckets):
            if n:
                mine[index] += n
        self.count += count
        self.sum += total
        self.min = min(self.min, low)
        self.max = max(self.max, high)


@attrs.define
class _Series:
    attributes: Mapping[str, Any]
    #: everything since the start (cumulative temporality).
    total: _Tally
    #: since the previous collection (delta temporality).
    recent: _Tally


@attrs.define
class BinnedHistogram:
    """One histogram instrument, fed from the trio thread and collected from the SDK's
    export thread. Values are in the instrument's unit."""

    name: str
    unit: str
    description: str
    bounds: Sequence[float]
    delta: bool = False
    _start_ns: int = attrs.field(factory=time.time_ns)
    _bound_list: list[float] = attrs.field(init=False)
    _series: dict[Hashable, _Series] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._bound_list = [float(b) for b in self.bounds]

    def _empty(self) -> _Tally:
        return _Tally(buckets=[0] * (len(self._bound_list) + 1))

    def _series_of(self, key: Hashable, attributes: Mapping[str, Any]) -> _Series:
        series = self._series.get(key)
        if series is None:
            series = _Series(attributes=dict(attributes), total=self._empty(), recent=self._empty())
            self._series[key] = series
        return series

    def record(self, key: Hashable, attributes: Mapping[str, Any], value: float) -> None:
        """One value under the attribute set ``attributes`` (``key`` names that set)."""
        # bisect_left: a value equal to a bound belongs to the bucket that bound closes.
        index = bisect.bisect_left(self._bound_list, value)
        with self._lock:
            series = self._series_of(key, attributes)
            for tally in (series.total, series.recent):
                tally.buckets[index] += 1
                tally.count += 1
                tally.sum += value
                if value < tally.min:
                    tally.min = value
                if value > tally.max:
                    tally.max = value

    def record_many(self, key: Hashable, attributes: Mapping[str, Any], values: Sequence[float]) -> None:
        """Many values under one attribute set at once."""
        if not values:
            return
        buckets = [0] * (len(self._bound_list) + 1)
        find, bounds = bisect.bisect_left, self._bound_list
        for value in values:
            buckets[find(bounds, value)] += 1
        stats = (buckets, len(values), sum(values), min(values), max(values))
        with self._lock:
            series = self._series_of(key, attributes)
            series.total.add(*stats)
            series.recent.add(*stats)

    def collect(self) -> Metric | None:
        """The points to export now; with delta temporality, what came since the last call."""
        now = time.time_ns()
        points = []
        with self._lock:
            for series in self._series.values():
                tally = series.recent if self.delta else series.total
                if tally.count == 0:
                    continue
                points.append(
                    HistogramDataPoint(
                        attributes=dict(series.attributes),
                        start_time_unix_nano=self._start_ns,
                        time_unix_nano=now,
                        count=tally.count,
                        sum=tally.sum,
                        bucket_counts=list(tally.buckets),
                        explicit_bounds=list(self._bound_list),
                        min=tally.min,
                        max=tally.max,
                    )
                )
                series.recent = self._empty()
            if self.delta:
                self._start_ns = now
        if not points:
            return None
        temporality = (
            AggregationTemporality.DELTA if self.delta else AggregationTemporality.CUMULATIVE
        )
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(data_points=points, aggregation_temporality=temporality),
        )


@attrs.define
class ChunkGapHistogram(BinnedHistogram):
    """``time_per_output_chunk``: a whole request's gaps (nanoseconds) at a time, in seconds."""

    def add(self, key: Hashable, attributes: Mapping[str, Any], gaps_ns: Sequence[int]) -> None:
        """Record every gap of one request (nanoseconds) under one attribute set."""
        if gaps_ns:
            self.record_many(key, attributes, [gap / 1e9 for gap in gaps_ns])


def with_metrics(
    data: MetricsData | None,
    metrics: Sequence[Metric | None],
    resource: Resource,
    scope: InstrumentationScope,
) -> MetricsData | None:
    """``data`` with each of ``metrics`` (None: nothing to add) added under ``scope``."""
    for metric in metrics:
        data = with_metric(data, metric, resource, scope)
    return data


def with_metric(
    data: MetricsData | None, metric: Metric | None, resource: Resource, scope: InstrumentationScope
) -> MetricsData | None:
    """``data`` with ``metric`` added under ``scope`` of ``resource`` (created when missing)."""
    if metric is None:
        return data
    resource_metrics = list(data.resource_metrics) if data is not None else []
    for i, rm in enumerate(resource_metrics):
        if rm.resource is not resource and rm.resource != resource:
            continue
        scopes = list(rm.scope_metrics)
        for j, sm in enumerate(scopes):
            if sm.scope.name == scope.name:
                scopes[j] = ScopeMetrics(
                    scope=sm.scope, metrics=[*sm.metrics, metric], schema_url=sm.schema_url
                )
                break
        else:
            scopes.append(ScopeMetrics(scope=scope, metrics=[metric], schema_url=""))
        resource_metrics[i] = ResourceMetrics(
            resource=rm.resource, scope_metrics=scopes, schema_url=rm.schema_url
        )
        break
    else:
        resource_metrics.append(
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=scope, metrics=[metric], schema_url="")],
                schema_url="",
            )
        )
    return MetricsData(resource_metrics=resource_metrics)
