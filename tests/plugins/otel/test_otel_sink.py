"""The OTel live sink, fed synthetic live events, exporting into an in-process receiver."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import attrs
import pytest
import structlog
import trio
import trio.testing
from aiperf import (
    METRICS,
    ErrorInfo,
    HardwareSample,
    LiveEvent,
    MetricSpec,
    Phase,
    Progress,
    RequestDone,
    infer_provider,
)
from aiperf_otel import semconv as sc
from aiperf_otel import sink as sink_module
from aiperf_otel.config import Stream, parse_otel_url
from aiperf_otel.exporters import CountingMetricExporter
from aiperf_otel.sink import OtelSink
from otel_fakes import (
    ANCHOR_WALL_NS,
    MS,
    Direct,
    ReceiverMetricExporter,
    drive,
    make_run,
    otel_config,
    request_done,
)
from support.otlp_receiver import OtlpReceiver

GENAI = {
    sc.OPERATION_DURATION: ("s", sc.DURATION_BUCKETS),
    sc.TOKEN_USAGE: ("{token}", sc.TOKEN_BUCKETS),
    sc.TIME_TO_FIRST_CHUNK: ("s", sc.CHUNK_BUCKETS),
    sc.TIME_PER_OUTPUT_CHUNK: ("s", sc.CHUNK_BUCKETS),
}
PROFILE = {sc.PHASE: "profile"}


def _reachable(url: str, timeout_s: float) -> bool:
    return True


def _sink(direct: Direct, **config: Any) -> OtelSink:
    return OtelSink(config=otel_config(**config), make_exporters=direct, probe=_reachable)


def _mixed_run() -> list[LiveEvent]:
    """Five good streamed requests and one that failed with HTTP 500."""
    events: list[LiveEvent] = [
        request_done(
            i,
            start_ms=i * 100,
            ttft_ms=40 + i,
            gaps_ms=(10.0,) * (i + 1),
            isl=100 + i,
            osl=10 * (i + 1),
        )
        for i in range(5)
    ]
    events.append(
        request_done(5, start_ms=600, error=ErrorInfo(type="500", message="HTTP 500: overloaded"))
    )
    return events


class TestGenAiMetrics:
    """The four GenAI client histograms: names, units, buckets, counts, sums, attributes."""

    async def test_sink_emits_genai_histograms_with_units_and_buckets(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """Each metric arrives as a histogram with its unit and the spec's bucket boundaries."""
        await drive(_sink(direct), make_run(tmp_path), _mixed_run())
        for name, (unit, buckets) in GENAI.items():
            points = direct.receiver.points(name)
            assert points, name
            assert {("histogram", unit, tuple(float(b) for b in buckets))} == {
                (p.kind, p.unit, p.explicit_bounds) for p in points
            }

    async def test_sink_duration_counts_every_request(self, direct: Direct, tmp_path: Path) -> None:
        """Count is every finished request (failures too); the sum is their latencies in seconds."""
        events = _mixed_run()
        await drive(_sink(direct), make_run(tmp_path), events)
        total = direct.receiver.histogram(sc.OPERATION_DURATION, where=PROFILE)
        expected = sum(e.metrics.values["request_latency"] for e in events) / 1e9
        assert 6 == total.count
        assert expected == pytest.approx(total.sum, rel=1e-12)

    async def test_sink_error_type_only_on_failed_duration(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """The failed request is its own duration series with error.type; no other metric has it."""
        await drive(_sink(direct), make_run(tmp_path), _mixed_run())
        failed = direct.receiver.histogram(sc.OPERATION_DURATION, where={sc.ERROR_TYPE: "500"})
        assert 1 == failed.count
        for name in (sc.TOKEN_USAGE, sc.TIME_TO_FIRST_CHUNK, sc.TIME_PER_OUTPUT_CHUNK):
            assert [] == [p for p in direct.receiver.points(name) if sc.ERROR_TYPE in p.attributes]

    async def test_sink_token_usage_input_and_output(self, direct: Direct, tmp_path: Path) -> None:
        """Both token series arrive; their sums are the successful requests' ISL and OSL."""
        await drive(_sink(direct), make_run(tmp_path), _mixed_run())
        receiver = direct.receiver
        tokens_in = receiver.histogram(sc.TOKEN_USAGE, where={sc.TOKEN_TYPE: "input"})
        tokens_out = receiver.histogram(sc.TOKEN_USAGE, where={sc.TOKEN_TYPE: "output"})
        assert (5, float(100 + 101 + 102 + 103 + 104)) == (tokens_in.count, tokens_in.sum)
        assert (5, float(10 + 20 + 30 + 40 + 50)) == (tokens_out.count, tokens_out.sum)

    async def test_sink_chunk_metrics(self, direct: Direct, tmp_path: Path) -> None:
        """TTFT once per streamed request; every chunk gap once, in seconds."""
        await drive(_sink(direct), make_run(tmp_path), _mixed_run())
        ttfc = direct.receiver.histogram(sc.TIME_TO_FIRST_CHUNK)
        tpoc = direct.receiver.histogram(sc.TIME_PER_OUTPUT_CHUNK)
        assert (5, pytest.approx((40 + 41 + 42 + 43 + 44) / 1000)) == (ttfc.count, ttfc.sum)
        assert (15, pytest.approx(15 * 0.010)) == (tpoc.count, tpoc.sum)
        # 10 ms gaps fall in the (5 ms, 10 ms] bucket: the finer low buckets are in use.
        assert 15 == tpoc.bucket_counts[sc.CHUNK_BUCKETS.index(0.01)]

    async def test_sink_attributes(self, direct: Direct, tmp_path: Path) -> None:
        """GenAI attributes and aiperf dimensions; no per-request id on any metric."""
        await drive(_sink(direct), make_run(tmp_path, provider="vllm"), _mixed_run())
        point = direct.receiver.latest(sc.TIME_TO_FIRST_CHUNK)[0]
        assert {
            sc.OPERATION_NAME: "chat",
            sc.PROVIDER_NAME: "vllm",
            sc.REQUEST_MODEL: "my-model",
            sc.RESPONSE_MODEL: "my-model",
            sc.SERVER_ADDRESS: "127.0.0.1",
            sc.SERVER_PORT: 8000,
            sc.BENCHMARK_ID: "bench-0001",
            sc.ENDPOINT_TYPE: "chat",
            sc.PHASE: "profile",
            sc.LOAD_SETTING: "concurrency4",
        } == point.attributes
        for p in direct.receiver.points():
            assert sc.REQUEST_INDEX not in p.attributes
            assert "gen_ai.system" not in p.attributes

    @pytest.mark.parametrize(
        ("url", "override", "provider"),
        [
            ("https://api.openai.com/v1", None, "openai"),
            ("https://myres.openai.azure.com", None, "azure.ai.openai"),
            ("https://api.mistral.ai", None, "mistral_ai"),
            ("http://localhost:8000", None, "_OTHER"),
            ("http://localhost:8000", "vllm", "vllm"),
        ],
    )
    async def test_sink_provider_follows_core_inference(
        self, direct: Direct, tmp_path: Path, url: str, override: str | None, provider: str
    ) -> None:
        """gen_ai.provider.name is the core's inference from the URL, or --gen-ai-provider."""
        run = make_run(tmp_path, provider=infer_provider(url, override))
        await drive(_sink(direct), run, [request_done(0)])
        assert {provider} == {
            p.attributes[sc.PROVIDER_NAME] for p in direct.receiver.points(sc.OPERATION_DURATION)
        }

    async def test_sink_phase_separates_warmup(self, direct: Direct, tmp_path: Path) -> None:
        """Warm-up requests are their own series, so the profile count stays exact."""
        events = [request_done(0, phase=Phase.WARMUP), request_done(1), request_done(2)]
        await drive(_sink(direct), make_run(tmp_path), events)
        receiver = direct.receiver
        assert 1 == receiver.histogram(sc.OPERATION_DURATION, where={sc.PHASE: "warmup"}).count
        assert 2 == receiver.histogram(sc.OPERATION_DURATION, where=PROFILE).count

    async def test_sink_embeddings_have_no_output_tokens(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """An embeddings run reports input tokens only."""
        run = make_run(tmp_path, operation_name="embeddings")
        await drive(_sink(direct), run, [request_done(0, gaps_ms=(), osl=0)])
        assert {"input"} == {
            p.attributes[sc.TOKEN_TYPE] for p in direct.receiver.points(sc.TOKEN_USAGE)
        }


#: a plugin's metrics: one per request (recorded in bytes, shown in KiB) and one per run.
PLUGIN_METRICS = {
    **METRICS,
    "cache_kib": MetricSpec("cache_kib", "Cache Read", "KiB", 1 / 1024),
    "cache_total": MetricSpec("cache_total", "Cache Total", "KiB", 1 / 1024, "run", summary="sum"),
}


def _with_cache(event: LiveEvent, kib: float) -> LiveEvent:
    assert isinstance(event, RequestDone)
    values = {**event.metrics.values, "cache_kib": kib * 1024, "cache_total": kib * 1024}
    return attrs.evolve(event, metrics=attrs.evolve(event.metrics, values=values))


class TestPluginMetrics:
    """A request metric a plugin registered is a histogram ``aiperf.metric.<tag>``."""

    async def test_plugin_request_metric_is_a_histogram_in_its_unit(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """The successful requests' values, scaled to the unit shown, with the GenAI attributes."""
        events = [_with_cache(e, kib) for e, kib in zip(_mixed_run(), (1, 2, 3, 4, 5, 6))]
        await drive(_sink(direct), make_run(tmp_path, metrics=PLUGIN_METRICS), events)
        name = sc.PLUGIN_METRIC_PREFIX + "cache_kib"
        total = direct.receiver.histogram(name, where=PROFILE)
        assert (5, 15.0) == (total.count, total.sum)  # the failed request's 6 KiB is left out
        assert tuple(float(b) for b in sc.PLUGIN_BUCKETS) == total.explicit_bounds
        point = direct.receiver.latest(name)[0]
        assert ("histogram", "KiB") == (point.kind, point.unit)
        assert (sc.REQUEST_MODEL, "my-model") in point.attributes.items()

    async def test_only_plugin_request_metrics_get_a_histogram(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """Run metrics are one value at the end, not a live series; the core's metrics keep
        their GenAI names (no aiperf.metric.request_latency)."""
        events = [_with_cache(e, 1) for e in _mixed_run()]
        await drive(
            _sink(direct, stream=Stream.METRICS), make_run(tmp_path, metrics=PLUGIN_METRICS), events
        )
        assert {*GENAI, sc.PLUGIN_METRIC_PREFIX + "cache_kib"} == direct.receiver.metric_names()

    async def test_no_plugin_metric_without_registration(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """A value nobody registered stays in the JSONL: nothing goes to the collector."""
        events = [_with_cache(e, 1) for e in _mixed_run()]
        await drive(_sink(direct, stream=Stream.METRICS), make_run(tmp_path), events)
        assert set(GENAI) == direct.receiver.metric_names()


class TestSpans:
    """One CLIENT span per request at the request's real times."""

    async def test_sink_one_client_span_per_request(self, direct: Direct, tmp_path: Path) -> None:
        """Name, kind, start/end from the record's perf times, TTFT attribute and event."""
        run = make_run(tmp_path)
        events = _mixed_run()
        await drive(_sink(direct), run, events)
        spans = {s.attributes[sc.REQUEST_INDEX]: s for s in direct.receiver.spans()}
        assert list(range(6)) == sorted(spans)
        first = spans[0]
        done = events[0]
        assert ("chat my-model", "client") == (first.name, first.kind)
        assert run.to_wall_ns(done.metrics.start_ns) == first.start_time_unix_nano
        assert run.to_wall_ns(done.metrics.end_ns) == first.end_time_unix_nano
        assert ANCHOR_WALL_NS == first.start_time_unix_nano  # request 0 started at the anchor
        assert 0.040 == pytest.approx(first.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK])
        assert [(sc.FIRST_CHUNK_EVENT, ANCHOR_WALL_NS + 40 * MS)] == [
            (e.name, e.time_unix_nano) for e in first.events
        ]
        assert (100, 10, 128, True, "unset") == (
            first.attributes[sc.USAGE_INPUT_TOKENS],
            first.attributes[sc.USAGE_OUTPUT_TOKENS],
            first.attributes[sc.REQUEST_MAX_TOKENS],
            first.attributes[sc.REQUEST_STREAM],
            first.status,
        )

    async def test_sink_failed_request_span_has_error_status(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """A failed request's span is an error with error.type and the message."""
        await drive(_sink(direct), make_run(tmp_path), _mixed_run())
        failed = direct.receiver.spans(where={sc.REQUEST_INDEX: 5})[0]
        assert ("error", "500", "500: HTTP 500: overloaded") == (
            failed.status,
            failed.attributes[sc.ERROR_TYPE],
            failed.status_message,
        )
        assert () == failed.events

    async def test_sink_metrics_stream_sends_no_timing(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """--stream metrics: GenAI metrics only: no spans, no progress counters."""
        await drive(_sink(direct, stream=Stream.METRICS), make_run(tmp_path), _mixed_run())
        assert [] == direct.receiver.spans()
        assert set(GENAI) == direct.receiver.metric_names()

    async def test_sink_timing_stream_sends_no_genai_metrics(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """--stream timing: spans and progress counters, no GenAI histograms."""
        events = [
            *_mixed_run(),
            Progress(
                phase=Phase.PROFILE, sent=6, completed=5, failed=1, in_flight=0, elapsed_s=1.0
            ),
        ]
        await drive(_sink(direct, stream=Stream.TIMING), make_run(tmp_path), events)
        assert 6 == len(direct.receiver.spans())
        assert {
            sc.REQUESTS_SENT,
            sc.REQUESTS_COMPLETED,
            sc.REQUESTS_FAILED,
            sc.REQUESTS_IN_FLIGHT,
        } == (direct.receiver.metric_names())


class TestProgress:
    """The run's progress counters."""

    async def test_sink_progress_counters_final_values(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """Completed and failed are counted exactly; in flight is 0 once the run is over."""
        events = [
            Progress(
                phase=Phase.PROFILE, sent=3, completed=1, failed=0, in_flight=2, elapsed_s=1.0
            ),
            *_mixed_run(),
        ]
        await drive(_sink(direct), make_run(tmp_path), events)
        final = {
            name: [p.value for p in direct.receiver.latest(name)]
            for name in (
                sc.REQUESTS_SENT,
                sc.REQUESTS_COMPLETED,
                sc.REQUESTS_FAILED,
                sc.REQUESTS_IN_FLIGHT,
            )
        }
        assert {
            sc.REQUESTS_SENT: [6.0],
            sc.REQUESTS_COMPLETED: [5.0],
            sc.REQUESTS_FAILED: [1.0],
            sc.REQUESTS_IN_FLIGHT: [0.0],
        } == final
        assert {"{request}"} == {
            p.unit for p in direct.receiver.points() if p.name.startswith("aiperf.client.requests")
        }
        assert [] == direct.receiver.latest(sc.LOOP_LAG)  # no Progress carried it

    async def test_sink_loop_lag_gauge_in_seconds(self, direct: Direct, tmp_path: Path) -> None:
        """Measurement health live: the latest largest loop lag of the load processes."""
        events = [
            Progress(
                phase=Phase.PROFILE, sent=3, completed=1, failed=0, in_flight=2, elapsed_s=1.0,
                loop_lag_ms=4.0,
            ),
            *_mixed_run(),
            Progress(
                phase=Phase.PROFILE, sent=6, completed=5, failed=1, in_flight=0, elapsed_s=2.0,
                loop_lag_ms=12.5,
            ),
        ]  # fmt: skip
        await drive(_sink(direct), make_run(tmp_path), events)
        latest = direct.receiver.latest(sc.LOOP_LAG)
        assert [0.0125] == [p.value for p in latest]
        assert {"s"} == {p.unit for p in latest}
        assert "aiperf.client.loop_lag" == sc.LOOP_LAG


def _gpu(index: int, uuid: str = "", **values: float | None) -> HardwareSample:
    return HardwareSample(
        source="nvml",
        host="gpu-host-1",
        gpu_index=index,
        uuid=uuid,
        name="NVIDIA H100 80GB HBM3",
        wall_ns=ANCHOR_WALL_NS,
        phase=Phase.PROFILE,
        **values,
    )


class TestHardware:
    """HardwareSample events become hardware-convention metrics."""

    async def test_sink_gpu_samples_become_hw_metrics(self, direct: Direct, tmp_path: Path) -> None:
        """Names, units, latest values and attributes per GPU; absent readings are not sent."""
        full = {
            "gpu_utilization": 0.5,
            "memory_used_bytes": 40e9,
            "memory_total_bytes": 80e9,
            "power_watts": 300.0,
            "energy_joules": 1000.0,
            "temperature_celsius": 60.0,
        }
        events: list[LiveEvent] = [
            _gpu(0, "GPU-aaaa", **full),
            _gpu(0, "GPU-aaaa", **{**full, "gpu_utilization": 0.75, "energy_joules": 1300.0}),
            _gpu(1, power_watts=120.0),
        ]
        await drive(_sink(direct), make_run(tmp_path), events)
        receiver = direct.receiver
        expected = {
            sc.HW_GPU_UTILIZATION: ("1", 0.75),
            sc.HW_GPU_MEMORY_USAGE: ("By", 40e9),
            sc.HW_GPU_MEMORY_LIMIT: ("By", 80e9),
            sc.HW_POWER: ("W", 300.0),
            sc.HW_ENERGY: ("J", 1300.0),
            sc.HW_TEMPERATURE: ("Cel", 60.0),
        }
        for name, (unit, value) in expected.items():
            latest = receiver.latest(name, where={sc.HW_ID: "GPU-aaaa"})
            assert [(unit, value)] == [(p.unit, p.value) for p in latest], name
        attributes = receiver.latest(sc.HW_POWER, where={sc.HW_ID: "GPU-aaaa"})[0].attributes
        assert {
            sc.HW_ID: "GPU-aaaa",
            sc.HW_NAME: "NVIDIA H100 80GB HBM3",
            sc.HW_TYPE: "gpu",
            sc.HOST_NAME: "gpu-host-1",
            sc.GPU_INDEX: 0,
        } == attributes
        # The second GPU has no uuid (hw.id falls back to its index) and only a power reading.
        assert [120.0] == [p.value for p in receiver.latest(sc.HW_POWER, where={sc.HW_ID: "1"})]
        assert [] == receiver.latest(sc.HW_TEMPERATURE, where={sc.HW_ID: "1"})
        assert ("sum", True) == (
            receiver.latest(sc.HW_ENERGY)[0].kind,
            receiver.latest(sc.HW_ENERGY)[0].monotonic,
        )

    async def test_sink_timing_stream_has_no_gpu_metrics(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """GPU readings are metrics: --stream timing leaves them out."""
        await drive(
            _sink(direct, stream=Stream.TIMING), make_run(tmp_path), [_gpu(0, power_watts=1.0)]
        )
        assert not any(name.startswith("hw.") for name in direct.receiver.metric_names())


class TestServerMetrics:
    """ServerMetricSample events become aiperf.server.* gauges with the engine's labels."""

    async def test_sink_server_metrics_become_gauges(self, direct: Direct, tmp_path: Path) -> None:
        """The latest value of each series, under its name, labelled as the engine labels it."""
        from aiperf import Phase, ServerMetricSample

        def sample(name: str, value: float, engine: str) -> ServerMetricSample:
            return ServerMetricSample(
                source="http://server:8000/metrics", name=name, value=value, unit="requests",
                wall_ns=1, phase=Phase.PROFILE, labels=(("engine", engine), ("model_name", "m")),
            )  # fmt: skip

        events: list[LiveEvent] = [
            sample("requests_running", 3.0, "0"),
            sample("requests_running", 4.0, "0"),
            sample("requests_running", 1.0, "1"),
        ]
        await drive(_sink(direct), make_run(tmp_path), events)
        name = sc.SERVER_METRIC_PREFIX + "requests_running"
        latest = direct.receiver.latest(name, where={"engine": "0"})
        assert [("requests", 4.0)] == [(p.unit, p.value) for p in latest]
        assert {
            "engine": "0",
            "model_name": "m",
            sc.SERVER_METRICS_URL: "http://server:8000/metrics",
        } == latest[0].attributes
        assert [1.0] == [p.value for p in direct.receiver.latest(name, where={"engine": "1"})]


class TestResource:
    """Resource attributes: ours, then the standard variables, then the flag."""

    async def test_sink_resource_defaults(
        self, direct: Direct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """service.name=aiperf, the version and the benchmark id."""
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        await drive(_sink(direct), make_run(tmp_path), [request_done(0)])
        resource = direct.receiver.resources()[0]
        assert ("aiperf", "0.1.0", "bench-0001") == (
            resource[sc.SERVICE_NAME],
            resource[sc.SERVICE_VERSION],
            resource[sc.BENCHMARK_ID],
        )

    async def test_sink_resource_precedence(
        self, direct: Direct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES override ours; the flag overrides both."""
        monkeypatch.setenv("OTEL_SERVICE_NAME", "bench-svc")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=infra,region=eu")
        sink = _sink(direct, resource_attributes=(("region", "us"), ("cluster", "a")))
        await drive(sink, make_run(tmp_path), [request_done(0)])
        for resource in direct.receiver.resources():
            assert ("bench-svc", "infra", "us", "a") == (
                resource[sc.SERVICE_NAME],
                resource["team"],
                resource["region"],
                resource["cluster"],
            )


class TestLoss:
    """What happens when the collector is missing or failing."""

    async def test_sink_unreachable_warns_and_drains(self, direct: Direct, tmp_path: Path) -> None:
        """The seed's exact warning; events are drained (never dropped) and nothing is built."""
        sink = OtelSink(
            config=otel_config(endpoints=parse_otel_url("http://localhost:4318")),
            make_exporters=direct,
            probe=lambda url, timeout: False,
        )
        events = _mixed_run()
        with structlog.testing.capture_logs() as logs:
            await drive(sink, make_run(tmp_path), events)
        warnings = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
        assert [
            "OTel collector at http://localhost:4318 is not reachable. Metrics will not be exported."
        ] == warnings
        assert (0, 0) == (direct.metrics.calls, direct.spans.calls)
        assert (
            "otel: the collector at http://localhost:4318 was not reachable; nothing was exported"
            == sink.report()
        )

    async def test_sink_probe_is_bounded(
        self, direct: Direct, tmp_path: Path, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A probe that hangs is abandoned after the budget and counts as unreachable."""
        release = threading.Event()

        def hanging_probe(url: str, timeout_s: float) -> bool:
            release.wait(10)
            return True

        sink = OtelSink(config=otel_config(), make_exporters=direct, probe=hanging_probe)
        try:
            with structlog.testing.capture_logs() as logs:
                started = trio.current_time()
                await sink.open(make_run(tmp_path))
                waited = trio.current_time() - started
        finally:
            release.set()
        assert sink_module.PROBE_BUDGET_S == waited
        assert ["warning"] == [entry["log_level"] for entry in logs]

    async def test_sink_report_none_when_all_delivered(
        self, direct: Direct, tmp_path: Path
    ) -> None:
        """Nothing lost, nothing to say."""
        sink = _sink(direct)
        await drive(sink, make_run(tmp_path), _mixed_run())
        assert sink.report() is None

    async def test_sink_failed_exports_are_counted(self, direct: Direct, tmp_path: Path) -> None:
        """A collector refusing everything: one line with failed exports and undelivered spans."""
        direct.metrics.fail = True
        direct.spans.fail = True
        sink = _sink(direct)
        await drive(sink, make_run(tmp_path), _mixed_run())
        assert "otel: 1 of 1 metric exports failed; 6 of 6 spans not delivered" == sink.report()

    async def test_sink_hanging_flush_is_abandoned(
        self, direct: Direct, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A final flush stuck in the network is given up after the budget and reported."""
        # Real time, not an autojump clock: the start-up probe also waits on a thread, and an
        # autojump clock would expire its budget before the thread could answer.
        monkeypatch.setattr(sink_module, "FLUSH_BUDGET_S", 0.2)
        release = threading.Event()
        blocking = direct.metrics

        def hang(*args: Any, **kwargs: Any) -> Any:
            release.wait(10)
            return None

        blocking.export = hang  # type: ignore[method-assign]
        sink = _sink(direct, stream=Stream.METRICS)
        try:
            await drive(sink, make_run(tmp_path), [request_done(0)])
        finally:
            release.set()
        assert (
            f"otel: the final flush did not finish within {sink_module.FLUSH_BUDGET_S:g} s"
            == sink.report()
        )


class TestCountingExporter:
    """The exporter wrapper counts results and stops retrying a dead collector at the end."""

    def test_counting_exporter_fail_fast_after_failure(self) -> None:
        """Once fail-fast is on and the last export failed, the inner exporter is not called."""
        inner = ReceiverMetricExporter(OtlpReceiver())
        inner.fail = True
        counting = CountingMetricExporter(inner)
        counting.export(None)  # type: ignore[arg-type]
        counting.fail_fast.enabled = True
        counting.export(None)  # type: ignore[arg-type]
        assert (1, 2, 2) == (inner.calls, counting.tally.exports, counting.tally.failed)

    def test_counting_exporter_keeps_trying_a_recovered_collector(self) -> None:
        """Fail-fast only skips while the last export failed."""
        inner = ReceiverMetricExporter(OtlpReceiver())
        counting = CountingMetricExporter(inner)
        counting.fail_fast.enabled = True
        inner.fail = True
        counting.export(None)  # type: ignore[arg-type]
        assert (1, 1) == (inner.calls, counting.tally.failed)

    def test_counting_exporter_passes_temporality_through(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta reaches the reader."""
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import Histogram
        from opentelemetry.sdk.metrics.export import AggregationTemporality

        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
        counting = CountingMetricExporter(
            OTLPMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics")
        )
        assert AggregationTemporality.DELTA == counting._preferred_temporality[Histogram]
