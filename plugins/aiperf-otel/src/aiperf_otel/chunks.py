"""``gen_ai.client.operation.time_per_output_chunk``, binned here rather than value by value in
the SDK.

A streamed answer brings one gap per chunk: 127 for a 128-token answer. Each SDK ``record``
copies and hashes the attribute set (~8 us with aiperf's ten attributes), which makes about
1 ms of event-loop time per request; binning a request's gaps at once with numpy costs ~20 us.
The exported histogram is the one the SDK would produce: explicit buckets (upper bound
inclusive), count, sum, min and max per attribute set, in the temporality the exporter asks for.
The points are added to the SDK's own export, under the same resource and scope.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
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
    buckets: np.ndarray
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, buckets: np.ndarray, count: int, total: float, low: float, high: float) -> None:
        self.buckets += buckets
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
class ChunkGapHistogram:
    """One histogram instrument, fed a whole request's gaps at a time (from the trio thread)
    and collected from the SDK's export thread."""

    name: str
    unit: str
    description: str
    bounds: Sequence[float]
    delta: bool = False
    _start_ns: int = attrs.field(factory=time.time_ns)
    _bounds: np.ndarray = attrs.field(init=False)
    _series: dict[Hashable, _Series] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def __attrs_post_init__(self) -> None:
        self._bounds = np.asarray(self.bounds, dtype=np.float64)

    def _empty(self) -> _Tally:
        return _Tally(buckets=np.zeros(len(self._bounds) + 1, dtype=np.int64))

    def add(self, key: Hashable, attributes: Mapping[str, Any], gaps_ns: Sequence[int]) -> None:
        """Record every gap of one request (nanoseconds) under one attribute set."""
        if not gaps_ns:
            return
        seconds = np.asarray(gaps_ns, dtype=np.float64) / 1e9
        # side="left": a value equal to a bound belongs to the bucket that bound closes.
        buckets = np.bincount(
            np.searchsorted(self._bounds, seconds, side="left"), minlength=len(self._bounds) + 1
        )
        stats = (
            buckets,
            len(seconds),
            float(seconds.sum()),
            float(seconds.min()),
            float(seconds.max()),
        )
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = _Series(
                    attributes=dict(attributes), total=self._empty(), recent=self._empty()
                )
                self._series[key] = series
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
                        bucket_counts=[int(c) for c in tally.buckets],
                        explicit_bounds=[float(b) for b in self._bounds],
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
