"""MLflow runs are never left wrong: a real ``mlflow server`` behind a proxy that fails
``log-batch``, hangs the artifact upload or hangs altogether; and a ``.env`` beside the results
is never uploaded.

Every run aiperf creates ends FINISHED, FAILED or KILLED; ``mlflow_export.json`` names it; the
upload has a deadline (``--mlflow-upload-timeout``) after which the loss is one line; one Ctrl-C
during the upload ends the run KILLED and exits 130.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from mlflow import MlflowClient
from support.mlflow_faults import FaultyTracking
from support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="module")
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(mlflow_server.url)


@pytest.fixture(scope="module")
def llm() -> Iterator[MockServer]:
    with MockServer(ttft_ms=5, itl_ms=5) as server:
        yield server


@pytest.fixture
def tracking(mlflow_server: MlflowServer) -> Iterator[FaultyTracking]:
    with FaultyTracking(mlflow_server.url) as proxy:
        yield proxy


def argv(llm: MockServer, tracking_uri: str, experiment: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "aiperf", "profile",
        "--url", llm.url, "--model", "my-model", "--endpoint-type", "chat", "--streaming",
        "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
        "--concurrency", "2", "--request-count", "8",
        "--mlflow-tracking-uri", tracking_uri, "--mlflow-experiment", experiment,
        "--artifact-dir", "run", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # Each MLflow call may wait this long per try: short, so the tests stay short.
    return {**clean, "PYTHONUNBUFFERED": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}


def exported(cwd: Path) -> dict[str, Any]:
    return json.loads((cwd / "run" / "mlflow_export.json").read_text())


def runs_in(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING  mlflow: ")]


def test_log_batch_failing_from_the_start_leaves_one_ended_run(
    tracking: FaultyTracking, client: MlflowClient, llm: MockServer, tmp_path: Path
) -> None:
    """log-batch refused throughout: one run, ended, and mlflow_export.json names it."""
    tracking.fail("/runs/log-batch")
    result = subprocess.run(
        argv(llm, tracking.url, "fails-log-batch"),
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    runs = runs_in(client, "fails-log-batch")
    assert 1 == len(runs), [r.info.status for r in runs]
    data = exported(tmp_path)
    assert runs[0].info.run_id == data["run_id"]
    assert "FINISHED" == runs[0].info.status == data["run_status"]
    assert any(e.startswith("could not log the params") for e in data["errors"]), data["errors"]
    assert 1 == len(warnings(result.stderr)), result.stderr


def test_hanging_artifact_upload_ends_at_the_deadline_with_the_run_ended(
    tracking: FaultyTracking, client: MlflowClient, llm: MockServer, tmp_path: Path
) -> None:
    """The artifact upload never answers: aiperf gives up at --mlflow-upload-timeout, says so
    in one line, and the run is FINISHED anyway, not RUNNING."""
    tracking.hang("/mlflow-artifacts/")
    began = time.monotonic()
    result = subprocess.run(
        argv(llm, tracking.url, "hangs-upload", "--mlflow-upload-timeout", "6"),
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    took = time.monotonic() - began
    assert 0 == result.returncode, result.stderr
    assert tracking.seen("/mlflow-artifacts/") >= 1
    (line,) = warnings(result.stderr)
    assert "no answer within 6s (--mlflow-upload-timeout)" in line, line
    (stored,) = runs_in(client, "hangs-upload")
    assert "FINISHED" == stored.info.status
    data = exported(tmp_path)
    assert (stored.info.run_id, "FINISHED", False) == (
        data["run_id"], data["run_status"], data["uploaded"],
    )  # fmt: skip
    # The benchmark itself takes a second or two; start-up (imports) a few more.
    assert took < 60, took


def test_one_ctrl_c_during_the_upload_ends_the_run_killed(
    tracking: FaultyTracking, client: MlflowClient, llm: MockServer, tmp_path: Path
) -> None:
    """Ctrl-C while the upload hangs: exit 130 at once, the run KILLED, the record true."""
    tracking.hang("/mlflow-artifacts/")
    process = subprocess.Popen(
        argv(llm, tracking.url, "ctrl-c-upload", "--mlflow-upload-timeout", "300"),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while tracking.seen("/mlflow-artifacts/") == 0 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.1)
        assert tracking.seen("/mlflow-artifacts/") >= 1
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert 130 == process.returncode, stderr
    assert time.monotonic() - interrupted < 15
    (stored,) = runs_in(client, "ctrl-c-upload")
    assert "KILLED" == stored.info.status
    data = exported(tmp_path)
    assert ("KILLED", False) == (data["run_status"], data["uploaded"])
    assert "upload interrupted by Ctrl-C" in data["errors"]


def test_a_server_that_hangs_mid_run_costs_the_deadline_once(
    tracking: FaultyTracking, llm: MockServer, tmp_path: Path
) -> None:
    """The whole server stops answering while live points flow: from the end of the load to
    the exit takes the deadline (4 s here), not a timeout per step; one line says what was
    lost, and mlflow_export.json says the run could not be ended (the truth)."""
    process = subprocess.Popen(
        argv(llm, tracking.url, "hangs-mid-run", "--mlflow-upload-timeout", "4",
             "--request-count", "120"),
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # The params, then the first batch of live points: the run is under way.
        while tracking.seen("/runs/log-batch") < 2 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.05)
        tracking.hang("")
        _, stderr = process.communicate(timeout=120)
        exited_ns = time.time_ns()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert 0 == process.returncode, stderr
    summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
    tail_s = (exited_ns - summary["end_time_ns"]) / 1e9
    # The deadline, plus writing the local files and leaving the interpreter on a busy machine.
    assert tail_s < 4 + 5, f"{tail_s}\n{stderr}"
    assert 1 == len(warnings(stderr)), stderr
    data = exported(tmp_path)
    assert (False, "RUNNING") == (data["uploaded"], data["run_status"])


def test_only_the_runs_files_are_uploaded_never_a_dotenv(
    mlflow_server: MlflowServer, client: MlflowClient, llm: MockServer, tmp_path: Path
) -> None:
    """--artifact-dir . with a .env and other files in it: the artifacts are the files the run
    wrote, and nothing else."""
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-do-not-upload\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    command = argv(llm, mlflow_server.url, "dotenv")
    command[command.index("run")] = "."
    result = subprocess.run(
        command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=180
    )
    assert 0 == result.returncode, result.stderr
    (stored,) = runs_in(client, "dotenv")
    names = {a.path for a in client.list_artifacts(stored.info.run_id)}
    assert {
        "profile_export.jsonl", "profile_export_aiperf.json", "profile_export_aiperf.csv",
        "inputs.json", "metadata.json", "mlflow_export.json",
        # the mock answers GET /metrics: aiperf-server-metrics writes what it scraped
        "server_metrics_export.json", "server_metrics_export.csv", "server_metrics_export.jsonl",
    } == names  # fmt: skip
    assert (tmp_path / ".env").exists() and (tmp_path / "notes.txt").exists()
