"""aiperf-plot with aiperf-mlflow, as a user runs them: ``profile --plot`` uploads the figures
with the run, and ``aiperf plot --mlflow-upload`` attaches them to the run afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiperf.testing import MockServer
from support.plot_cli import aiperf_in

pytestmark = pytest.mark.integration

#: the mock server answers GET /metrics, so aiperf-server-metrics scrapes it and the server's
#: own figure is drawn too.
PNGS = {
    "plots/itl_over_time.png",
    "plots/server_over_time.png",
    "plots/request_latency_distribution.png",
    "plots/throughput_over_time.png",
    "plots/ttft_over_time.png",
}


@pytest.fixture(autouse=True)
def _file_store_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow 3.7+ refuses file stores unless told; aiperf-mlflow sets this for its own client.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(ttft_ms=5, itl_ms=1) as mock:
        yield mock


def _profile(server: MockServer, tmp_path: Path, *extra: str) -> tuple[Path, str]:
    store = f"file:{tmp_path / 'mlruns'}"
    run_dir = tmp_path / "run"
    proc = aiperf_in("profile", "--url", server.url, "--model", "mock-model", "--endpoint-type", "chat",
        "--streaming", "--output-tokens-mean", "8", "--synthetic-input-tokens-mean", "16",
        "--concurrency", "2", "--request-count", "8", "--artifact-dir", str(run_dir),
        "--mlflow-tracking-uri", store, "--mlflow-experiment", "plots", *extra, cwd=tmp_path,
    )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    return run_dir, store


def _artifacts(store: str, run_dir: Path) -> set[str]:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "mlflow_export.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=store)
    return {a.path for a in client.list_artifacts(run_id, "plots")}


def test_profile_plot_figures_reach_the_mlflow_run(server, tmp_path):
    run_dir, store = _profile(server, tmp_path, "--plot")
    assert PNGS == {f"plots/{p.name}" for p in (run_dir / "plots").iterdir()}
    assert PNGS == _artifacts(store, run_dir)


def test_plot_mlflow_upload_attaches_figures_afterwards(server, tmp_path):
    run_dir, store = _profile(server, tmp_path)
    assert set() == _artifacts(store, run_dir)
    proc = aiperf_in("plot", "--paths", str(run_dir), "--mlflow-upload", cwd=tmp_path)
    assert 0 == proc.returncode, proc.stderr
    assert PNGS == _artifacts(store, run_dir)
