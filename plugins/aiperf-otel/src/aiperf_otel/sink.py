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
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import requests
import structlog
import trio
from aiperf import (
    HardwareSample,
    LiveEvent,
    Progress,
    RequestDone,
    RunContext,
    RunStatus,
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
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from aiperf_otel import semconv as sc
from aiperf_otel.chunks import ChunkGapHistogram, with_metric
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
    duration: Histogram
    tokens: Histogram
    ttfc: Histogram
    #: binned by aiperf, a request at a time (see chunks.py): the SDK costs too much per gap.
    tpoc: ChunkGapHistogram

    @classmethod
    def create(cls, meter: Meter, delta: bool) -> _GenAiInstruments:
        def histogram(
            name: str, unit: str, description: str, buckets: Iterable[float]
        ) -> Histogram:
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(buckets),
            )

        return cls(
            duration=histogram(
                sc.OPERATION_DURATION, sc.SECONDS, "GenAI operation duration", sc.DURATION_BUCKETS
            ),
            tokens=histogram(
                sc.TOKEN_USAGE,
                sc.TOKENS,
                "Number of input and output tokens used",
                sc.TOKEN_BUCKETS,
            ),
            ttfc=histogram(
                sc.TIME_TO_FIRST_CHUNK,
                sc.SECONDS,
                "Time from sending the request to the first content chunk",
                sc.CHUNK_BUCKETS,
            ),
            tpoc=ChunkGapHistogram(
                name=sc.TIME_PER_OUTPUT_CHUNK,
                unit=sc.SECONDS,
                description="Time between consecutive content chunks of a streamed response",
                bounds=sc.CHUNK_BUCKETS,
                delta=delta,
            ),
        )


@attrs.define
class _Counts:
    """Run progress as the observable instruments report it (read from the reader thread)."""

    sent: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0


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
    _tracer_provider: TracerProvider | None = None
    _metric_exporter: CountingMetricExporter | None = None
    _span_exporter: CountingSpanExporter | None = None
    _genai: _GenAiInstruments | None = None
    _tracer: Tracer | None = None
    _base: dict[str, Any] = attrs.field(factory=dict)
    _attrs: dict[tuple[Any, ...], dict[str, Any]] = attrs.field(factory=dict)
    _counts: _Counts = attrs.field(factory=_Counts)
    _gpus: dict[tuple[str, str], HardwareSample] = attrs.field(factory=dict)
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
            elif isinstance(event, HardwareSample):
                self._gpus[(event.host, _hw_id(event))] = event

    async def close(self, status: RunStatus) -> None:
        if self._meter_provider is None:
            return
        self._counts.in_flight = 0
        self._counts.sent = max(self._counts.sent, self._counts.completed + self._counts.failed)
        for exporter in (self._metric_exporter, self._span_exporter):
            if exporter is not None:
                exporter.fail_fast.enabled = True
        meter_provider, tracer_provider = self._meter_provider, self._tracer_provider
        budget_ms = FLUSH_BUDGET_S * 1000
        with trio.move_on_after(FLUSH_BUDGET_S) as scope:
            async with trio.open_nursery() as nursery:
                # Both flushes block on the network: run them side by side, off the trio
                # thread, and abandon them if the collector hangs past the budget.
                nursery.start_soon(
                    _in_thread, lambda: meter_provider.shutdown(timeout_millis=budget_ms)
                )
                if tracer_provider is not None:
                    nursery.start_soon(_in_thread, tracer_provider.shutdown)
        self._flush_incomplete = scope.cancelled_caught
        self._restore_sdk_logs()
        log.debug("otel_closed", status=status.value, report=self.report())

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
            views=_bucket_views(),
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
            self._metric_exporter.augment = self._add_chunk_points(resource, run.version)
            self._create_gpu_instruments(meter)
        if config.stream.timing:
            self._create_progress_instruments(meter)
            if exporters.spans is not None:
                self._span_exporter = CountingSpanExporter(exporters.spans)
                self._tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
                self._tracer_provider.add_span_processor(
                    BatchSpanProcessor(
                        self._span_exporter,
                        max_queue_size=SPAN_QUEUE,
                        schedule_delay_millis=interval_ms,
                        max_export_batch_size=SPAN_BATCH,
                    )
                )
                self._tracer = self._tracer_provider.get_tracer(METER_NAME, run.version)

    def _add_chunk_points(
        self, resource: Resource, version: str
    ) -> Callable[[MetricsData], MetricsData]:
        genai = self._genai
        assert genai is not None
        scope = InstrumentationScope(METER_NAME, version)

        def augment(data: MetricsData) -> MetricsData:
            return with_metric(data, genai.tpoc.collect(), resource, scope) or data

        return augment

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
        attributes = self._attributes(phase, model)
        if self._tracer is not None:
            self._span(event, attributes)
        genai = self._genai
        if genai is None:
            return
        values = m.values
        latency = values.get("request_latency")
        if latency is not None:
            error = m.error.type if m.error is not None else None
            genai.duration.record(latency / 1e9, self._attributes(phase, model, error))
        if not m.ok:
            return
        isl = values.get("input_sequence_length")
        if isl is not None:
            genai.tokens.record(isl, self._attributes(phase, model, token=sc.TOKEN_TYPE_INPUT))
        osl = values.get("output_sequence_length")
        if osl is not None and self._run is not None and self._run.operation_name != "embeddings":
            genai.tokens.record(osl, self._attributes(phase, model, token=sc.TOKEN_TYPE_OUTPUT))
        ttft = values.get("time_to_first_token")
        if ttft is not None:
            genai.ttfc.record(ttft / 1e9, attributes)
        genai.tpoc.add((phase, model), attributes, m.inter_chunk_latency_ns)

    def _attributes(
        self,
        phase: str,
        response_model: str | None,
        error: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Attribute sets are few (phase x model x error type): build each once."""
        key = (phase, response_model, error, token)
        found = self._attrs.get(key)
        if found is None:
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
        m, record, run, tracer = event.metrics, event.record, self._run, self._tracer
        assert run is not None and tracer is not None
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
        name = f"{run.operation_name} {run.config.model}"
        span = tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=span_attributes,
            start_time=run.to_wall_ns(m.start_ns),
        )
        if ttft is not None and record.chunk_ns:
            span.add_event(
                sc.FIRST_CHUNK_EVENT,
                {sc.RESPONSE_TIME_TO_FIRST_CHUNK: ttft / 1e9},
                timestamp=run.to_wall_ns(record.chunk_ns[0]),
            )
        if m.error is not None:
            # Cut to 200 characters, then scrubbed: a cut inside a secret must not leak its start.
            description = scrub_secrets(f"{m.error.type}: {m.error.message[:200]}")
            span.set_status(Status(StatusCode.ERROR, description))
        span.end(end_time=run.to_wall_ns(max(m.end_ns, m.start_ns)))
        self._spans_ended += 1


def _bucket_views() -> list[View]:
    # The instruments carry these boundaries as advice too, but some SDK releases (1.31) let
    # the OTLP exporter's default histogram aggregation give every histogram the boundaries
    # of the first one used. A view per instrument pins them whatever the release.
    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(list(bounds)))
        for name, bounds in (
            (sc.OPERATION_DURATION, sc.DURATION_BUCKETS),
            (sc.TOKEN_USAGE, sc.TOKEN_BUCKETS),
            (sc.TIME_TO_FIRST_CHUNK, sc.CHUNK_BUCKETS),
        )
    ]


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
