"""``aiperf profile`` with MLflow, end to end: the real CLI against the mock server, logging
into a local file store (no MLflow server needed), or into a server that is not there."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import free_port
from mlflow import MlflowClient
from support.mlflow_values import CANARY

pytestmark = pytest.mark.integration

RUN_DIR = Path("artifacts/my-model-chat-concurrency4")
MISSING = (
    "ImportError: MLflow integration requires the 'mlflow' package. "
    'Install with: pip install "aiperf[mlflow]"'
)
Cli = Callable[..., subprocess.CompletedProcess[str]]


def seed_args(url: str, *extra: str, count: int = 16) -> list[str]:
    """The docs' command, smaller."""
    return [
        "profile",
        "--url",
        url,
        "--model",
        "my-model",
        "--endpoint-type",
        "chat",
        "--endpoint",
        "/v1/chat/completions",
        "--streaming",
        "--synthetic-input-tokens-mean",
        "32",
        "--output-tokens-mean",
        "8",
        "--concurrency",
        "4",
        "--request-count",
        str(count),
        *extra,
    ]


def profile_indices(run_dir: Path) -> list[int]:
    lines = (run_dir / "profile_export.jsonl").read_text().splitlines()
    return sorted(r["request_index"] for r in map(json.loads, lines) if r["phase"] == "profile")


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiperf", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def profiled(
    mock_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.CompletedProcess[str], MlflowClient, Path]]:
    """One benchmark logged to file:./mlruns, shared by the checks below."""
    cwd = tmp_path_factory.mktemp("file-store")
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("MLFLOW_")]:
            mp.delenv(name)
        result = run_cli(
            seed_args(
                mock_server.url,
                "--mlflow-tracking-uri",
                "file:./mlruns",
                "--mlflow-experiment",
                "my-experiment",
                "--mlflow-tag",
                "team=perf",
                "--api-key",
                CANARY,
                "--header",
                f"X-Api-Token: {CANARY}",
            ),
            cwd,
        )
        assert 0 == result.returncode, result.stderr
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        yield result, MlflowClient((cwd / "mlruns").as_uri()), cwd


class TestFileStore:
    def test_profile_logs_run_in_named_experiment(
        self, profiled: tuple[Any, MlflowClient, Path]
    ) -> None:
        """The run is in my-experiment, FINISHED, and mlflow_export.json reads like the docs."""
        _, client, tmp_path = profiled
        exported = json.loads((tmp_path / RUN_DIR / "mlflow_export.json").read_text())
        assert (tmp_path / "mlruns").as_uri() == exported["tracking_uri"]
        assert ("my-experiment", True) == (exported["experiment_name"], exported["reused_live_run"])
        run = client.get_run(exported["run_id"])
        assert "my-experiment" == client.get_experiment(run.info.experiment_id).name
        assert "FINISHED" == run.info.status
        assert ("perf", "my-model", "concurrency4") == (
            run.data.tags["team"],
            run.data.tags["gen_ai.request.model"],
            run.data.tags["aiperf.load_setting"],
        )

    def test_profile_live_history_one_point_per_request(
        self, profiled: tuple[Any, MlflowClient, Path]
    ) -> None:
        """live.gen_ai.client.operation.duration: one point per measured request, step = index."""
        _, client, tmp_path = profiled
        run_id = json.loads((tmp_path / RUN_DIR / "mlflow_export.json").read_text())["run_id"]
        history = client.get_metric_history(run_id, "live.gen_ai.client.operation.duration")
        assert profile_indices(tmp_path / RUN_DIR) == sorted(m.step for m in history)
        assert all(0 < m.value < 60 for m in history)

    def test_profile_artifacts_match_run_directory(
        self, profiled: tuple[Any, MlflowClient, Path]
    ) -> None:
        """What the run lists as artifacts is what the run directory holds."""
        _, client, tmp_path = profiled
        run_dir = tmp_path / RUN_DIR
        run_id = json.loads((run_dir / "mlflow_export.json").read_text())["run_id"]
        listed = {a.path for a in client.list_artifacts(run_id) if not a.is_dir}
        assert {p.name for p in run_dir.iterdir() if p.is_file()} == listed
        assert {
            "profile_export_aiperf.json",
            "profile_export_aiperf.csv",
            "metadata.json",
        } <= listed

    def test_profile_no_secret_anywhere(
        self, profiled: tuple[subprocess.CompletedProcess[str], MlflowClient, Path]
    ) -> None:
        """The planted API key is in no output, no run-directory file and nowhere in the store."""
        result, _, tmp_path = profiled
        assert CANARY not in result.stdout + result.stderr
        leaked = [str(p) for p in files_under(tmp_path) if CANARY.encode() in p.read_bytes()]
        assert [] == leaked


class TestUserErrors:
    def test_missing_mlflow_one_line(self, mock_server: Any, tmp_path: Path) -> None:
        """Plugin installed, MLflow not importable: exactly the documented line, non-zero exit."""
        code = (
            "import sys\n"
            "sys.modules['mlflow'] = None\n"
            "from aiperf.cli import main\n"
            f"sys.exit(main({seed_args(mock_server.url, '--mlflow-tracking-uri', 'http://localhost:5000')!r}))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert 1 == result.returncode
        lines = result.stderr.strip().splitlines()
        assert 1 == len(lines), result.stderr
        assert MISSING == lines[0]

    @pytest.mark.parametrize(
        ("flag", "value"),
        [
            ("--mlflow-tag", "novalue"),
            ("--mlflow-tracking-uri", "ftp://x"),
            ("--mlflow-parent-run-id", "no such id"),
        ],
    )
    def test_bad_value_one_line_exit_2(
        self, aiperf_cli: Cli, mock_server: Any, flag: str, value: str
    ) -> None:
        """A bad MLflow flag: one line naming it, exit 2, before any request."""
        result = aiperf_cli(
            *seed_args(mock_server.url, "--mlflow-tracking-uri", "file:./m", flag, value)
        )
        assert 2 == result.returncode
        lines = result.stderr.strip().splitlines()
        assert 1 == len(lines), result.stderr
        assert f"{flag}: " in lines[0]
        assert "Traceback" not in result.stderr


class TestServerDown:
    def test_nobody_listening_warns_and_completes(
        self, aiperf_cli: Cli, mock_server: Any, tmp_path: Path, clean_mlflow_env: None
    ) -> None:
        """Server down at start: the documented warning, the benchmark completes, exit 0."""
        url = f"http://127.0.0.1:{free_port()}"
        result = aiperf_cli(*seed_args(mock_server.url, "--mlflow-tracking-uri", url))
        assert 0 == result.returncode, result.stderr
        warning = f"WARNING  MLflow tracking server at {url} did not respond within 5s."
        assert warning in result.stderr.splitlines()
        run_dir = tmp_path / RUN_DIR
        assert 16 == len(profile_indices(run_dir))
        assert (run_dir / "profile_export_aiperf.json").is_file()
        exported = json.loads((run_dir / "mlflow_export.json").read_text())
        assert (None, False, False) == (
            exported["run_id"],
            exported["uploaded"],
            exported["reused_live_run"],
        )

    def test_silent_server_waits_only_the_configured_timeout(
        self, aiperf_cli: Cli, mock_server: Any, clean_mlflow_env: None
    ) -> None:
        """A server that accepts and never answers: given up on after MLFLOW_HTTP_REQUEST_TIMEOUT."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            result = aiperf_cli(
                *seed_args(mock_server.url, "--mlflow-tracking-uri", url),
                env={"MLFLOW_HTTP_REQUEST_TIMEOUT": "1"},
            )
        assert 0 == result.returncode, result.stderr
        assert f"WARNING  MLflow tracking server at {url} did not respond within 1s." in (
            result.stderr.splitlines()
        )
