"""An OTLP/HTTP receiver on loopback for tests: decodes what a client exports.

::

    with OtlpReceiver() as collector:             # port chosen by the OS
        run_something(otel_url=collector.url)     # http://127.0.0.1:PORT
        collector.wait_for(lambda c: c.spans(), timeout=10)
        total = collector.histogram("gen_ai.client.operation.duration", where={"aiperf.phase": "profile"})
        assert total.count == 64
        points = collector.points("hw.power")      # every data point received, in order
        spans = collector.spans()                  # every span received
        headers = collector.requests("/v1/metrics")[0].headers

It answers ``POST /v1/metrics`` and ``POST /v1/traces`` (protobuf, gzip or not) with an empty
export response, and ``GET`` anything with 200 so that reachability probes succeed.
``ingest(path, body)`` decodes a body without any network, for unit tests.
``respond_with(status=503)`` makes it refuse exports (data is then not stored) and
``respond_with(delay_s=2)`` makes it slow; ``stop()`` makes it unreachable.
``OtlpReceiver(keep=False)`` only counts (``span_count``, ``point_count``): for long runs,
where keeping every decoded span would cost the test process more than the client under test. Runs in a thread of
the test process; ``stop()`` (or leaving the ``with`` block) closes the socket. Pass
``tls=ssl_context`` (a server-side context) to serve https.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import attrs
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "HistogramTotal",
    "MetricPoint",
    "OtlpReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "SpanEvent",
]

METRICS_PATH = "/v1/metrics"
TRACES_PATH = "/v1/traces"

_TEMPORALITY = {
    metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative",
    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA: "delta",
}
_SPAN_KIND = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_UNSET: "unset",
    trace_pb2.Status.STATUS_CODE_OK: "ok",
    trace_pb2.Status.STATUS_CODE_ERROR: "error",
}


# -- decoded values ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MetricPoint:
    """One data point of one metric, with everything needed to check it."""

    name: str
    unit: str
    description: str
    #: ``histogram``, ``sum`` or ``gauge``.
    kind: str
    #: ``cumulative`` or ``delta`` (histograms and sums); ``None`` for gauges.
    temporality: str | None
    monotonic: bool | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    start_time_unix_nano: int
    time_unix_nano: int
    #: gauges and sums.
    value: float | None = None
    #: histograms.
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()


@attrs.frozen(kw_only=True)
class HistogramTotal:
    """What a histogram adds up to over a run, over every series that matched."""

    count: int
    sum: float
    bucket_counts: tuple[int, ...]
    explicit_bounds: tuple[float, ...]
    #: how many series (distinct attribute sets) went into it.
    series: int


@attrs.frozen(kw_only=True)
class SpanEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@attrs.frozen(kw_only=True)
class ReceivedSpan:
    name: str
    #: ``client``, ``server``, ``internal``, ``producer``, ``consumer`` or ``unspecified``.
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    events: tuple[SpanEvent, ...]
    #: ``unset``, ``ok`` or ``error``.
    status: str
    status_message: str
    resource: dict[str, Any]
    scope: str

    @property
    def duration_ns(self) -> int:
        return self.end_time_unix_nano - self.start_time_unix_nano


@attrs.frozen(kw_only=True)
class ReceivedRequest:
    method: str
    path: str
    #: as received, in order (names keep their case).
    headers: tuple[tuple[str, str], ...]
    #: body size on the wire (before gunzip).
    body_bytes: int
    #: the status the receiver answered with.
    status: int

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


# -- protobuf -> plain values ----------------------------------------------------------------------


def _any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind is None:
        return None
    return getattr(value, kind)


def _attributes(items: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in items}


def _metric_points(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[MetricPoint]:
    out = []
    for rm in request.resource_metrics:
        resource = _attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.extend(_points_of(metric, resource, sm.scope.name))
    return out


def _points_of(
    metric: metrics_pb2.Metric, resource: dict[str, Any], scope: str
) -> list[MetricPoint]:
    kind = metric.WhichOneof("data")
    common = {
        "name": metric.name,
        "unit": metric.unit,
        "description": metric.description,
        "resource": resource,
        "scope": scope,
    }
    points = []
    if kind == "histogram":
        for p in metric.histogram.data_points:
            points.append(
                MetricPoint(
                    kind="histogram",
                    temporality=_TEMPORALITY.get(metric.histogram.aggregation_temporality),
                    monotonic=None,
                    attributes=_attributes(p.attributes),
                    start_time_unix_nano=p.start_time_unix_nano,
                    time_unix_nano=p.time_unix_nano,
                    count=p.count,
                    sum=p.sum,
                    min=p.min if p.HasField("min") else None,
                    max=p.max if p.HasField("max") else None,
                    bucket_counts=tuple(p.bucket_counts),
                    explicit_bounds=tuple(p.explicit_bounds),
                    **common,
                )
            )
    elif kind in ("sum", "gauge"):
        data = getattr(metric, kind)
        for p in data.data_points:
            number = p.WhichOneof("value")
            points.append(
                MetricPoint(
                    kind=kind,
                    temporality=_TEMPORALITY.get(data.aggregation_temporality)
                    if kind == "sum"
                    else None,
                    monotonic=data.is_monotonic if kind == "sum" else None,
                    attributes=_attributes(p.attributes),
                    start_time_unix_nano=p.start_time_unix_nano,
                    time_unix_nano=p.time_unix_nano,
                    value=float(getattr(p, number)) if number else None,
                    **common,
                )
            )
    return points


def _spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    out = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        kind=_SPAN_KIND.get(s.kind, "unspecified"),
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        start_time_unix_nano=s.start_time_unix_nano,
                        end_time_unix_nano=s.end_time_unix_nano,
                        attributes=_attributes(s.attributes),
                        events=tuple(
                            SpanEvent(
                                name=e.name,
                                time_unix_nano=e.time_unix_nano,
                                attributes=_attributes(e.attributes),
                            )
                            for e in s.events
                        ),
                        status=_STATUS.get(s.status.code, "unset"),
                        status_message=s.status.message,
                        resource=resource,
                        scope=ss.scope.name,
                    )
                )
    return out


def _matches(attributes: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    return not where or all(attributes.get(k) == v for k, v in where.items())


def _frozen(mapping: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, repr(v)) for k, v in mapping.items()))


# -- the server ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so that stop() really cuts clients off.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.receiver._record(self, 0, 200)
        self._answer(200, b"ok\n", "text/plain")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        status, delay = receiver._status, receiver._delay_s
        if delay:
            time.sleep(delay)
        path = self.path.split("?")[0]
        if path not in (METRICS_PATH, TRACES_PATH):
            status = 404
        if status == 200:
            try:
                receiver._store(path, _decompress(body, self.headers.get("Content-Encoding")))
            except Exception:  # noqa: BLE001 - a body we cannot decode is the client's bug: 400
                status = 400
        receiver._record(self, len(body), status)
        if status != 200:
            self._answer(status, b"", "text/plain")
            return
        response = (
            metrics_service_pb2.ExportMetricsServiceResponse()
            if path == METRICS_PATH
            else trace_service_pb2.ExportTraceServiceResponse()
        )
        self._answer(200, response.SerializeToString(), "application/x-protobuf")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OtlpReceiver


class OtlpReceiver:
    """An OTLP/HTTP collector stand-in on ``host`` (loopback by default), port chosen at start."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        keep: bool = True,
    ) -> None:
        self.host = host
        self.keep = keep
        #: spans and metric data points received in accepted exports (kept or not).
        self.span_count = 0
        self.point_count = 0
        self._port = port
        self._tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._points: list[MetricPoint] = []
        self._spans: list[ReceivedSpan] = []
        self._resources: list[dict[str, Any]] = []
        self._requests: list[ReceivedRequest] = []
        self._status = 200
        self._delay_s = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the OTLP receiver is already running")
        server = _Server((self.host, self._port), _Handler)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        server.receiver = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"otlp-receiver-{self._port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the socket (clients then get 'connection refused')."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL, as a user passes it to ``--otel-url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self._port}"

    @property
    def metrics_url(self) -> str:
        return self.url + METRICS_PATH

    @property
    def traces_url(self) -> str:
        return self.url + TRACES_PATH

    def respond_with(self, *, status: int = 200, delay_s: float = 0.0) -> None:
        """Answer later exports with ``status`` (data is kept only on 200), after ``delay_s``."""
        self._status = status
        self._delay_s = delay_s

    def clear(self) -> None:
        with self._lock:
            self._points.clear()
            self._spans.clear()
            self._resources.clear()
            self._requests.clear()
            self.span_count = self.point_count = 0

    def ingest(self, path: str, body: bytes) -> None:
        """Decode and keep an export body as if it had been POSTed to ``path`` (no network:
        for unit tests that plug an encoding exporter straight into the receiver)."""
        if path not in (METRICS_PATH, TRACES_PATH):
            raise ValueError(f"expected {METRICS_PATH} or {TRACES_PATH} (got {path!r})")
        self._store(path, body)

    # -- what arrived ------------------------------------------------------------------------

    def points(
        self, name: str | None = None, where: Mapping[str, Any] | None = None
    ) -> list[MetricPoint]:
        """Every metric data point received (every export of it), oldest first."""
        with self._lock:
            found = list(self._points)
        return [
            p for p in found if (name is None or p.name == name) and _matches(p.attributes, where)
        ]

    def metric_names(self) -> set[str]:
        with self._lock:
            return {p.name for p in self._points}

    def latest(self, name: str, where: Mapping[str, Any] | None = None) -> list[MetricPoint]:
        """The newest point of each series (resource + attribute set) of a metric."""
        newest: dict[tuple[Any, ...], MetricPoint] = {}
        for p in self.points(name, where):
            key = (_frozen(p.resource), _frozen(p.attributes))
            if key not in newest or p.time_unix_nano >= newest[key].time_unix_nano:
                newest[key] = p
        return list(newest.values())

    def histogram(self, name: str, where: Mapping[str, Any] | None = None) -> HistogramTotal:
        """The run's totals of a histogram over the matching series.

        Cumulative points: the newest of each series; delta points: all of them. Raises
        ``LookupError`` when nothing matched and ``ValueError`` when bucket bounds disagree.
        """
        points = self.points(name, where)
        if not points:
            raise LookupError(f"no {name} points received (where={dict(where or {})})")
        if any(p.kind != "histogram" for p in points):
            raise ValueError(f"{name} is not a histogram")
        chosen = [p for p in points if p.temporality == "delta"]
        chosen += [p for p in self.latest(name, where) if p.temporality != "delta"]
        bounds = {p.explicit_bounds for p in chosen}
        if len(bounds) != 1:
            raise ValueError(f"{name}: series have different bucket bounds: {sorted(bounds)}")
        width = len(chosen[0].bucket_counts)
        buckets = [0] * width
        for p in chosen:
            for i, c in enumerate(p.bucket_counts):
                buckets[i] += c
        return HistogramTotal(
            count=sum(p.count or 0 for p in chosen),
            sum=sum(p.sum or 0.0 for p in chosen),
            bucket_counts=tuple(buckets),
            explicit_bounds=chosen[0].explicit_bounds,
            series=len({_frozen(p.attributes) for p in chosen}),
        )

    def spans(
        self, name: str | None = None, where: Mapping[str, Any] | None = None
    ) -> list[ReceivedSpan]:
        with self._lock:
            found = list(self._spans)
        return [
            s for s in found if (name is None or s.name == name) and _matches(s.attributes, where)
        ]

    def resources(self) -> list[dict[str, Any]]:
        """The resource attributes of every resource block received (metrics and traces)."""
        with self._lock:
            return list(self._resources)

    def requests(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            found = list(self._requests)
        return [r for r in found if path is None or r.path == path]

    def wait_for(self, predicate: Callable[[OtlpReceiver], Any], timeout: float = 10.0) -> bool:
        """Poll until ``predicate(self)`` is truthy; ``False`` when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # -- called from the handler threads -----------------------------------------------------

    def _store(self, path: str, body: bytes) -> None:
        if not self.keep:
            self._count(path, body)
            return
        if path == METRICS_PATH:
            metrics_request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            points = _metric_points(metrics_request)
            resources = [
                _attributes(rm.resource.attributes) for rm in metrics_request.resource_metrics
            ]
            with self._lock:
                self._points.extend(points)
                self._resources.extend(resources)
                self.point_count += len(points)
        else:
            trace_request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            spans = _spans(trace_request)
            resources = [_attributes(rs.resource.attributes) for rs in trace_request.resource_spans]
            with self._lock:
                self._spans.extend(spans)
                self._resources.extend(resources)
                self.span_count += len(spans)

    def _count(self, path: str, body: bytes) -> None:
        if path == METRICS_PATH:
            metrics_request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            points = sum(
                len(getattr(metric, metric.WhichOneof("data") or "gauge").data_points)
                for rm in metrics_request.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
            )
            with self._lock:
                self.point_count += points
        else:
            trace_request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            spans = sum(len(ss.spans) for rs in trace_request.resource_spans for ss in rs.scope_spans)
            with self._lock:
                self.span_count += spans

    def _record(self, handler: BaseHTTPRequestHandler, body_bytes: int, status: int) -> None:
        request = ReceivedRequest(
            method=handler.command,
            path=handler.path.split("?")[0],
            headers=tuple(handler.headers.items()),
            body_bytes=body_bytes,
            status=status,
        )
        with self._lock:
            self._requests.append(request)
