"""Server, network and telemetry faults against the real CLI and the real mock server.

Whatever goes wrong, every request is accounted for (one JSONL line each, counted by error
type), the run never hangs, and the exports are written. The mock server injects each fault
itself and reports how many it injected, so every count here is checked against the server's
own record rather than against a number written into the test.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer, free_port
from support.cli_run import (
    COUNT,
    GUARD_S,
    Run,
    profile,
    start_profile,
)

pytestmark = pytest.mark.integration



def finish(process: subprocess.Popen[str], run_dir: Path) -> Run:
    stdout, stderr = process.communicate(timeout=GUARD_S)
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return Run(process=done, run_dir=run_dir)


def wait_until(predicate: Callable[[], Any], timeout: float = GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.05)


@pytest.fixture
def popen_guard() -> Iterator[list[subprocess.Popen[str]]]:
    """Runs started in the background are killed at the end, whatever the test did."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


# -- server faults -----------------------------------------------------------------------------


class TestHttpErrors:
    @pytest.mark.parametrize("status", [500, 503, 429])
    def test_http_errors_counted_by_type_run_continues(self, tmp_path: Path, status: int) -> None:
        """A share of 500/503/429: counted by type; summary in console, JSON and CSV; exit 0."""
        with MockServer(error_rate=0.3, error_status=status, seed=11) as server:
            run = profile(server.url, tmp_path / "run")
            truth = server.stats()["requests"]
        injected = truth["errors"].get(str(status), 0)
        assert 0 < injected < COUNT  # the seed gives both outcomes

        assert 0 == run.code, run.output
        run.assert_complete()
        assert COUNT == truth["total"] == len(run.records())
        assert truth["ok"] == run.metric("request_count")
        assert injected == run.metric("error_request_count")
        assert pytest.approx(100.0 * injected / COUNT) == run.metric("request_error_rate")

        (error,) = run.summary["errors"]
        assert str(status) == error["type"]
        assert injected == error["count"]
        assert error["first_message"].startswith(f"HTTP {status}: ")
        assert [[str(status), str(injected), error["first_message"]]] == run.csv_errors()

        console = run.process.stdout
        rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in console.splitlines() if line.startswith("|")]
        assert [str(status), str(injected)] in [row[:2] for row in rows]
        (rate_row,) = [row for row in rows if row[0] == "Request Error Rate (%)"]
        assert f"{100.0 * injected / COUNT:.6g}" == rate_row[1]

        for record in run.errors():
            assert status == record["status_code"]
            assert str(status) == record["error"]["type"]

    def test_http_errors_carry_error_type_on_otel(self, tmp_path: Path) -> None:
        """Failed requests reach OTel as operation.duration with error.type = the status."""
        from support.otlp_receiver import OtlpReceiver

        with MockServer(error_rate=0.3, error_status=503, seed=11) as server, OtlpReceiver() as collector:
            run = profile(server.url, tmp_path / "run", "--otel-url", collector.url)
            injected = server.stats()["requests"]["errors"]["503"]
            failed = collector.histogram("gen_ai.client.operation.duration", where={"error.type": "503"})
            succeeded = collector.histogram("gen_ai.client.operation.duration", where={"error.type": None})
        assert 0 == run.code, run.output
        assert injected == failed.count
        assert COUNT - injected == succeeded.count

    def test_every_request_failing_exits_1_with_exports(self, tmp_path: Path) -> None:
        """Every request errors: exit 1, one line saying so, and every export still written."""
        with MockServer(error_rate=1.0, error_status=503) as server:
            run = profile(server.url, tmp_path / "run")
            truth = server.stats()["requests"]
        assert 1 == run.code, run.output
        run.assert_complete()
        assert COUNT == truth["errors"]["503"]
        assert "FAILED" == run.summary["status"]
        assert [{"type": "503", "count": COUNT}] == [
            {"type": e["type"], "count": e["count"]} for e in run.summary["errors"]
        ]
        assert 0 == run.metric("request_count")
        assert COUNT == run.metric("error_request_count")
        assert "Every request failed" in run.process.stderr


#: what a client sees for each connection fault (see docs/mock-server.md, fault kinds).
CONNECTION_FAULT_TYPES = {
    ("reset", True): "ReadError",
    ("reset", False): "ReadError",
    ("close", True): "incomplete_stream",
    ("close", False): "RemoteProtocolError",
    ("disconnect", True): "RemoteProtocolError",
    ("disconnect", False): "RemoteProtocolError",
}


class TestConnectionFaults:
    @pytest.mark.parametrize("streaming", [True, False], ids=["stream", "body"])
    @pytest.mark.parametrize("kind", ["reset", "close", "disconnect"])
    def test_connection_fault_is_an_error_with_partial_timing(
        self, tmp_path: Path, kind: str, streaming: bool
    ) -> None:
        """Reset, close before [DONE], disconnect mid-body: an error each, timing kept, no hang."""
        with MockServer(faults={kind: 0.3}, seed=5, itl_ms=5) as server:
            run = profile(server.url, tmp_path / "run", streaming=streaming)
            truth = server.stats()["requests"]
        faulted = truth["faults"][kind]
        assert 0 < faulted < COUNT

        assert 0 == run.code, run.output
        run.assert_complete()
        assert COUNT == len(run.records())
        assert {CONNECTION_FAULT_TYPES[kind, streaming]: faulted} == dict(run.error_types())
        assert faulted == run.metric("error_request_count")
        assert truth["ok"] == run.metric("request_count")
        for record in run.errors():
            # the message says what happened, not only which wrapper raised it
            assert record["error"]["message"] not in ("", record["error"]["type"], "BrokenResourceError")
            assert record["start_time_ns"] <= record["end_time_ns"]
            assert record["metrics"]["request_latency"] > 0
        if streaming and kind != "reset":
            # Half the answer (4 of 8 content chunks) arrived before the fault: its timing is
            # kept in the request's line. (A reset may discard data the client had not read.)
            for record in run.errors():
                assert record["metrics"]["time_to_first_token"] > 0
                assert 3 == len(record["metrics"]["inter_chunk_latency"])
        if kind == "reset":
            assert all("reset" in r["error"]["message"].lower() for r in run.errors())

    def test_server_gone_mid_run_fails_the_rest_fast(
        self, tmp_path: Path, popen_guard: list[subprocess.Popen[str]]
    ) -> None:
        """The server dies mid-run: in-flight and later requests are errors, the run ends."""
        server = MockServer(itl_ms=10)
        server.start()
        try:
            process = start_profile(server.url, tmp_path / "run", count=60, concurrency=2)
            popen_guard.append(process)
            wait_until(lambda: server.stats()["requests"]["ok"] >= 4)
        finally:
            server.stop()
        run = finish(process, tmp_path / "run")

        assert 0 == run.code, run.output  # some requests succeeded
        run.assert_complete()
        assert 60 == len(run.records())
        types = run.error_types()
        assert types["ConnectError"] > 0
        refused = [r for r in run.errors() if r["error"]["type"] == "ConnectError"]
        assert all("Connection refused" in r["error"]["message"] for r in refused)
        assert 4 <= run.metric("request_count")
        assert 60 == run.metric("request_count") + run.metric("error_request_count")


class TestMalformedResponses:
    @pytest.mark.parametrize("streaming", [True, False], ids=["stream", "body"])
    @pytest.mark.parametrize("kind", ["malformed-sse", "malformed-json"])
    def test_malformed_data_is_a_parse_error(self, tmp_path: Path, kind: str, streaming: bool) -> None:
        """A broken SSE event or JSON document fails that request as parse_error, nothing more."""
        with MockServer(faults={kind: 0.3}, seed=5) as server:
            run = profile(server.url, tmp_path / "run", streaming=streaming)
            truth = server.stats()["requests"]
        faulted = truth["faults"][kind]
        assert 0 < faulted < COUNT
        assert 0 == run.code, run.output
        run.assert_complete()
        assert {"parse_error": faulted} == dict(run.error_types())
        assert truth["ok"] == run.metric("request_count")
        assert [["parse_error", str(faulted)]] == [row[:2] for row in run.csv_errors()]


class TestStalls:
    @pytest.mark.parametrize("kind", ["stall-first", "stall-mid"])
    def test_stall_ends_as_timeout_and_frees_its_slot(self, tmp_path: Path, kind: str) -> None:
        """A stalled request ends at --request-timeout-seconds; the run finishes every request."""
        # With 2 slots and half the requests stalling for a minute, the run can only finish
        # (inside the guard) if each timeout gives its slot back.
        with MockServer(faults={kind: 0.5}, stall_seconds=60, seed=3, itl_ms=1) as server:
            run = profile(
                server.url, tmp_path / "run", "--request-timeout-seconds", "0.5",
                count=8, concurrency=2,
            )  # fmt: skip
            truth = server.stats()["requests"]
            # the client hung up on every stalled request: nothing is left on the server
            wait_until(lambda: server.stats()["requests"]["in_flight"] == 0, timeout=30)
        stalled = truth["faults"][kind]
        assert 0 < stalled < 8
        assert 0 == run.code, run.output
        run.assert_complete()
        assert 8 == len(run.records())
        assert {"timeout": stalled} == dict(run.error_types())
        assert truth["ok"] == run.metric("request_count") == 8 - stalled
        for record in run.errors():
            assert "0.5 s" in record["error"]["message"]
        if kind == "stall-mid":
            # half the answer came before the stall: its timing is kept
            assert all("time_to_first_token" in r["metrics"] for r in run.errors())


class TestServerAtStart:
    def test_wait_for_model_timeout_waits_for_a_late_server(
        self, tmp_path: Path, popen_guard: list[subprocess.Popen[str]]
    ) -> None:
        """--wait-for-model-timeout: aiperf waits for a server that comes up after it started."""
        port = free_port()
        process = start_profile(
            f"http://127.0.0.1:{port}", tmp_path / "run", "--wait-for-model-timeout", "60"
        )
        popen_guard.append(process)
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(process.stderr.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        # Start the server only once aiperf has found nothing listening and says it waits.
        wait_until(lambda: any("waiting_for_server" in line for line in lines) or process.poll() is not None)
        assert process.poll() is None, "".join(lines)
        with MockServer(port=port) as server:
            code = process.wait(timeout=GUARD_S)
            truth = server.stats()["requests"]
        reader.join(timeout=10)
        assert 0 == code, "".join(lines)
        run = Run(process=subprocess.CompletedProcess(process.args, code, "", "".join(lines)), run_dir=tmp_path / "run")
        run.assert_complete()
        assert COUNT == truth["ok"] == run.metric("request_count")

    def test_wait_for_model_timeout_gives_up_with_one_line(self, tmp_path: Path) -> None:
        """Nobody comes up within the wait: one line, exit 1."""
        run = profile(f"http://127.0.0.1:{free_port()}", tmp_path / "run", "--wait-for-model-timeout", "1")
        assert 1 == run.code
        errors = [line for line in run.process.stderr.splitlines() if line.startswith("aiperf: error:")]
        assert 1 == len(errors), run.output
        assert "cannot reach the server" in errors[0] and "waited 1 s" in errors[0]
        assert "Traceback" not in run.output


# -- telemetry backends ------------------------------------------------------------------------


def _notes_about(run: Run, sink: str) -> list[str]:
    return [note for note in run.summary["notes"] if note.lower().startswith(sink)]


class TestTelemetryBackends:
    """A dead or dying sink loses telemetry, never requests: same count, full run directory,
    and one line saying what was lost."""

    def test_otel_collector_not_listening(self, tmp_path: Path) -> None:
        collector = f"http://127.0.0.1:{free_port()}"
        with MockServer() as server:
            run = profile(server.url, tmp_path / "run", "--otel-url", collector)
            truth = server.stats()["requests"]
        assert 0 == run.code, run.output
        run.assert_complete()
        assert COUNT == truth["ok"] == run.metric("request_count")
        (note,) = _notes_about(run, "otel")
        assert collector in note
        assert f"note: {note}" in run.process.stdout

    def test_otel_collector_killed_mid_run(
        self, tmp_path: Path, popen_guard: list[subprocess.Popen[str]]
    ) -> None:
        from support.otlp_receiver import OtlpReceiver

        count = 40
        with MockServer(itl_ms=10) as server:
            collector = OtlpReceiver()
            collector.start()
            try:
                process = start_profile(
                    server.url, tmp_path / "run", "--otel-url", collector.url,
                    "--otel-export-interval", "0.2", count=count, concurrency=2,
                )  # fmt: skip
                popen_guard.append(process)
                wait_until(lambda: collector.requests("/v1/metrics") or process.poll() is not None)
            finally:
                collector.stop()
            assert process.poll() is None, "the run ended before the collector could be killed"
            run = finish(process, tmp_path / "run")
            truth = server.stats()["requests"]
        assert 0 == run.code, run.output
        run.assert_complete()
        assert count == truth["ok"] == run.metric("request_count")
        (note,) = _notes_about(run, "otel")
        assert "failed" in note or "not delivered" in note

    def test_mlflow_server_down_at_start(self, tmp_path: Path) -> None:
        tracking = f"http://127.0.0.1:{free_port()}"
        with MockServer() as server:
            run = profile(server.url, tmp_path / "run", "--mlflow-tracking-uri", tracking)
            truth = server.stats()["requests"]
        assert 0 == run.code, run.output
        run.assert_complete()
        assert COUNT == truth["ok"] == run.metric("request_count")
        # the seed's warning at start, then one line after the last attempt saying what was lost
        stderr = run.process.stderr
        assert 1 == stderr.count(f"WARNING  MLflow tracking server at {tracking} did not respond within 5s.")
        (lost,) = [line for line in stderr.splitlines() if "not uploaded" in line]
        assert lost.startswith(f"WARNING  mlflow: run files not uploaded to {tracking} ("), lost
        assert "live points lost" in lost

    def test_mlflow_server_killed_mid_run(
        self, tmp_path: Path, popen_guard: list[subprocess.Popen[str]]
    ) -> None:
        from support.mlflow_server import MlflowServer

        count = 40
        with MockServer(itl_ms=10) as server, MlflowServer(tmp_path / "mlflow") as tracking:
            process = start_profile(
                server.url, tmp_path / "run", "--mlflow-tracking-uri", tracking.url,
                count=count, concurrency=2,
            )  # fmt: skip
            popen_guard.append(process)
            # the live run exists once mlflow_export.json is written; then a few requests
            wait_until(lambda: (tmp_path / "run" / "mlflow_export.json").is_file() or process.poll() is not None)
            server.reset_stats()
            wait_until(lambda: server.stats()["requests"]["ok"] >= 2 or process.poll() is not None)
            assert process.poll() is None, "the run ended before the MLflow server could be killed"
            tracking.kill()
            run = finish(process, tmp_path / "run")
        assert 0 == run.code, run.output
        run.assert_complete()
        assert count == run.metric("request_count") == len(run.records())
        (note,) = _notes_about(run, "mlflow")
        assert "not logged" in note or "fail" in note
