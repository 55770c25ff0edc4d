"""aiperf-mlflow against a real ``mlflow server`` (sqlite store) on loopback: the seed's flow,
live points during the run, the sweep with a parent run, ``aiperf plot --mlflow-upload``, two
runs racing to create one experiment, and a server that dies mid-run.

Needs the full ``mlflow`` distribution (for the server) and aiperf-plot (for the plots).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from mlflow import MlflowClient
from support.mlflow_server import MlflowServer
from support.mlflow_values import CANARY

pytestmark = pytest.mark.integration

LIVE_DURATION = "live.gen_ai.client.operation.duration"
RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="module")
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(mlflow_server.url)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def profile_argv(
    url: str, tracking_uri: str, *extra: str, count: int = 16, concurrency: int = 4
) -> list[str]:
    return [
        sys.executable, "-m", "aiperf", "profile",
        "--url", url,
        "--model", "my-model",
        "--endpoint-type", "chat",
        "--endpoint", "/v1/chat/completions",
        "--streaming",
        "--synthetic-input-tokens-mean", "32",
        "--output-tokens-mean", "8",
        "--concurrency", str(concurrency),
        "--request-count", str(count),
        "--mlflow-tracking-uri", tracking_uri,
        *extra,
    ]  # fmt: skip


def run(argv: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def exported(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "mlflow_export.json").read_text())


def profile_indices(run_dir: Path) -> list[int]:
    rows = map(json.loads, (run_dir / "profile_export.jsonl").read_text().splitlines())
    return sorted(r["request_index"] for r in rows if r["phase"] == "profile")


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, folder):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def runs_in(client: MlflowClient, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


# -- the seed's flow ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_run(
    mlflow_server: MlflowServer, mock_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The docs' profile command, with a password in the tracking URI and an API key planted."""
    cwd = tmp_path_factory.mktemp("seed")
    tracking_uri = mlflow_server.url.replace("http://", f"http://aiperf:{CANARY}@")
    result = run(
        profile_argv(
            mock_server.url,
            tracking_uri,
            "--mlflow-experiment", "my-experiment",
            "--mlflow-tag", "sweep:seed",
            "--api-key", CANARY,
        ),
        cwd,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    return result, cwd / "artifacts" / "my-model-chat-concurrency4"


class TestSeedFlow:
    def test_run_in_named_experiment_finished(
        self, seed_run: tuple[Any, Path], client: MlflowClient, mlflow_server: MlflowServer
    ) -> None:
        """The run is in my-experiment, FINISHED; mlflow_export.json reads like the docs."""
        _, run_dir = seed_run
        data = exported(run_dir)
        assert (mlflow_server.url, "my-experiment", True) == (
            data["tracking_uri"],
            data["experiment_name"],
            data["reused_live_run"],
        )
        stored = client.get_run(data["run_id"])
        assert "my-experiment" == client.get_experiment(stored.info.experiment_id).name
        assert "FINISHED" == stored.info.status

    def test_live_history_one_point_per_request(
        self, seed_run: tuple[Any, Path], client: MlflowClient
    ) -> None:
        """Each live key has one point per measured request; steps are the request indices."""
        _, run_dir = seed_run
        run_id = exported(run_dir)["run_id"]
        indices = profile_indices(run_dir)
        assert 16 == len(indices)
        for key in (
            LIVE_DURATION,
            "live.gen_ai.client.token.usage",
            "live.gen_ai.client.operation.time_per_output_chunk",
            "live.gen_ai.client.operation.time_to_first_chunk",
        ):
            assert indices == sorted(m.step for m in client.get_metric_history(run_id, key)), key

    def test_summary_statistics_are_run_metrics(
        self, seed_run: tuple[Any, Path], client: MlflowClient
    ) -> None:
        """The exported statistics are the run's metrics, same values."""
        _, run_dir = seed_run
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]
        metrics = client.get_run(exported(run_dir)["run_id"]).data.metrics
        assert summary["time_to_first_token"]["p99"] == pytest.approx(
            metrics["time_to_first_token.p99"]
        )
        assert summary["request_throughput"]["avg"] == pytest.approx(metrics["request_throughput"])

    def test_artifacts_match_run_directory(
        self, seed_run: tuple[Any, Path], client: MlflowClient
    ) -> None:
        """Every file of the run directory is an artifact of the run, and nothing else."""
        _, run_dir = seed_run
        local = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
        remote = artifact_paths(client, exported(run_dir)["run_id"])
        assert local == remote
        assert {
            "profile_export_aiperf.json",
            "profile_export_aiperf.csv",
            "metadata.json",
        } <= remote

    def test_tags_and_params_without_secrets(
        self, seed_run: tuple[subprocess.CompletedProcess[str], Path], client: MlflowClient
    ) -> None:
        """The documented tags are there; the key and the tracking password are nowhere."""
        result, run_dir = seed_run
        stored = client.get_run(exported(run_dir)["run_id"])
        tags = stored.data.tags
        assert {
            "gen_ai.request.model": "my-model",
            "aiperf.endpoint_type": "chat",
            "aiperf.load_setting": "concurrency4",
            "sweep": "seed",
        } == {
            k: tags[k]
            for k in (
                "gen_ai.request.model",
                "aiperf.endpoint_type",
                "aiperf.load_setting",
                "sweep",
            )
        }
        assert {"gen_ai.provider.name", "aiperf.version"} <= set(tags)
        assert ("my-model", "4") == (stored.data.params["model"], stored.data.params["concurrency"])
        everything = json.dumps([stored.data.params, tags]) + result.stdout + result.stderr
        everything += "".join(
            p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()
        )
        assert CANARY not in everything

    def test_plot_upload_adds_pngs_to_the_same_run(
        self, seed_run: tuple[Any, Path], client: MlflowClient
    ) -> None:
        """aiperf plot --paths DIR --mlflow-upload: the PNGs join the run."""
        _, run_dir = seed_run
        result = run(
            [sys.executable, "-m", "aiperf", "plot", "--paths", str(run_dir), "--mlflow-upload"],
            run_dir.parent.parent,
        )
        assert 0 == result.returncode, result.stderr
        pngs = {p.relative_to(run_dir).as_posix() for p in (run_dir / "plots").glob("*.png")}
        assert pngs, "aiperf plot should have drawn figures"
        run_id = exported(run_dir)["run_id"]
        assert pngs <= artifact_paths(client, run_id)
        assert pngs <= set(exported(run_dir)["artifacts"])


# -- live, sweep, race ---------------------------------------------------------------------------


def test_live_points_arrive_while_the_run_goes_on(
    mlflow_server: MlflowServer, client: MlflowClient, tmp_path: Path
) -> None:
    """The duration curve grows in MLflow before the benchmark has finished."""
    seen_while_running: list[int] = []
    with MockServer(ttft_ms=40, itl_ms=20) as slow:
        process = start(
            profile_argv(
                slow.url, mlflow_server.url, "--mlflow-experiment", "live-check",
                count=20, concurrency=1,
            ),
            tmp_path,
        )  # fmt: skip
        try:
            while process.poll() is None:
                runs = runs_in(client, "live-check")
                if runs:
                    points = len(client.get_metric_history(runs[0].info.run_id, LIVE_DURATION))
                    if process.poll() is None:
                        seen_while_running.append(points)
                time.sleep(0.3)
        finally:
            code, _, err = finish(process)
    assert 0 == code, err
    assert any(0 < n < 20 for n in seen_while_running), seen_while_running
    [final] = runs_in(client, "live-check")
    assert 20 == len(client.get_metric_history(final.info.run_id, LIVE_DURATION))


def test_sweep_children_nest_under_parent(
    mlflow_server: MlflowServer, client: MlflowClient, mock_server: Any, tmp_path: Path
) -> None:
    """The docs' sweep: a parent from `mlflow runs create`, two benchmarks as its children."""
    created = subprocess.run(
        [sys.executable, "-m", "mlflow", "runs", "create", "--experiment-name", "my-sweep"],
        env=cli_env(MLFLOW_TRACKING_URI=mlflow_server.url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == created.returncode, created.stderr
    parent = RUN_ID.search(created.stdout + created.stderr)
    assert parent is not None, created.stdout
    processes = [
        start(
            profile_argv(
                mock_server.url, mlflow_server.url, "--mlflow-parent-run-id", parent.group(0),
                concurrency=concurrency, count=8,
            ),
            tmp_path,
        )
        for concurrency in (4, 8)
    ]  # fmt: skip
    results = [finish(p) for p in processes]
    assert [0, 0] == [code for code, _, _ in results], [err for _, _, err in results]
    children = [
        r
        for r in runs_in(client, "my-sweep")
        if r.data.tags.get("mlflow.parentRunId") == parent.group(0)
    ]
    assert ["concurrency4", "concurrency8"] == sorted(
        r.data.tags["aiperf.load_setting"] for r in children
    )


def test_two_runs_racing_share_one_experiment(
    mlflow_server: MlflowServer, client: MlflowClient, mock_server: Any, tmp_path: Path
) -> None:
    """Two benchmarks starting together with a new experiment name: one experiment, two runs."""
    processes = [
        start(
            profile_argv(
                mock_server.url, mlflow_server.url, "--mlflow-experiment", "race",
                "--artifact-dir", f"run{i}", count=4,
            ),
            tmp_path,
        )
        for i in range(2)
    ]  # fmt: skip
    results = [finish(p) for p in processes]
    assert [0, 0] == [code for code, _, _ in results], [err for _, _, err in results]
    experiments = [e for e in client.search_experiments() if e.name == "race"]
    assert 1 == len(experiments)
    assert 2 == len(client.search_runs([experiments[0].experiment_id]))


# -- a server that goes away -----------------------------------------------------------------------


def test_server_killed_mid_run(tmp_path: Path) -> None:
    """The server dies during the run: the benchmark completes, local files are whole, and
    mlflow_export.json says the run was not finished in MLflow."""
    with MlflowServer(tmp_path / "server") as server, MockServer(ttft_ms=40, itl_ms=20) as slow:
        client = MlflowClient(server.url)
        process = start(
            profile_argv(
                slow.url, server.url, "--mlflow-experiment", "doomed", count=20, concurrency=1
            ),
            tmp_path,
        )
        try:
            while process.poll() is None:
                runs = runs_in(client, "doomed")
                if runs and client.get_metric_history(runs[0].info.run_id, LIVE_DURATION):
                    break
                time.sleep(0.3)
            running_when_killed = process.poll() is None
            server.kill()
        finally:
            code, _, err = finish(process)
    assert running_when_killed
    assert 0 == code, err
    run_dir = tmp_path / "artifacts" / "my-model-chat-concurrency1"
    assert 20 == len(profile_indices(run_dir))
    assert (run_dir / "profile_export_aiperf.json").is_file()
    data = exported(run_dir)
    assert (False, "RUNNING", "FINISHED") == (
        data["uploaded"],
        data["run_status"],
        data["benchmark_status"],
    )
    assert data["errors"]
    # after the last attempt, one line says what MLflow did not get
    (lost,) = [line for line in err.splitlines() if "not uploaded" in line]
    assert lost.startswith(
        f"WARNING  mlflow: run files not uploaded to {server.url} (MLflow tracking server at "
        f"{server.url} did not respond within 5s)"
    ), lost
    assert "live points lost" in lost
