"""Exporter wrappers that count what reached the collector.

The OTLP exporters never raise: a failed export is a log line on the SDK's logger and the
flush still returns ``True``. To tell the user what was lost, every export result is counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


@attrs.define
class ExportTally:
    """Export calls and the items they carried; updated from the SDK's export threads."""

    exports: int = 0
    failed: int = 0
    items_delivered: int = 0
    items_failed: int = 0
    last_failed: bool = False
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def add(self, ok: bool, items: int) -> None:
        with self._lock:
            self.exports += 1
            self.last_failed = not ok
            if ok:
                self.items_delivered += items
            else:
                self.failed += 1
                self.items_failed += items


@attrs.define
class _FailFast:
    """Once the run is over, a collector that just failed is not retried batch after batch:
    each try can block for the exporter's whole timeout, and the user is waiting for exit."""

    tally: ExportTally
    enabled: bool = False

    def skip(self) -> bool:
        return self.enabled and self.tally.last_failed


class CountingMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter) -> None:
        # The periodic reader asks its exporter for these; pass the inner exporter's through so
        # that OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE keeps working.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.tally = ExportTally()
        self.fail_fast = _FailFast(self.tally)
        #: adds aiperf's own points to each export (runs in the export thread).
        self.augment: Callable[[MetricsData], MetricsData] | None = None

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.augment is not None:
            metrics_data = self.augment(metrics_data)
        if self.fail_fast.skip():
            result = MetricExportResult.FAILURE
        else:
            try:
                result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            except Exception:  # noqa: BLE001 - a broken exporter is a failed export, not a crash
                result = MetricExportResult.FAILURE
        self.tally.add(result is MetricExportResult.SUCCESS, count_points(metrics_data))
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.tally = ExportTally()
        self.fail_fast = _FailFast(self.tally)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.fail_fast.skip():
            result = SpanExportResult.FAILURE
        else:
            try:
                result = self.inner.export(spans)
            except Exception:  # noqa: BLE001
                result = SpanExportResult.FAILURE
        self.tally.add(result is SpanExportResult.SUCCESS, len(spans))
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


def count_points(metrics_data: MetricsData | None) -> int:
    if metrics_data is None:
        return 0
    return sum(
        len(metric.data.data_points)
        for resource in metrics_data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
