"""Fakes for the aiperf-otel tests: a run context, request events, and exporters that hand
what the SDK exports straight to an :class:`OtlpReceiver` (no network)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aiperf import (
    ErrorInfo,
    LiveEvent,
    Phase,
    ProfileConfig,
    RequestDone,
    RequestMetrics,
    RequestRecord,
    RunContext,
    RunStatus,
    testing,
)
from aiperf_otel.config import OtelConfig, parse_otel_url
from aiperf_otel.sink import Exporters, OtelSink
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from support.otlp_receiver import OtlpReceiver

ANCHOR_WALL_NS = 1_764_290_000_000_000_000
ANCHOR_PERF_NS = 5_000_000_000
MS = 1_000_000


class ReceiverMetricExporter(MetricExporter):
    """Encodes like the OTLP exporter and hands the bytes to a receiver; can be told to fail."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        super().__init__()
        self.receiver = receiver
        self.fail = False
        self.calls = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.calls += 1
        if self.fail:
            return MetricExportResult.FAILURE
        self.receiver.ingest("/v1/metrics", encode_metrics(metrics_data).SerializeToString())
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class ReceiverSpanExporter(SpanExporter):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver
        self.fail = False
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.fail:
            return SpanExportResult.FAILURE
        self.receiver.ingest("/v1/traces", encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


class Direct:
    """The exporters of one sink, wired to one in-process receiver."""

    def __init__(self) -> None:
        self.receiver = OtlpReceiver()
        self.metrics = ReceiverMetricExporter(self.receiver)
        self.spans = ReceiverSpanExporter(self.receiver)

    def __call__(self, config: OtelConfig) -> Exporters:
        return Exporters(metrics=self.metrics, spans=self.spans if config.stream.timing else None)


def otel_config(**overrides: Any) -> OtelConfig:
    values: dict[str, Any] = {"endpoints": parse_otel_url("localhost"), "export_interval_s": 60.0}
    values.update(overrides)
    return OtelConfig(**values)


def make_run(tmp_path: Path, **overrides: Any) -> RunContext:
    """The kit's run (address, port and load setting from the config) in its measured phase."""
    config = ProfileConfig(
        model=overrides.pop("model", "my-model"),
        url=overrides.pop("url", "http://127.0.0.1:8000"),
        streaming=overrides.pop("streaming", True),
        api_key=overrides.pop("api_key", None),
        concurrency=4,
    )
    values: dict[str, Any] = {
        "benchmark_id": "bench-0001",
        "provider": "_OTHER",
        "anchor_wall_ns": ANCHOR_WALL_NS,
        "anchor_perf_ns": ANCHOR_PERF_NS,
        "phase": Phase.PROFILE,
        **overrides,
    }
    return testing.make_run(tmp_path, config=config, **values)


def request_done(
    index: int,
    *,
    start_ms: float = 0.0,
    ttft_ms: float = 50.0,
    gaps_ms: Sequence[float] = (10.0, 10.0, 10.0),
    isl: int = 128,
    osl: int | None = None,
    phase: Phase = Phase.PROFILE,
    error: ErrorInfo | None = None,
    response_model: str | None = "my-model",
    max_tokens: int | None = 128,
) -> RequestDone:
    """A finished streamed request whose times are ``start_ms`` after the run's perf anchor."""
    start = ANCHOR_PERF_NS + int(start_ms * MS)
    chunks: list[int] = []
    if error is None:
        t = start + int(ttft_ms * MS)
        chunks.append(t)
        for gap in gaps_ms:
            t += int(gap * MS)
            chunks.append(t)
    end = chunks[-1] if chunks else start + int(ttft_ms * MS)
    record = RequestRecord(
        index=index,
        phase=phase,
        start_ns=start,
        response_ns=start + MS,
        end_ns=end,
        chunk_ns=chunks,
        error=error,
        response_model=response_model,
        input_tokens=isl,
        max_tokens=max_tokens,
        status_code=200 if error is None else int(error.type) if error.type.isdigit() else None,
    )
    values: dict[str, float] = {
        "input_sequence_length": float(isl),
        "request_latency": float(end - start),
    }
    if error is None:
        values["output_sequence_length"] = float(osl if osl is not None else len(chunks))
        values["time_to_first_token"] = float(chunks[0] - start)
    gaps = tuple(b - a for a, b in itertools.pairwise(chunks))
    metrics = RequestMetrics(
        index=index,
        phase=phase,
        ok=error is None,
        error=error,
        start_ns=start,
        end_ns=end,
        values=values,
        inter_chunk_latency_ns=gaps,
        response_model=response_model,
    )
    return RequestDone(metrics=metrics, record=record)


async def drive(
    sink: OtelSink,
    run: RunContext,
    events: Iterable[LiveEvent],
    status: RunStatus = RunStatus.FINISHED,
) -> None:
    """What the core does with a live sink: open, feed through a bounded channel, close."""
    await testing.drive_sink(sink, events, run=run, status=status)
