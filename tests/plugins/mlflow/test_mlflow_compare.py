"""``aiperf compare mlflow:RUN_ID``: aiperf-mlflow fetches a logged run's results from a real
local MLflow store, through the ``aiperf_fetch_run`` hook; every way that fails is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiperf.testing import free_port
from support.compare_runs import compare, one_error_line, synthetic_metrics, write_run

ENV = {"MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}


@pytest.fixture
def logged(tmp_path: Path, file_store: str) -> dict:
    """A local store with a run holding a slower server's results, one without results, and
    the same results on disk."""
    from mlflow.tracking import MlflowClient

    rng = np.random.default_rng(3)
    base = write_run(tmp_path / "base", synthetic_metrics(rng, 120))
    slow = write_run(tmp_path / "slow", synthetic_metrics(rng, 120, ttft_ms=55.0))
    client = MlflowClient(tracking_uri=file_store)
    experiment = client.create_experiment("compare")
    run = client.create_run(experiment)
    for name in ("profile_export.jsonl", "profile_export_aiperf.json"):
        client.log_artifact(run.info.run_id, str(slow / name))
    client.set_terminated(run.info.run_id)
    empty = client.create_run(experiment)
    client.set_terminated(empty.info.run_id)
    return {"store": file_store, "base": base, "slow": slow, "run_id": run.info.run_id,
            "empty_id": empty.info.run_id}  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["comparisons"][0]["rows"]


def test_a_logged_run_compares_like_its_directory(logged: dict, tmp_path: Path) -> None:
    out = tmp_path / "mlflow.json"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = compare(str(logged["base"]), f"mlflow:{logged['run_id']}", "--json", str(out),
                   "--mlflow-tracking-uri", logged["store"], "--fail-if", "time_to_first_token.p50>+5%",
                   env={**ENV, "TMPDIR": str(scratch)})  # fmt: skip
    assert 1 == proc.returncode, proc.stderr
    report = json.loads(out.read_text())
    run = report["comparisons"][0]["run"]
    assert (run["ref"], run["path"], run["requests"]) == (f"mlflow:{logged['run_id']}", None, 120)
    assert f"mlflow:{logged['run_id']} vs baseline {logged['base']}" in proc.stdout
    local = tmp_path / "local.json"
    compare(str(logged["base"]), str(logged["slow"]), "--json", str(local), env=ENV)
    assert _rows(out) == _rows(local)
    # The downloaded copy is gone once the comparison is done.
    assert [] == list(scratch.iterdir())


def test_a_bare_run_id_and_the_environment_variable(logged: dict, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(logged["run_id"], str(logged["base"]), "--json", str(out),
                   env={**ENV, "MLFLOW_TRACKING_URI": logged["store"]})  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    report = json.loads(out.read_text())
    assert report["comparisons"][0]["baseline"]["ref"] == logged["run_id"]
    ttft = next(r for r in _rows(out) if (r["metric"], r["stat"]) == ("time_to_first_token", "p50"))
    assert ttft["verdict"] == "faster"


def test_a_run_that_is_not_there(logged: dict) -> None:
    missing = "0" * 32
    proc = compare(str(logged["base"]), f"mlflow:{missing}", "--mlflow-tracking-uri",
                   logged["store"], env=ENV)  # fmt: skip
    assert 2 == proc.returncode
    assert one_error_line(proc) == (
        f"aiperf: error: mlflow:{missing}: no MLflow run {missing} in {logged['store']}"
    )


def test_a_run_without_results(logged: dict) -> None:
    proc = compare(str(logged["base"]), f"mlflow:{logged['empty_id']}", "--mlflow-tracking-uri",
                   logged["store"], env=ENV)  # fmt: skip
    assert 2 == proc.returncode
    line = one_error_line(proc)
    assert line.startswith(f"aiperf: error: mlflow:{logged['empty_id']}: the MLflow run has no profile_export.jsonl")


def test_no_tracking_uri(logged: dict) -> None:
    proc = compare(str(logged["base"]), f"mlflow:{logged['run_id']}", env=ENV)
    assert 2 == proc.returncode
    assert one_error_line(proc) == (
        f"aiperf: error: mlflow:{logged['run_id']}: no such directory; for an MLflow run give "
        "--mlflow-tracking-uri (or set MLFLOW_TRACKING_URI) to say where it is logged"
    )


def test_not_a_run_id(logged: dict) -> None:
    proc = compare(str(logged["base"]), "mlflow:not/an/id", "--mlflow-tracking-uri", logged["store"], env=ENV)
    assert 2 == proc.returncode
    assert one_error_line(proc) == (
        "aiperf: error: mlflow:not/an/id: not an MLflow run id (expected mlflow:<32 hex digits>)"
    )


def test_an_unreachable_server_never_shows_the_password(logged: dict) -> None:
    uri = f"http://perf:hunter2@127.0.0.1:{free_port()}"
    proc = compare(str(logged["base"]), f"mlflow:{logged['run_id']}", "--mlflow-tracking-uri", uri, env=ENV)
    assert 2 == proc.returncode
    line = one_error_line(proc)
    assert "did not respond" in line
    assert "hunter2" not in proc.stdout + proc.stderr


def test_a_local_directory_wins_over_an_id(logged: dict, tmp_path: Path) -> None:
    """A directory named like a run id is the directory: nothing is fetched."""
    write_run(tmp_path / logged["run_id"], synthetic_metrics(np.random.default_rng(1), 80))
    out = tmp_path / "c.json"
    proc = compare(str(logged["base"]), logged["run_id"], "--json", str(out), env=ENV, cwd=tmp_path)
    assert 0 == proc.returncode, proc.stderr
    run = json.loads(out.read_text())["comparisons"][0]["run"]
    assert (run["path"], run["requests"]) == (logged["run_id"], 80)
