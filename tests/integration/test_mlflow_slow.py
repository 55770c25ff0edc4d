"""A slow MLflow tracking server loses MLflow data, never benchmark data (issue 8, telemetry row).

The fake server answers ``GET /health`` at once, so the plugin's probe finds it alive, and then
holds every REST call (``/api/2.0/mlflow/...``) for longer than the client's timeout. The
benchmark with ``--mlflow-tracking-uri`` pointing at it must give the same results as the same
benchmark without it: exit 0, the same request count, TTFT within a millisecond of the mock
server's own truth, a complete run directory, and one line that says MLflow lost something.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiperf.testing import LoopbackServer, MockServer, Received, Reply

pytestmark = pytest.mark.integration

COUNT = 20
#: the client's per-call timeout (seconds) and the server's delay on every REST call: longer.
CLIENT_TIMEOUT_S = 2
DELAY_S = 4.0
#: a guard against a hang per aiperf run, never a measurement.
GUARD_S = 60
CORE_FILES = (
    "profile_export_aiperf.json",
    "profile_export_aiperf.csv",
    "profile_export.jsonl",
    "inputs.json",
    "metadata.json",
)


class SlowMlflow(LoopbackServer):
    """A tracking server that is up (``/health`` answers) but too slow for every API call."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests()]

    def respond(self, request: Received) -> Reply:
        if request.path.split("?")[0] == "/health":
            return Reply(body=b"OK", content_type="text/plain")
        time.sleep(self.delay_s)
        return Reply()

    def api_calls(self) -> list[str]:
        return [p for p in self.paths if "/api/" in p]


@attrs.frozen
class Run:
    process: subprocess.CompletedProcess[str]
    run_dir: Path
    #: the mock server's own record of this run's requests.
    truth: dict[str, Any]

    @property
    def output(self) -> str:
        return self.process.stdout + self.process.stderr

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "profile_export_aiperf.json").read_text())

    def mlflow_notes(self) -> list[str]:
        return [n for n in self.summary["notes"] if "mlflow" in n.lower()]


@attrs.frozen
class Scenario:
    plain: Run
    slow: Run
    #: what the slow tracking server was asked, in order.
    mlflow_requests: list[str]
    seconds: float


def child_env() -> dict[str, str]:
    """The user's MLflow/OTel settings never leak in; the client's timeout is short."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CLIENT_TIMEOUT_S),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        }
    )
    return env


def profile(server: MockServer, run_dir: Path, *extra: str) -> Run:
    """One run from fresh server stats. (Not the ``aiperf_cli`` fixture: that one merges the
    whole environment in, and a user's own ``MLFLOW_*`` settings must not reach this run.)"""
    server.reset_stats()
    process = subprocess.run(
        [
            sys.executable, "-m", "aiperf", "profile", "--url", server.url, "-m", "mock-model",
            "--endpoint-type", "chat", "--streaming",
            "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
            "--concurrency", "2", "--request-count", str(COUNT),
            "--artifact-dir", str(run_dir), "--no-progress", "--random-seed", "1", *extra,
        ],
        capture_output=True, text=True, timeout=GUARD_S, env=child_env(), check=False,
    )  # fmt: skip
    return Run(process=process, run_dir=run_dir, truth=server.stats())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """The same benchmark twice: without MLflow, then logging to the slow tracking server."""
    tmp = tmp_path_factory.mktemp("mlflow_slow")
    tracking = SlowMlflow(DELAY_S)
    tracking.start()
    try:
        with MockServer(ttft_ms=20, itl_ms=5) as server:
            started = time.monotonic()
            plain = profile(server, tmp / "plain")
            slow = profile(server, tmp / "slow", "--mlflow-tracking-uri", tracking.url)
            seconds = time.monotonic() - started
        yield Scenario(
            plain=plain, slow=slow, mlflow_requests=list(tracking.paths), seconds=seconds
        )
    finally:
        tracking.stop()


def test_slow_mlflow_server_changes_nothing_in_the_benchmark(scenario: Scenario) -> None:
    """Exit 0, the same request count, TTFT within 1 ms of the server's truth, every file."""
    # the fake was reached and the plugin really did wait on its slow API
    assert [r for r in scenario.mlflow_requests if "/api/2.0/mlflow/" in r], scenario.slow.output
    for run in (scenario.plain, scenario.slow):
        assert 0 == run.process.returncode, run.output
        assert "Traceback" not in run.output
        for name in CORE_FILES:
            assert (run.run_dir / name).is_file(), f"{name} missing in {run.run_dir}\n{run.output}"
        metrics = run.summary["metrics"]
        assert COUNT == run.truth["requests"]["ok"] == metrics["request_count"]["avg"]
        lines = (run.run_dir / "profile_export.jsonl").read_text().splitlines()
        assert COUNT == len([line for line in lines if line.strip()])
        # no added latency: the client's TTFT is the server's own within a millisecond
        ttft = metrics["time_to_first_token"]["p50"]
        assert abs(ttft - run.truth["ttft_ms"]["p50"]) < 1.0, (ttft, run.truth["ttft_ms"])
    assert (
        scenario.plain.summary["metrics"]["request_count"]
        == scenario.slow.summary["metrics"]["request_count"]
    )
    assert [] == scenario.plain.mlflow_notes()
    assert scenario.seconds < GUARD_S


def test_slow_mlflow_server_loss_is_one_line(scenario: Scenario) -> None:
    """After the last attempt, one line says MLflow got nothing, why, and how many points were lost."""
    run = scenario.slow
    assert [] == run.mlflow_notes()  # nothing claimed before the upload was tried
    lines = [line for line in run.process.stderr.splitlines() if "not uploaded" in line]
    assert 1 == len(lines), run.process.stderr
    (line,) = lines
    assert line.startswith("WARNING  mlflow: run files not uploaded to http://127.0.0.1:"), line
    assert "timed out" in line, line
    assert "live points lost" in line, line
    export = json.loads((run.run_dir / "mlflow_export.json").read_text())
    assert export["uploaded"] is False
    lost = int(line.rsplit("; ", 1)[1].split()[0])
    assert lost == export["live_points"]["failed"] + export["live_points"]["dropped"] > 0
