"""After the run: the run directory into the same MLflow run, statistics, the final state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiperf import AiperfError, RunContext, RunStatus, UsageError, record_artifacts
from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig
from aiperf_mlflow.exporter import MlflowExporter, finish_run, manifest_files, upload_announced
from aiperf_mlflow.points import Point
from aiperf_mlflow.session import EXPORT_FILE, MlflowSession
from mlflow import MlflowClient
from structlog.testing import capture_logs
from support.mlflow_values import make_result, make_run

RESULT_FILES = (
    "profile_export_aiperf.json",
    "profile_export_aiperf.csv",
    "profile_export.jsonl",
    "inputs.json",
    "metadata.json",
    "gpu_telemetry_export.jsonl",
)


def run_with_files(tmp_path: Path) -> RunContext:
    run = make_run(tmp_path / "my-model-chat-concurrency4")
    for name in RESULT_FILES:
        (run.run_dir / name).write_text("{}\n")
    (run.run_dir / "plots").mkdir()
    (run.run_dir / "plots" / "ttft.png").write_bytes(b"\x89PNG")
    record_artifacts(run, [run.run_dir / name for name in RESULT_FILES])
    record_artifacts(run, [run.run_dir / "plots" / "ttft.png"])
    return run


def session_for(run: RunContext, uri: str) -> MlflowSession:
    return MlflowSession(
        config=MlflowConfig(tracking_uri=uri, experiment_name="exp"),
        run_dir=run.run_dir,
        probe_timeout_s=5.0,
        benchmark_id=run.benchmark_id,
    )


def artifact_paths(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, folder):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


class TestExport:
    def test_export_reuses_live_run_and_uploads_everything(
        self, file_store: str, tmp_path: Path
    ) -> None:
        """Same run; artifacts = the run directory; statistics logged; FINISHED."""
        run = run_with_files(tmp_path)
        session = session_for(run, file_store)
        live_id = session.start_run(run)

        written = MlflowExporter(session=session).export(run, make_result())

        client = MlflowClient(file_store)
        stored = client.get_run(live_id)
        assert "FINISHED" == stored.info.status
        assert 24.0 == stored.data.metrics["time_to_first_token.p99"]
        expected = {*RESULT_FILES, "plots/ttft.png", EXPORT_FILE}
        assert expected == artifact_paths(client, live_id)
        local = {
            p.relative_to(run.run_dir).as_posix() for p in run.run_dir.rglob("*") if p.is_file()
        }
        assert local == artifact_paths(client, live_id)
        assert [run.run_dir / EXPORT_FILE] == written
        exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
        assert (live_id, True, True, "FINISHED") == (
            exported["run_id"],
            exported["reused_live_run"],
            exported["uploaded"],
            exported["run_status"],
        )
        assert sorted(expected) == sorted(exported["artifacts"])
        uploaded = json.loads(
            Path(client.download_artifacts(live_id, EXPORT_FILE, str(tmp_path))).read_text()
        )
        assert EXPORT_FILE in uploaded["artifacts"]

    def test_export_without_live_run_creates_one(self, file_store: str, tmp_path: Path) -> None:
        """No live run: a new run with reused_live_run false, the kept live points logged in it."""
        run = run_with_files(tmp_path)
        session = session_for(run, file_store)
        session.pending = [
            Point("live.gen_ai.client.operation.duration", 0.1, 1000 + i, i) for i in range(3)
        ]

        MlflowExporter(session=session).export(run, make_result())

        exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
        assert (False, True) == (exported["reused_live_run"], exported["uploaded"])
        history = MlflowClient(file_store).get_metric_history(
            exported["run_id"], "live.gen_ai.client.operation.duration"
        )
        assert [0, 1, 2] == sorted(m.step for m in history)
        assert 3 == exported["live_points"]["logged"]

    @pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.KILLED])
    def test_export_ends_run_with_benchmark_status(
        self, file_store: str, tmp_path: Path, status: RunStatus
    ) -> None:
        """FAILED on error, KILLED on Ctrl-C: the MLflow run says what happened."""
        run = run_with_files(tmp_path)
        session = session_for(run, file_store)
        run_id = session.start_run(run)
        MlflowExporter(session=session).export(run, make_result(status))
        assert str(status) == MlflowClient(file_store).get_run(run_id).info.status

    def test_export_unreachable_server_says_so_and_keeps_files(
        self, tmp_path: Path, clean_mlflow_env: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Server gone: the documented warning, the reason in mlflow_export.json, no exception."""
        monkeypatch.setattr(environment, "probe", lambda config, timeout: False)
        run = run_with_files(tmp_path)
        session = session_for(run, "http://localhost:5000")
        session.run_id, session.run_status = "abc", "RUNNING"
        with capture_logs() as logs:
            MlflowExporter(session=session).export(run, make_result())
        assert [
            "mlflow: run files not uploaded to http://localhost:5000 (MLflow tracking server at "
            "http://localhost:5000 did not respond within 5s); MLflow run abc could not be "
            "ended and shows RUNNING"
        ] == [
            e["event"] for e in logs if e["log_level"] == "warning"
        ]
        exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
        assert (False, "RUNNING", "FINISHED") == (
            exported["uploaded"],
            exported["run_status"],
            exported["benchmark_status"],
        )
        assert exported["errors"][0].endswith("Nothing was uploaded.")
        assert all((run.run_dir / name).exists() for name in RESULT_FILES)

    def test_export_failure_midway_is_recorded(self, file_store: str, tmp_path: Path) -> None:
        """An upload that fails stops the export, is logged once and written down."""
        run = run_with_files(tmp_path)

        class Failing(MlflowSession):
            def upload(self, paths: object) -> list[str]:
                raise ConnectionError("connection reset by peer")

        session = Failing(
            config=MlflowConfig(tracking_uri=file_store),
            run_dir=run.run_dir,
            probe_timeout_s=5.0,
            benchmark_id=run.benchmark_id,
        )
        session.start_run(run)
        with capture_logs() as logs:
            MlflowExporter(session=session).export(run, make_result())
        (warning,) = [e["event"] for e in logs if e["log_level"] == "warning"]
        assert warning.startswith("mlflow: run files not uploaded to "), warning
        assert "could not upload the run directory: ConnectionError" in warning
        exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
        # The run is ended all the same: it never stays RUNNING.
        assert (False, "FINISHED") == (exported["uploaded"], exported["run_status"])
        assert [
            "could not upload the run directory: ConnectionError: connection reset by peer"
        ] == exported["errors"]

    def test_manifest_files_are_what_the_run_wrote_and_nothing_else(self, tmp_path: Path) -> None:
        """The files this run recorded, in order; a .env or a stray file beside them never;
        mlflow_export.json is sent apart, last."""
        run = run_with_files(tmp_path)
        (run.run_dir / EXPORT_FILE).write_text("{}")
        record_artifacts(run, [run.run_dir / EXPORT_FILE])
        (run.run_dir / ".env").write_text("OPENAI_API_KEY=sk-secret\n")
        (run.run_dir / "notes.txt").write_text("x")
        (run.run_dir / "plots" / "old.png").write_bytes(b"\x89PNG")
        names = [p.relative_to(run.run_dir).as_posix() for p in manifest_files(run)]
        assert [*RESULT_FILES, "plots/ttft.png"] == names


class TestFinishRun:
    def test_finish_run_ends_a_run_the_exporter_never_reached(
        self, file_store: str, tmp_path: Path
    ) -> None:
        """If the exporter did not run, the run is still ended with the benchmark's status."""
        run = run_with_files(tmp_path)
        session = session_for(run, file_store)
        run_id = session.start_run(run)
        finish_run(session, RunStatus.KILLED)
        assert "KILLED" == MlflowClient(file_store).get_run(run_id).info.status

    def test_finish_run_leaves_exported_run_alone(self, file_store: str, tmp_path: Path) -> None:
        """After the exporter, the backstop does nothing (no second status)."""
        run = run_with_files(tmp_path)
        session = session_for(run, file_store)
        run_id = session.start_run(run)
        session.exported = True
        finish_run(session, RunStatus.FAILED)
        assert "RUNNING" == MlflowClient(file_store).get_run(run_id).info.status


class TestUploadAnnounced:
    def test_upload_announced_adds_plots_to_the_run(self, file_store: str, tmp_path: Path) -> None:
        """aiperf plot --mlflow-upload: the PNGs join the run named in mlflow_export.json."""
        run = run_with_files(tmp_path)
        session = session_for(run, file_store)
        run_id = session.start_run(run)
        png = run.run_dir / "plots" / "itl.png"
        png.write_bytes(b"\x89PNG")

        done = upload_announced(run.run_dir, [png], environ={})

        assert ["plots/itl.png"] == done
        assert {"plots/itl.png", EXPORT_FILE} <= artifact_paths(MlflowClient(file_store), run_id)
        exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
        assert "plots/itl.png" in exported["artifacts"]

    def test_upload_announced_without_export_file(self, tmp_path: Path) -> None:
        """A directory profiled without MLflow: one line saying what to do."""
        with pytest.raises(UsageError) as info:
            upload_announced(tmp_path, [], environ={})
        assert str(info.value).startswith("--mlflow-upload: ")
        assert "--mlflow-tracking-uri" in str(info.value)

    def test_upload_announced_run_that_never_reached_mlflow(self, tmp_path: Path) -> None:
        """The profile's server was down throughout: the error says so, not 'profile first'."""
        (tmp_path / EXPORT_FILE).write_text(
            json.dumps({"tracking_uri": "http://h:1", "run_id": None})
        )
        with pytest.raises(UsageError) as info:
            upload_announced(tmp_path, [], environ={})
        assert "never reached MLflow" in str(info.value)

    def test_upload_announced_unreachable_server(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The server is down: an error that says the plots were not uploaded."""
        monkeypatch.setattr(environment, "probe", lambda config, timeout: False)
        (tmp_path / EXPORT_FILE).write_text(
            json.dumps({"tracking_uri": "http://localhost:5000", "run_id": "abc"})
        )
        with pytest.raises(AiperfError) as info:
            upload_announced(tmp_path, [], environ={})
        assert (
            "MLflow tracking server at http://localhost:5000 did not respond within 5s. "
            "The plots were not uploaded." == str(info.value)
        )


def test_export_file_upload_failure_is_not_listed(file_store: str, tmp_path: Path) -> None:
    """When mlflow_export.json itself cannot be sent, the local copy does not claim it was."""
    run = run_with_files(tmp_path)

    class LastUploadFails(MlflowSession):
        def upload(self, paths: object) -> list[str]:
            names = [p.name for p in paths]  # type: ignore[attr-defined]
            if EXPORT_FILE in names:
                raise ConnectionError("connection reset by peer")
            return super().upload(paths)  # type: ignore[arg-type]

    session = LastUploadFails(
        config=MlflowConfig(tracking_uri=file_store),
        run_dir=run.run_dir,
        probe_timeout_s=5.0,
        benchmark_id=run.benchmark_id,
    )
    session.start_run(run)
    with capture_logs():
        MlflowExporter(session=session).export(run, make_result())
    exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
    assert (False, "FINISHED") == (exported["uploaded"], exported["run_status"])
    assert EXPORT_FILE not in exported["artifacts"]
    assert "profile_export_aiperf.json" in exported["artifacts"]


def test_upload_announced_refuses_another_runs_export_file(file_store: str, tmp_path: Path) -> None:
    """Results of benchmark B beside the mlflow_export.json of benchmark A: one line, nothing
    uploaded to A's run."""
    run = run_with_files(tmp_path)
    session = session_for(run, file_store)
    run_id = session.start_run(run)
    (run.run_dir / "profile_export_aiperf.json").write_text(json.dumps({"benchmark_id": "other"}))
    png = run.run_dir / "plots" / "itl.png"
    png.write_bytes(b"\x89PNG")
    with pytest.raises(UsageError) as info:
        upload_announced(run.run_dir, [png], environ={})
    assert str(info.value).startswith("--mlflow-upload: the results in ")
    assert "benchmark other" in str(info.value) and f"benchmark {run.benchmark_id}" in str(info.value)
    assert "plots/itl.png" not in artifact_paths(MlflowClient(file_store), run_id)
