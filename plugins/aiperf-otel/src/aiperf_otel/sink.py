"""The live OTel sink: GenAI client metrics, one span per request, run progress and GPU
readings, pushed over OTLP/HTTP while the benchmark runs.

Recording happens on the trio thread and is cheap: a few SDK ``record`` calls and one span per
request (~75 us together), and a request's chunk gaps binned at once (chunks.py). Encoding and
sending happen in the SDK's own threads. Nothing here waits on the network while requests are
being measured; the start-up probe and the final flush are bounded and run off the trio thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import attrs
import requests
import structlog
import trio
from aiperf import (
    METRICS,
    HardwareSample,
    LiveEvent,
    MetricSpec,
    Progress,
    RequestDone,
    RunContext,
    RunStatus,
    ServerMetricSample,
    scrub_secrets,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from aiperf_otel import semconv as sc
from aiperf_otel.chunks import BinnedHistogram, ChunkGapHistogram, with_metrics
from aiperf_otel.config import OtelConfig
from aiperf_otel.exporters import CountingMetricExporter, CountingSpanExporter
from aiperf_otel.probe import probe_collector

log = structlog.get_logger()

METER_NAME = "aiperf"
UNREACHABLE = "OTel collector at {url} is not reachable. Metrics will not be exported."

#: the start-up probe: one HTTP request, and a hard cap in case name resolution hangs.
PROBE_TIMEOUT_S = 1.0
PROBE_BUDGET_S = 1.5
#: per export (retries included) unless OTEL_EXPORTER_OTLP_[METRICS_|TRACES_]TIMEOUT says
#: otherwise; the SDK's 10 s would make a dead collector hold up the end of the run.
EXPORT_TIMEOUT_S = 5.0
#: the final flush; under the core's close budget so that we, not the core, decide what is lost.
FLUSH_BUDGET_S = 20.0
#: spans waiting for export before the SDK drops the newest; a span is ~1-2 KB.
SPAN_QUEUE = 16_384
#: spans per export. Encoding is pure Python (~50-100 us a span) and holds the GIL, which the
#: trio thread then waits for: small batches keep each such stretch to a few milliseconds.
SPAN_BATCH = 128

_TIMEOUT_VARS = {
    "metrics": ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"),
    "traces": ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"),
}


@attrs.frozen(kw_only=True)
class Exporters:
    metrics: MetricExporter
    spans: SpanExporter | None = None


def otlp_exporters(config: OtelConfig) -> Exporters:
    """OTLP/HTTP exporters for the configured endpoints. Headers (``OTEL_EXPORTER_OTLP_HEADERS``),
    compression, certificates and temporality come from the standard environment variables."""

    def timeout(signal: str) -> float | None:
        return None if any(os.environ.get(v) for v in _TIMEOUT_VARS[signal]) else EXPORT_TIMEOUT_S

    return Exporters(
        metrics=OTLPMetricExporter(
            endpoint=config.endpoints.metrics_url, timeout=timeout("metrics"), session=_Session()
        ),
        spans=(
            OTLPSpanExporter(
                endpoint=config.endpoints.traces_url, timeout=timeout("traces"), session=_Session()
            )
            if config.stream.timing
            else None
        ),
    )


class _Session(requests.Session):
    """requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a session's CA file, so
    ``OTEL_EXPORTER_OTLP_CERTIFICATE`` would be ignored wherever those are set. The CA file
    the exporter was given wins; without one, requests' usual rules apply."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify is None:
            settings["verify"] = self.verify
        return settings


def build_resource(run: RunContext, config: OtelConfig) -> Resource:
    """``service.name=aiperf`` and friends, then the standard environment variables
    (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), then ``--otel-resource-attributes``:
    later ones win."""
    ours: dict[str, Any] = {
        sc.SERVICE_NAME: sc.SERVICE,
        sc.SERVICE_VERSION: run.version,
        sc.BENCHMARK_ID: run.benchmark_id,
    }
    env = dict(OTELResourceDetector().detect().attributes)
    return Resource.create({**ours, **env, **dict(config.resource_attributes)})


@attrs.define
class _GenAiInstruments:
    """The GenAI client histograms. All but the duration are binned by aiperf (see
    chunks.py): the SDK's ``record`` costs too much per value in the process that receives
    every finished request. The duration, which every request has, stays the SDK's: the SDK
    exports (and aiperf adds its own histograms to the export) only when it has data itself."""

    duration: Histogram
    tokens: BinnedHistogram
    ttfc: BinnedHistogram
    tpoc: ChunkGapHistogram

    @classmethod
    def create(cls, meter: Meter, delta: bool) -> _GenAiInstruments:
        return cls(
            duration=meter.create_histogram(
                sc.OPERATION_DURATION,
                unit=sc.SECONDS,
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
            ),
            tokens=BinnedHistogram(
                name=sc.TOKEN_USAGE,
                unit=sc.TOKENS,
                description="Number of input and output tokens used",
                bounds=sc.TOKEN_BUCKETS,
                delta=delta,
            ),
            ttfc=BinnedHistogram(
                name=sc.TIME_TO_FIRST_CHUNK,
                unit=sc.SECONDS,
                description="Time from sending the request to the first content chunk",
                bounds=sc.CHUNK_BUCKETS,
                delta=delta,
            ),
            tpoc=ChunkGapHistogram(
                name=sc.TIME_PER_OUTPUT_CHUNK,
                unit=sc.SECONDS,
                description="Time between consecutive content chunks of a streamed response",
                bounds=sc.CHUNK_BUCKETS,
                delta=delta,
            ),
        )

    def binned(self) -> list[BinnedHistogram]:
        return [self.tokens, self.ttfc, self.tpoc]


@attrs.define
class _Counts:
    """Run progress as the observable instruments report it (read from the reader thread)."""

    sent: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0
    #: the latest Progress's loop lag (ms), None until one carried it.
    loop_lag_ms: float | None = None


@attrs.define(kw_only=True)
class OtelSink:
    """An :class:`aiperf.LiveSink` that streams the run to an OTLP/HTTP collector."""

    config: OtelConfig
    name: str = "otel"
    verbose: int = 0
    make_exporters: Callable[[OtelConfig], Exporters] = otlp_exporters
    probe: Callable[[str, float], bool] = probe_collector

    _run: RunContext | None = None
    _unreachable: bool = False
    _meter_provider: MeterProvider | None = None
    #: spans go straight to it, built whole (see _span).
    _span_processor: BatchSpanProcessor | None = None
    _metric_exporter: CountingMetricExporter | None = None
    _span_exporter: CountingSpanExporter | None = None
    _genai: _GenAiInstruments | None = None
    #: the request metrics plugins registered: tag -> (histogram, scale to the unit shown).
    _plugin_metrics: dict[str, tuple[BinnedHistogram, float]] = attrs.field(factory=dict)
    _resource: Resource | None = None
    _scope: InstrumentationScope | None = None
    _ids: RandomIdGenerator = attrs.field(factory=RandomIdGenerator)
    _base: dict[str, Any] = attrs.field(factory=dict)
    _attrs: dict[tuple[Any, ...], dict[str, Any]] = attrs.field(factory=dict)
    _counts: _Counts = attrs.field(factory=_Counts)
    _gpus: dict[tuple[str, str], HardwareSample] = attrs.field(factory=dict)
    #: the latest value of each server series, by (name, source, labels).
    _server: dict[tuple[str, str, tuple[tuple[str, str], ...]], ServerMetricSample] = attrs.field(
        factory=dict
    )
    _server_gauges: set[str] = attrs.field(factory=set)
    _meter: Meter | None = None
    _spans_ended: int = 0
    _flush_incomplete: bool = False
    _quieted: list[tuple[logging.Logger, int]] = attrs.field(factory=list)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self, run: RunContext) -> None:
        self._run = run
        reachable = False
        with trio.move_on_after(PROBE_BUDGET_S):
            reachable = await trio.to_thread.run_sync(
                self.probe, self.config.endpoints.base_url, PROBE_TIMEOUT_S, abandon_on_cancel=True
            )
        if not reachable:
            self._unreachable = True
            log.warning(UNREACHABLE.format(url=self.config.endpoints.display_url))
            return
        self._quiet_sdk_logs()
        self._start(run)
        log.debug(
            "otel_streaming",
            url=self.config.endpoints.display_url,
            stream=self.config.stream.value,
            interval_s=self.config.export_interval_s,
        )

    async def run(self, events: trio.MemoryReceiveChannel[LiveEvent]) -> None:
        async for event in events:
            if self._meter_provider is None:
                continue  # nothing to export to: drain, so the bus never counts a drop
            if isinstance(event, RequestDone):
                self._on_request(event)
            elif isinstance(event, Progress):
                self._counts.sent = max(self._counts.sent, event.sent)
                self._counts.in_flight = event.in_flight
                if event.loop_lag_ms is not None:
                    self._counts.loop_lag_ms = event.loop_lag_ms
            elif isinstance(event, HardwareSample):
                self._gpus[(event.host, _hw_id(event))] = event
            elif isinstance(event, ServerMetricSample):
                self._on_server_metric(event)

    async def close(self, status: RunStatus) -> None:
        if self._meter_provider is None:
            return
        self._counts.in_flight = 0
        self._counts.sent = max(self._counts.sent, self._counts.completed + self._counts.failed)
        for exporter in (self._metric_exporter, self._span_exporter):
            if exporter is not None:
                exporter.fail_fast.enabled = True
        meter_provider, span_processor = self._meter_provider, self._span_processor
        budget_ms = FLUSH_BUDGET_S * 1000
        with trio.move_on_after(FLUSH_BUDGET_S) as scope:
            async with trio.open_nursery() as nursery:
                # Both flushes block on the network: run them side by side, off the trio
                # thread, and abandon them if the collector hangs past the budget.
                nursery.start_soon(
                    _in_thread, lambda: meter_provider.shutdown(timeout_millis=budget_ms)
                )
                if span_processor is not None:
                    nursery.start_soon(_in_thread, span_processor.shutdown)
        self._flush_incomplete = scope.cancelled_caught
        self._restore_sdk_logs()
        log.debug("otel_closed", status=status.value, report=self.report())

    def backlog(self) -> str | None:
        """Spans ended and not yet delivered, for the line shown while the end of the run waits."""
        if self._span_exporter is None:
            return None
        tally = self._span_exporter.tally
        waiting = self._spans_ended - tally.items_delivered - tally.items_failed
        return f"{waiting:,} spans to send" if waiting > 0 else None

    def report(self) -> str | None:
        if self._unreachable:
            return (
                f"otel: the collector at {self.config.endpoints.display_url} was not reachable; "
                "nothing was exported"
            )
        lost: list[str] = []
        metrics = self._metric_exporter.tally if self._metric_exporter else None
        if metrics is not None and metrics.failed:
            lost.append(f"{metrics.failed} of {metrics.exports} metric exports failed")
        if self._span_exporter is not None:
            spans = self._span_exporter.tally
            undelivered = self._spans_ended - spans.items_delivered
            if undelivered > 0 or spans.failed:
                lost.append(f"{undelivered} of {self._spans_ended} spans not delivered")
        if self._flush_incomplete:
            lost.append(f"the final flush did not finish within {FLUSH_BUDGET_S:g} s")
        return "otel: " + "; ".join(lost) if lost else None

    # -- set-up ----------------------------------------------------------------------------

    def _start(self, run: RunContext) -> None:
        config = self.config
        exporters = self.make_exporters(config)
        resource = build_resource(run, config)
        self._metric_exporter = CountingMetricExporter(exporters.metrics)
        interval_ms = config.export_interval_s * 1000
        reader = PeriodicExportingMetricReader(
            self._metric_exporter,
            export_interval_millis=interval_ms,
            export_timeout_millis=max(interval_ms, EXPORT_TIMEOUT_S * 1000),
        )
        # shutdown_on_exit=False: we flush in close() within a budget; an atexit flush against
        # a dead collector would hold the process open after the results are written.
        self._meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[reader],
            # Some SDK releases (1.31) let the OTLP exporter's default histogram aggregation
            # override the instrument's advised boundaries; a view pins them.
            views=[
                View(
                    instrument_name=sc.OPERATION_DURATION,
                    aggregation=ExplicitBucketHistogramAggregation(list(sc.DURATION_BUCKETS)),
                )
            ],
            shutdown_on_exit=False,
        )
        meter = self._meter_provider.get_meter(METER_NAME, run.version)
        self._base = {
            sc.OPERATION_NAME: run.operation_name,
            sc.PROVIDER_NAME: run.provider,
            sc.REQUEST_MODEL: run.config.model,
            sc.SERVER_ADDRESS: run.server_address,
            sc.SERVER_PORT: run.server_port,
            sc.BENCHMARK_ID: run.benchmark_id,
            sc.ENDPOINT_TYPE: run.config.endpoint_type,
            sc.LOAD_SETTING: run.load_setting,
        }
        if config.stream.metrics:
            # What the exporter asked the reader for (the SDK's own default is cumulative).
            preferred = self._metric_exporter._preferred_temporality or {}
            delta = preferred.get(HistogramInstrument) is AggregationTemporality.DELTA
            self._genai = _GenAiInstruments.create(meter, delta)
            self._create_plugin_instruments(run, delta)
            self._metric_exporter.augment = self._add_histograms(resource, run.version)
            self._create_gpu_instruments(meter)
            self._meter = meter
        if config.stream.timing:
            self._create_progress_instruments(meter)
            if exporters.spans is not None:
                self._span_exporter = CountingSpanExporter(exporters.spans)
                self._span_processor = BatchSpanProcessor(
                    self._span_exporter,
                    max_queue_size=SPAN_QUEUE,
                    schedule_delay_millis=interval_ms,
                    max_export_batch_size=SPAN_BATCH,
                )
                self._resource = resource
                self._scope = InstrumentationScope(METER_NAME, run.version)

    def _add_histograms(
        self, resource: Resource, version: str
    ) -> Callable[[MetricsData], MetricsData]:
        genai = self._genai
        assert genai is not None
        histograms = [*genai.binned(), *(h for h, _scale in self._plugin_metrics.values())]
        scope = InstrumentationScope(METER_NAME, version)

        def augment(data: MetricsData) -> MetricsData:
            collected = [histogram.collect() for histogram in histograms]
            return with_metrics(data, collected, resource, scope) or data

        return augment

    def _create_plugin_instruments(self, run: RunContext, delta: bool) -> None:
        for tag, spec in _plugin_request_metrics(run).items():
            histogram = BinnedHistogram(
                name=sc.PLUGIN_METRIC_PREFIX + tag,
                unit=spec.unit,
                description=f"{spec.header} (a plugin's metric, per request)",
                bounds=sc.PLUGIN_BUCKETS,
                delta=delta,
            )
            self._plugin_metrics[tag] = (histogram, spec.scale)

    def _create_progress_instruments(self, meter: Meter) -> None:
        counts, base = self._counts, self._base

        def observe(read: Callable[[], int]) -> Callable[[CallbackOptions], list[Observation]]:
            return lambda _options: [Observation(read(), base)]

        meter.create_observable_counter(
            # Progress events come once a second; finished requests are counted exactly.
            sc.REQUESTS_SENT,
            [observe(lambda: max(counts.sent, counts.completed + counts.failed))],
            unit=sc.REQUESTS,
            description="Requests sent",
        )
        meter.create_observable_counter(
            sc.REQUESTS_COMPLETED,
            [observe(lambda: counts.completed)],
            unit=sc.REQUESTS,
            description="Requests that completed without error",
        )
        meter.create_observable_counter(
            sc.REQUESTS_FAILED,
            [observe(lambda: counts.failed)],
            unit=sc.REQUESTS,
            description="Requests that failed",
        )
        meter.create_observable_up_down_counter(
            sc.REQUESTS_IN_FLIGHT,
            [observe(lambda: counts.in_flight)],
            unit=sc.REQUESTS,
            description="Requests sent and not yet answered",
        )

        def loop_lag(_options: CallbackOptions) -> list[Observation]:
            lag = counts.loop_lag_ms
            return [] if lag is None else [Observation(lag / 1e3, base)]

        meter.create_observable_gauge(
            sc.LOOP_LAG,
            [loop_lag],
            unit=sc.SECONDS,
            description="Largest event-loop lag of aiperf's load processes over the last second: "
            "how late a response may have been read",
        )

    def _on_server_metric(self, event: ServerMetricSample) -> None:
        """Keep the latest value; the first value of a name creates its gauge."""
        self._server[(event.name, event.source, event.labels)] = event
        if self._meter is None or event.name in self._server_gauges:
            return
        self._server_gauges.add(event.name)
        name = event.name

        def callback(_options: CallbackOptions) -> list[Observation]:
            # Called from the reader thread: iterate over a copy of the latest values.
            return [
                Observation(sample.value, {**dict(sample.labels), sc.SERVER_METRICS_URL: source})
                for (key, source, _), sample in list(self._server.items())
                if key == name
            ]

        self._meter.create_observable_gauge(
            sc.SERVER_METRIC_PREFIX + name,
            [callback],
            unit=event.unit,
            description=f"{name} as the inference server reported it (aiperf-server-metrics)",
        )

    def _create_gpu_instruments(self, meter: Meter) -> None:
        def observe(field: str) -> Callable[[CallbackOptions], list[Observation]]:
            def callback(_options: CallbackOptions) -> list[Observation]:
                # Called from the reader thread: iterate over a copy of the latest readings.
                out = []
                for sample in list(self._gpus.values()):
                    value = getattr(sample, field)
                    if value is not None:
                        out.append(Observation(value, _hw_attributes(sample)))
                return out

            return callback

        for kind, name, field, unit, description in _GPU_INSTRUMENTS:
            create = getattr(meter, f"create_observable_{kind}")
            create(name, [observe(field)], unit=unit, description=description)

    def _quiet_sdk_logs(self) -> None:
        # A failed export is logged by the SDK at ERROR on every try, and a full span queue
        # once per span; we count both and say it once at the end instead.
        if self.verbose >= 2:
            return
        logger = logging.getLogger("opentelemetry")
        self._quieted.append((logger, logger.level))
        logger.setLevel(logging.CRITICAL + 1)

    def _restore_sdk_logs(self) -> None:
        while self._quieted:
            logger, level = self._quieted.pop()
            logger.setLevel(level)

    # -- per request -----------------------------------------------------------------------

    def _on_request(self, event: RequestDone) -> None:
        m = event.metrics
        if m.ok:
            self._counts.completed += 1
        else:
            self._counts.failed += 1
        phase, model = m.phase.value, m.response_model
        key = (phase, model, None, None)
        attributes = self._attributes(key)
        if self._span_processor is not None:
            self._span(event, attributes)
        genai = self._genai
        if genai is None:
            return
        values = m.values
        latency = values.get("request_latency")
        if latency is not None:
            error = m.error.type if m.error is not None else None
            genai.duration.record(latency / 1e9, self._attributes((phase, model, error, None)))
        if not m.ok:
            return
        isl = values.get("input_sequence_length")
        if isl is not None:
            tokens = (phase, model, None, sc.TOKEN_TYPE_INPUT)
            genai.tokens.record(tokens, self._attributes(tokens), isl)
        osl = values.get("output_sequence_length")
        if osl is not None and self._run is not None and self._run.operation_name != "embeddings":
            tokens = (phase, model, None, sc.TOKEN_TYPE_OUTPUT)
            genai.tokens.record(tokens, self._attributes(tokens), osl)
        ttft = values.get("time_to_first_token")
        if ttft is not None:
            genai.ttfc.record(key, attributes, ttft / 1e9)
        genai.tpoc.add(key, attributes, m.inter_chunk_latency_ns)
        for tag, (histogram, scale) in self._plugin_metrics.items():
            value = values.get(tag)
            if value is not None:
                histogram.record(key, attributes, value * scale)

    def _attributes(self, key: tuple[str, str | None, str | None, str | None]) -> dict[str, Any]:
        """The attributes of ``(phase, response model, error type, token type)``: attribute
        sets are few, so each is built once."""
        found = self._attrs.get(key)
        if found is None:
            phase, response_model, error, token = key
            found = dict(self._base)
            found[sc.PHASE] = phase
            if response_model:
                found[sc.RESPONSE_MODEL] = response_model
            if error is not None:
                found[sc.ERROR_TYPE] = error
            if token is not None:
                found[sc.TOKEN_TYPE] = token
            self._attrs[key] = found
        return found

    def _span(self, event: RequestDone, attributes: dict[str, Any]) -> None:
        """One CLIENT span for the request, built finished and handed to the batch processor.

        The request is over when its event arrives, so the span is made whole, as the SDK's
        tracer would end it, without the tracer: its start, attribute cleaning and end cost
        about 40 us a request in the process that receives every request (the attributes here
        are all strings, numbers and booleans already).
        """
        m, record, run, processor = event.metrics, event.record, self._run, self._span_processor
        assert run is not None and processor is not None
        if not m.start_ns:
            return  # never sent: nothing happened on the wire to put on a timeline
        span_attributes = dict(attributes)
        span_attributes[sc.REQUEST_INDEX] = m.index
        span_attributes[sc.REQUEST_STREAM] = bool(run.config.streaming)
        if record.max_tokens is not None:
            span_attributes[sc.REQUEST_MAX_TOKENS] = record.max_tokens
        values = m.values
        isl = values.get("input_sequence_length")
        osl = values.get("output_sequence_length")
        if isl is not None:
            span_attributes[sc.USAGE_INPUT_TOKENS] = int(isl)
        if osl is not None:
            span_attributes[sc.USAGE_OUTPUT_TOKENS] = int(osl)
        ttft = values.get("time_to_first_token")
        if ttft is not None:
            span_attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = ttft / 1e9
        if m.error is not None:
            span_attributes[sc.ERROR_TYPE] = m.error.type
        events: tuple[Event, ...] = ()
        if ttft is not None and record.chunk_ns:
            events = (
                Event(
                    sc.FIRST_CHUNK_EVENT,
                    {sc.RESPONSE_TIME_TO_FIRST_CHUNK: ttft / 1e9},
                    timestamp=run.to_wall_ns(record.chunk_ns[0]),
                ),
            )
        status = _UNSET
        if m.error is not None:
            # Cut to 200 characters, then scrubbed: a cut inside a secret must not leak its start.
            description = scrub_secrets(f"{m.error.type}: {m.error.message[:200]}")
            status = Status(StatusCode.ERROR, description)
        context = SpanContext(
            trace_id=self._ids.generate_trace_id(),
            span_id=self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=_SAMPLED,
        )
        processor.on_end(
            ReadableSpan(
                name=f"{run.operation_name} {run.config.model}",
                context=context,
                resource=self._resource,
                attributes=span_attributes,
                events=events,
                kind=SpanKind.CLIENT,
                status=status,
                start_time=run.to_wall_ns(m.start_ns),
                end_time=run.to_wall_ns(max(m.end_ns, m.start_ns)),
                instrumentation_scope=self._scope,
            )
        )
        self._spans_ended += 1


_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _plugin_request_metrics(run: RunContext) -> dict[str, MetricSpec]:
    """The request metrics of the run that plugins registered. The core's own go out under
    their GenAI names (or not at all): the semantic conventions name what they measure."""
    return {
        tag: spec
        for tag, spec in run.metrics.items()
        if spec.kind == "request" and tag not in METRICS
    }


#: (observable kind, name, HardwareSample field, unit, description) of each GPU instrument.
_GPU_INSTRUMENTS = (
    (
        "gauge",
        sc.HW_GPU_UTILIZATION,
        "gpu_utilization",
        sc.RATIO,
        "Fraction of time the GPU was busy (1 = 100 %)",
    ),
    ("up_down_counter", sc.HW_GPU_MEMORY_USAGE, "memory_used_bytes", sc.BYTES, "GPU memory in use"),
    ("up_down_counter", sc.HW_GPU_MEMORY_LIMIT, "memory_total_bytes", sc.BYTES, "GPU memory size"),
    ("gauge", sc.HW_POWER, "power_watts", sc.WATTS, "GPU power draw"),
    ("counter", sc.HW_ENERGY, "energy_joules", sc.JOULES, "Energy the GPU consumed"),
    ("gauge", sc.HW_TEMPERATURE, "temperature_celsius", sc.CELSIUS, "GPU temperature"),
)


def _hw_id(sample: HardwareSample) -> str:
    return sample.uuid or str(sample.gpu_index)


def _hw_attributes(sample: HardwareSample) -> dict[str, Any]:
    return {
        sc.HW_ID: _hw_id(sample),
        sc.HW_NAME: sample.name,
        sc.HW_TYPE: sc.HW_TYPE_GPU,
        sc.HOST_NAME: sample.host,
        sc.GPU_INDEX: sample.gpu_index,
    }


async def _in_thread(fn: Callable[[], object]) -> None:
    await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
