"""The test OTLP receiver, checked against the real OTLP/HTTP exporters on loopback."""

from __future__ import annotations

import socket
import ssl
import tempfile

import httpx
import pytest
import trustme
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration


def _metrics(delta: bool = False) -> tuple[MeterProvider, InMemoryMetricReader]:
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    temporality = {Histogram: AggregationTemporality.DELTA} if delta else None
    reader = InMemoryMetricReader(preferred_temporality=temporality)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "receiver-test"}),
        metric_readers=[reader],
        shutdown_on_exit=False,
    )
    return provider, reader


class TestReceiver:
    """What an exporter sends is what the receiver reports."""

    def test_receiver_decodes_histograms_gauges_and_sums(self) -> None:
        """Points carry name, unit, kind, attributes, buckets, counts, sums and the resource."""
        provider, reader = _metrics()
        meter = provider.get_meter("t")
        histogram = meter.create_histogram(
            "h", unit="s", explicit_bucket_boundaries_advisory=[1.0, 2.0]
        )
        counter = meter.create_counter("c", unit="{x}")
        histogram.record(0.5, {"k": "a"})
        histogram.record(1.5, {"k": "a"})
        histogram.record(3.0, {"k": "b"})
        counter.add(7, {"k": "a"})
        with OtlpReceiver() as receiver:
            exporter = OTLPMetricExporter(endpoint=receiver.metrics_url)
            assert MetricExportResult.SUCCESS == exporter.export(reader.get_metrics_data())
            exporter.shutdown()
        points = {(p.name, p.attributes["k"]): p for p in receiver.points()}
        a = points[("h", "a")]
        assert ("histogram", "s", "cumulative", 2, 2.0, (1, 1, 0), (1.0, 2.0)) == (
            a.kind,
            a.unit,
            a.temporality,
            a.count,
            a.sum,
            a.bucket_counts,
            a.explicit_bounds,
        )
        c = points[("c", "a")]
        assert ("sum", "{x}", True, 7.0) == (c.kind, c.unit, c.monotonic, c.value)
        assert "receiver-test" == a.resource["service.name"]
        total = receiver.histogram("h")
        assert (3, 5.0, (1, 1, 1), 2) == (total.count, total.sum, total.bucket_counts, total.series)

    def test_receiver_histogram_totals_by_temporality(self) -> None:
        """Cumulative exports count once (newest point); delta exports add up."""
        for delta in (False, True):
            provider, reader = _metrics(delta)
            histogram = provider.get_meter("t").create_histogram("h")
            with OtlpReceiver() as receiver:
                exporter = OTLPMetricExporter(endpoint=receiver.metrics_url)
                for value in (1.0, 2.0, 4.0):
                    histogram.record(value)
                    exporter.export(reader.get_metrics_data())
                exporter.shutdown()
            total = receiver.histogram("h")
            assert (3, 7.0, 3) == (total.count, total.sum, len(receiver.points("h"))), delta

    def test_receiver_decodes_spans_and_headers(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Spans keep kind, times, attributes, events and status; raw headers are kept."""
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=infra")
        with OtlpReceiver() as receiver:
            exporter = OTLPSpanExporter(endpoint=receiver.traces_url, compression=Compression.Gzip)
            provider = TracerProvider(shutdown_on_exit=False)
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            span = provider.get_tracer("t").start_span(
                "chat m", kind=SpanKind.CLIENT, start_time=1_000, attributes={"n": 3}
            )
            span.add_event("first", {"x": 1.5}, timestamp=1_500)
            span.set_status(StatusCode.ERROR, "boom")
            span.end(end_time=2_000)
            provider.shutdown()
        [received] = receiver.spans()
        assert ("chat m", "client", 1_000, 2_000, 1_000, {"n": 3}, "error", "boom") == (
            received.name,
            received.kind,
            received.start_time_unix_nano,
            received.end_time_unix_nano,
            received.duration_ns,
            received.attributes,
            received.status,
            received.status_message,
        )
        assert [("first", 1_500, {"x": 1.5})] == [
            (e.name, e.time_unix_nano, e.attributes) for e in received.events
        ]
        [request] = receiver.requests("/v1/traces")
        assert ("POST", "infra", "gzip", 200) == (
            request.method,
            request.header("X-Team"),
            request.header("content-encoding"),
            request.status,
        )

    def test_receiver_refuses_when_told(self) -> None:
        """respond_with(status=...) fails exports, and refused data is not kept."""
        provider, reader = _metrics()
        provider.get_meter("t").create_counter("c").add(1)
        with OtlpReceiver() as receiver:
            receiver.respond_with(status=400)
            exporter = OTLPMetricExporter(endpoint=receiver.metrics_url, timeout=2)
            assert MetricExportResult.FAILURE == exporter.export(reader.get_metrics_data())
            exporter.shutdown()
        assert ([], [400]) == (receiver.points(), [r.status for r in receiver.requests()])

    def test_receiver_stop_refuses_connections(self) -> None:
        """After stop() nothing listens on the port."""
        receiver = OtlpReceiver()
        receiver.start()
        port = receiver.port
        receiver.stop()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        assert not receiver.running

    def test_receiver_answers_get_for_probes(self) -> None:
        """GET / answers 200, as `curl -sf http://localhost:4318/` expects of a collector."""
        with OtlpReceiver() as receiver:
            assert 200 == httpx.get(receiver.url + "/", timeout=5).status_code

    def test_receiver_wait_for(self) -> None:
        """wait_for returns False when the predicate never holds."""
        with OtlpReceiver() as receiver:
            assert receiver.wait_for(lambda r: r.running, timeout=1)
            assert not receiver.wait_for(lambda r: r.spans(), timeout=0.05)

    def test_receiver_serves_https(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a TLS context it serves https; an exporter trusting the CA gets through."""
        # requests lets these override the exporter's own CA file.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        with tempfile.NamedTemporaryFile(suffix=".pem") as ca_file:
            ca.cert_pem.write_to_path(ca_file.name)
            with OtlpReceiver(tls=context) as receiver:
                assert receiver.url.startswith("https://127.0.0.1:")
                exporter = OTLPSpanExporter(
                    endpoint=receiver.traces_url, certificate_file=ca_file.name
                )
                provider = TracerProvider(shutdown_on_exit=False)
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                provider.get_tracer("t").start_span("s").end()
                provider.shutdown()
        assert ["s"] == [s.name for s in receiver.spans()]


class TestProbe:
    """The start-up probe: anything answering HTTP is reachable; a closed port is not."""

    def test_probe_collector_reachable_and_not(self) -> None:
        """True against a listening receiver, False once it has stopped."""
        from aiperf_otel.probe import probe_collector

        receiver = OtlpReceiver()
        receiver.start()
        try:
            assert probe_collector(receiver.url, 2.0)
        finally:
            receiver.stop()
        assert not probe_collector(receiver.url, 2.0)
