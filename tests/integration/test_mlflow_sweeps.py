"""Sweeps and repeats with MLflow on, against a real ``mlflow server`` (sqlite store) on
loopback: the sweep makes its parent run, each point is a child, and the parent's series
have one step per point.

Needs the full ``mlflow`` distribution (for the server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from mlflow import MlflowClient
from support.cli_run import GUARD_S, child_env
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
def server() -> Iterator[MockServer]:
    with MockServer(ttft_ms=2, itl_ms=1) as s:
        yield s


def profile(url: str, tracking_uri: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model", "--streaming",
        "--isl", "16", "--osl", "4", "--request-count", "8", "--no-progress",
        "--artifact-dir", str(out), "--mlflow-tracking-uri", tracking_uri, *extra,
    ]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=GUARD_S, env=child_env(), check=False
    )


def runs_in(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return client.search_runs([found.experiment_id])


def steps(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_sweep_has_a_parent_and_a_child_per_point(
    mlflow_server: MlflowServer, client: MlflowClient, server: MockServer, tmp_path: Path
) -> None:
    out = tmp_path / "sweep"
    done = profile(
        server.url, mlflow_server.url, out, "--concurrency", "1,4,16",
        "--mlflow-experiment", "sweeps", "--mlflow-run-name", "my-sweep",
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    runs = runs_in(client, "sweeps")
    parents = [r for r in runs if r.data.tags.get("aiperf.kind") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert (parent.info.run_name, parent.info.status) == ("my-sweep", "FINISHED")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["concurrency_1", "concurrency_16", "concurrency_4"]
    assert len(runs) == 4
    assert parent.data.params["sweep.concurrency"] == "[1, 4, 16]"
    assert parent.data.params["sweep.type"] == "grid"

    summary = json.loads((out / "sweep_summary.json").read_text())
    expected = [(p["index"], p["metrics"]["time_to_first_token"]["p99"]) for p in summary["points"]]
    assert steps(client, parent.info.run_id, "time_to_first_token.p99") == expected
    assert steps(client, parent.info.run_id, "sweep.concurrency") == [(0, 1.0), (1, 4.0), (2, 16.0)]
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep_summary.json", "sweep_summary.csv"} <= names
    # Each child has its own point's statistics, as a single run does.
    child = next(r for r in children if r.info.run_name == "concurrency_4")
    own = json.loads((out / "concurrency_4" / "profile_export_aiperf.json").read_text())
    assert child.data.metrics["request_latency.p50"] == pytest.approx(own["metrics"]["request_latency"]["p50"])
    record = json.loads((out / "mlflow_export.json").read_text())
    assert (record["run_id"], record["kind"], record["errors"]) == (parent.info.run_id, "sweep", [])


def test_sweep_nests_under_a_given_parent(
    mlflow_server: MlflowServer, client: MlflowClient, server: MockServer, tmp_path: Path
) -> None:
    experiment = client.create_experiment("nested-sweeps")
    outer = client.create_run(experiment, run_name="campaign").info.run_id
    done = profile(
        server.url, mlflow_server.url, tmp_path / "nested", "--concurrency", "1,2",
        "--mlflow-parent-run-id", outer,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    runs = runs_in(client, "nested-sweeps")
    [sweep] = [r for r in runs if r.data.tags.get("aiperf.kind") == "sweep"]
    assert sweep.data.tags["mlflow.parentRunId"] == outer
    points = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sweep.info.run_id]
    assert len(points) == 2
    # The given run is the user's: it is not ended by the sweep.
    assert client.get_run(outer).info.status == "RUNNING"


def test_repeats_have_a_parent_with_the_aggregate(
    mlflow_server: MlflowServer, client: MlflowClient, server: MockServer, tmp_path: Path
) -> None:
    out = tmp_path / "repeat"
    done = profile(
        server.url, mlflow_server.url, out, "--num-profile-runs", "2", "--mlflow-experiment", "repeats",
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    runs = runs_in(client, "repeats")
    [parent] = [r for r in runs if r.data.tags.get("aiperf.kind") == "repeat"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["trial_1", "trial_2"]
    assert steps(client, parent.info.run_id, "sweep.trial") == [(0, 1.0), (1, 2.0)]
    data = json.loads((out / "aggregate" / "profile_export_aiperf_aggregate.json").read_text())
    mean = data["metrics"]["request_latency"]["p50"]["mean"]
    assert parent.data.metrics["aggregate.request_latency.p50.mean"] == pytest.approx(mean)
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "aggregate")}
    assert "aggregate/profile_export_aiperf_aggregate.json" in names
