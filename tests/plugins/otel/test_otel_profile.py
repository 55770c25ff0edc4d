"""`aiperf profile --otel-url ...` against the mock server, with a real OTLP receiver on loopback.

Every assertion compares what crossed the wire with what the same run wrote to its run
directory (docs/run-directory.md), so the telemetry is checked against the run's own records.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
import trustme
from aiperf.testing import MockServer, free_port
from aiperf_otel import semconv as sc
from otel_runs import RUN_TIMEOUT_S, RunDir, describe, run_profile, start_profile, warnings_of
from support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

REQUESTS = 24
WARMUP = 2
PROFILE = {sc.PHASE: "profile"}


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    # One failure in five (seeded), so error.type series and error spans are exercised.
    with MockServer(ttft_ms=20, itl_ms=2, output_tokens=16, error_rate=0.2, seed=7) as mock:
        yield mock


@pytest.fixture(scope="module")
def streamed(
    server: MockServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]]:
    """One run with the seed's flags (plus a warm-up, a provider override and collector auth)."""
    run_dir = tmp_path_factory.mktemp("otel") / "run"
    with OtlpReceiver() as receiver:
        result = run_profile(
            server.url,
            run_dir,
            "--otel-url",
            receiver.url,
            "--stream",
            "default",
            "--gen-ai-provider",
            "vllm",
            "--warmup-request-count",
            str(WARMUP),
            "--api-key",
            "sk-live-apikey-1234",
            "--otel-resource-attributes",
            "team=infra,deployment.environment=ci",
            env={"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20collector-token-5678"},
            requests=REQUESTS,
        )
        yield receiver, RunDir(run_dir), result


class TestProfileMetrics:
    """The GenAI histograms agree with the run's own exports."""

    def test_profile_run_succeeds_quietly(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """The run exits 0 with no warning and no OTel note: nothing was lost."""
        _, run, result = streamed
        assert 0 == result.returncode, describe(result)
        assert [] == warnings_of(result.stderr)
        assert [] == [n for n in run.summary["notes"] if n.startswith("otel")]

    def test_profile_metric_names_units_buckets(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """The four GenAI metrics, as histograms with the documented units and boundaries."""
        receiver, _, _ = streamed
        expected = {
            sc.OPERATION_DURATION: ("s", sc.DURATION_BUCKETS),
            sc.TOKEN_USAGE: ("{token}", sc.TOKEN_BUCKETS),
            sc.TIME_TO_FIRST_CHUNK: ("s", sc.CHUNK_BUCKETS),
            sc.TIME_PER_OUTPUT_CHUNK: ("s", sc.CHUNK_BUCKETS),
        }
        for name, (unit, buckets) in expected.items():
            assert {("histogram", unit, tuple(map(float, buckets)))} == {
                (p.kind, p.unit, p.explicit_bounds) for p in receiver.points(name)
            }, name

    def test_profile_duration_count_and_sum_match_jsonl(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Count = requests of the measured phase (ok + failed); sum = their latencies."""
        receiver, run, _ = streamed
        records = run.records()
        total = receiver.histogram(sc.OPERATION_DURATION, where=PROFILE)
        ok = run.run_metric("request_count")
        failed = run.run_metric("error_request_count")
        assert REQUESTS == len(records) == total.count == ok + failed
        latency_s = (
            sum(
                r["metrics"]["request_latency"]
                for r in records
                if "request_latency" in r["metrics"]
            )
            / 1e3
        )
        assert latency_s == pytest.approx(total.sum, rel=1e-9)
        assert WARMUP == receiver.histogram(sc.OPERATION_DURATION, where={sc.PHASE: "warmup"}).count

    def test_profile_errors_carry_error_type(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Failed requests form duration series keyed by error.type, counted as the export says."""
        receiver, run, _ = streamed
        by_type: dict[str, int] = {}
        for record in run.records():
            if record["error"]:
                by_type[record["error"]["type"]] = by_type.get(record["error"]["type"], 0) + 1
        assert by_type, "the mock server was asked to fail some requests"
        for error_type, count in by_type.items():
            where = {**PROFILE, sc.ERROR_TYPE: error_type}
            assert count == receiver.histogram(sc.OPERATION_DURATION, where=where).count

    def test_profile_token_sums_match_totals(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Input and output token series both arrive; their sums are the exported totals."""
        receiver, run, _ = streamed
        tokens_in = receiver.histogram(sc.TOKEN_USAGE, where={**PROFILE, sc.TOKEN_TYPE: "input"})
        tokens_out = receiver.histogram(sc.TOKEN_USAGE, where={**PROFILE, sc.TOKEN_TYPE: "output"})
        assert run.run_metric("total_input_tokens") == tokens_in.sum
        assert run.run_metric("total_output_tokens") == tokens_out.sum
        assert run.run_metric("request_count") == tokens_in.count == tokens_out.count

    def test_profile_chunk_metrics_match_jsonl(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """One TTFT per successful request and one point per chunk gap."""
        receiver, run, _ = streamed
        ok = [r for r in run.records() if not r["error"]]
        gaps = [g for r in ok for g in r["metrics"].get("inter_chunk_latency", [])]
        ttfc = receiver.histogram(sc.TIME_TO_FIRST_CHUNK, where=PROFILE)
        tpoc = receiver.histogram(sc.TIME_PER_OUTPUT_CHUNK, where=PROFILE)
        assert len(ok) == ttfc.count
        assert sum(r["metrics"]["time_to_first_token"] for r in ok) / 1e3 == pytest.approx(
            ttfc.sum, rel=1e-9
        )
        assert len(gaps) == tpoc.count
        assert sum(gaps) / 1e3 == pytest.approx(tpoc.sum, rel=1e-9, abs=1e-9)

    def test_profile_metric_attributes(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """GenAI attributes, the provider override and aiperf dimensions; no request ids."""
        receiver, run, _ = streamed
        point = receiver.latest(sc.TIME_TO_FIRST_CHUNK, where=PROFILE)[0]
        host, port = run.summary["input_config"]["url"].removeprefix("http://").split(":")
        assert {
            sc.OPERATION_NAME: "chat",
            sc.PROVIDER_NAME: "vllm",
            sc.REQUEST_MODEL: "my-model",
            sc.RESPONSE_MODEL: "my-model",
            sc.SERVER_ADDRESS: host,
            sc.SERVER_PORT: int(port),
            sc.BENCHMARK_ID: run.summary["benchmark_id"],
            sc.ENDPOINT_TYPE: "chat",
            sc.PHASE: "profile",
            sc.LOAD_SETTING: "concurrency4",
        } == point.attributes
        assert not any(sc.REQUEST_INDEX in p.attributes for p in receiver.points())

    def test_profile_resource_and_collector_auth(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Resource attributes from aiperf and the flag; OTEL_EXPORTER_OTLP_HEADERS reaches the collector."""
        receiver, run, _ = streamed
        resource = receiver.resources()[0]
        assert (
            "aiperf",
            run.summary["aiperf_version"],
            run.summary["benchmark_id"],
            "infra",
            "ci",
        ) == (
            resource[sc.SERVICE_NAME],
            resource[sc.SERVICE_VERSION],
            resource[sc.BENCHMARK_ID],
            resource["team"],
            resource["deployment.environment"],
        )
        posts = [r for r in receiver.requests() if r.method == "POST"]
        assert posts and {"Bearer collector-token-5678"} == {
            r.header("authorization") for r in posts
        }

    def test_profile_secrets_stay_out(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Neither the API key nor the collector token reaches telemetry, logs or run files."""
        receiver, run, result = streamed
        telemetry = repr(receiver.points()) + repr(receiver.spans()) + repr(receiver.resources())
        for secret in ("sk-live-apikey-1234", "collector-token-5678"):
            assert secret not in telemetry
            assert secret not in result.stdout + result.stderr
            assert secret not in run.text_of_all_files()

    def test_profile_url_userinfo_authenticates_and_stays_hidden(
        self, server: MockServer, tmp_path: Path
    ) -> None:
        """user:password@ in --otel-url becomes Basic auth for the collector, and is shown nowhere."""
        with OtlpReceiver() as receiver:
            url = receiver.url.replace("http://", "http://otel-user:otel-pass-9999@")
            result = run_profile(server.url, tmp_path / "run", "--otel-url", url, "-v", requests=4)
        assert 0 == result.returncode, describe(result)
        posts = [r for r in receiver.requests() if r.method == "POST"]
        assert posts and {"Basic b3RlbC11c2VyOm90ZWwtcGFzcy05OTk5"} == {
            r.header("authorization") for r in posts
        }
        assert "otel-pass-9999" not in result.stdout + result.stderr
        assert "otel-pass-9999" not in RunDir(tmp_path / "run").text_of_all_files()
        assert receiver.url in result.stderr  # the -v line names the collector, without userinfo


class TestProfileSpans:
    """One CLIENT span per request, at the times the run directory records."""

    def test_profile_one_span_per_request_with_real_times(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Span start and end are the request's start and end from profile_export.jsonl."""
        receiver, run, _ = streamed
        spans = {s.attributes[sc.REQUEST_INDEX]: s for s in receiver.spans(where=PROFILE)}
        records = {r["request_index"]: r for r in run.records()}
        assert sorted(records) == sorted(spans)
        assert REQUESTS == len(receiver.spans(where=PROFILE))
        for index, record in records.items():
            span = spans[index]
            assert ("chat my-model", "client") == (span.name, span.kind)
            assert (record["start_time_ns"], record["end_time_ns"]) == (
                span.start_time_unix_nano,
                span.end_time_unix_nano,
            )
            if record["error"]:
                assert ("error", record["error"]["type"]) == (
                    span.status,
                    span.attributes[sc.ERROR_TYPE],
                )
            else:
                ttft_s = record["metrics"]["time_to_first_token"] / 1e3
                assert ttft_s == pytest.approx(
                    span.attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK], abs=1e-9
                )
                [event] = span.events
                assert record["start_time_ns"] + round(ttft_s * 1e9) == pytest.approx(
                    event.time_unix_nano, abs=2
                )
                assert (
                    record["metrics"]["output_sequence_length"]
                    == span.attributes[sc.USAGE_OUTPUT_TOKENS]
                )

    def test_profile_progress_counters(
        self, streamed: tuple[OtlpReceiver, RunDir, subprocess.CompletedProcess[str]]
    ) -> None:
        """Final progress: every request sent and answered, none in flight."""
        receiver, run, _ = streamed
        every = run.records(phase=None)  # the counters include the warm-up
        assert REQUESTS + WARMUP == len(every)
        failed = float(sum(1 for r in every if r["error"]))
        ok = len(every) - failed
        final = {
            name: receiver.latest(name)[0].value
            for name in (
                sc.REQUESTS_SENT,
                sc.REQUESTS_COMPLETED,
                sc.REQUESTS_FAILED,
                sc.REQUESTS_IN_FLIGHT,
            )
        }
        assert {
            sc.REQUESTS_SENT: ok + failed,
            sc.REQUESTS_COMPLETED: ok,
            sc.REQUESTS_FAILED: failed,
            sc.REQUESTS_IN_FLIGHT: 0.0,
        } == final


class TestCollectorTrouble:
    """A missing or dying collector costs telemetry, never the benchmark."""

    def test_profile_collector_down_at_start(self, server: MockServer, tmp_path: Path) -> None:
        """The seed's warning, the run completes, and the summary notes what was lost."""
        port = free_port()
        result = run_profile(
            server.url, tmp_path / "run", "--otel-url", f"localhost:{port}", requests=8
        )
        assert 0 == result.returncode, describe(result)
        assert [
            f"WARNING  OTel collector at http://localhost:{port} is not reachable. Metrics will not be exported."
        ] == warnings_of(result.stderr)
        run = RunDir(tmp_path / "run")
        assert 8 == len(run.records())
        assert [
            f"otel: the collector at http://localhost:{port} was not reachable; nothing was exported"
        ] == [n for n in run.summary["notes"] if n.startswith("otel")]

    def test_profile_collector_killed_mid_run(self, tmp_path: Path) -> None:
        """Exports after the collector died are counted in one line; the results are whole."""
        requests = 60
        # About 3 s of load, so the collector can die while requests are still running.
        with (
            MockServer(ttft_ms=20, itl_ms=10, output_tokens=16) as slow,
            OtlpReceiver() as receiver,
        ):
            process = start_profile(
                slow.url,
                tmp_path / "run",
                "--otel-url",
                receiver.url,
                "--otel-export-interval",
                "0.2",
                requests=requests,
                concurrency=4,
            )
            try:
                assert receiver.wait_for(
                    lambda r: r.points(sc.OPERATION_DURATION, where=PROFILE), timeout=RUN_TIMEOUT_S
                ), "no metrics arrived before the collector was to be stopped"
                receiver.stop()
                out, err = process.communicate(timeout=RUN_TIMEOUT_S)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert 0 == process.returncode, describe((process.returncode, out, err))
        run = RunDir(tmp_path / "run")
        assert (requests, 0.0) == (
            run.run_metric("request_count"),
            run.run_metric("error_request_count"),
        )
        [note] = [n for n in run.summary["notes"] if n.startswith("otel")]
        assert note.startswith("otel: ") and "metric exports failed" in note
        failed, _, exports = (
            note.removeprefix("otel: ").split(" metric exports failed")[0].partition(" of ")
        )
        assert 0 < int(failed) < int(exports)
        assert f"note: {note}" in out
        assert receiver.histogram(sc.OPERATION_DURATION, where=PROFILE).count < requests


class TestHttps:
    """An https collector: trusted through OTEL_EXPORTER_OTLP_CERTIFICATE, or reported as failing."""

    @pytest.fixture
    def tls_receiver(self, tmp_path: Path) -> Iterator[tuple[OtlpReceiver, Path]]:
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        ca_file = tmp_path / "collector-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        with OtlpReceiver(tls=context) as receiver:
            yield receiver, ca_file

    def test_profile_https_collector_with_ca_file(
        self, server: MockServer, tmp_path: Path, tls_receiver: tuple[OtlpReceiver, Path]
    ) -> None:
        """The collector's CA file wins even where REQUESTS_CA_BUNDLE points elsewhere."""
        receiver, ca_file = tls_receiver
        assert receiver.url.startswith("https://")
        env = {
            "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca_file),
            "REQUESTS_CA_BUNDLE": certifi.where(),
        }
        result = run_profile(
            server.url, tmp_path / "run", "--otel-url", receiver.url, env=env, requests=8
        )
        assert 0 == result.returncode, describe(result)
        assert 8 == receiver.histogram(sc.OPERATION_DURATION, where=PROFILE).count
        assert 8 == len(receiver.spans(where=PROFILE))

    def test_profile_https_untrusted_collector_is_reported(
        self, server: MockServer, tmp_path: Path, tls_receiver: tuple[OtlpReceiver, Path]
    ) -> None:
        """Without the CA every export fails; the run is whole and says what was lost."""
        receiver, _ = tls_receiver
        # OTEL_EXPORTER_OTLP_TIMEOUT is honoured: one second per export instead of retrying for five.
        env = {"REQUESTS_CA_BUNDLE": certifi.where(), "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
        result = run_profile(
            server.url, tmp_path / "run", "--otel-url", receiver.url, env=env, requests=8
        )
        assert 0 == result.returncode, describe(result)
        run = RunDir(tmp_path / "run")
        assert 8 == len(run.records())
        [note] = [n for n in run.summary["notes"] if n.startswith("otel")]
        assert note.endswith("metric exports failed; 8 of 8 spans not delivered"), note
        assert ([], []) == (receiver.points(), receiver.spans())
