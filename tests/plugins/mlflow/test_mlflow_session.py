"""The MLflow run of one benchmark, against a real local store (MLflow's own client, no server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiperf_mlflow.config import MlflowConfig
from aiperf_mlflow.points import Point
from aiperf_mlflow.session import (
    EXPORT_FILE,
    MlflowSession,
    describe_error,
    get_or_create_experiment,
    summary_metrics,
)
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from structlog.testing import capture_logs
from support.mlflow_values import CANARY, make_result, make_run


def new_session(uri: str, run_dir: Path, **config: Any) -> MlflowSession:
    return MlflowSession(
        config=MlflowConfig(tracking_uri=uri, **config),
        run_dir=run_dir,
        probe_timeout_s=5.0,
        benchmark_id="b0b0b0",
    )


class TestStartRun:
    def test_start_run_creates_run_with_tags_params_and_export_file(
        self, file_store: str, tmp_path: Path
    ) -> None:
        """Experiment, run, tags, params and mlflow_export.json, all at once."""
        run = make_run(tmp_path / "run")
        session = new_session(
            file_store, run.run_dir, experiment_name="exp", run_name="c4", tags=(("team", "ml"),)
        )
        run_id = session.start_run(run)

        stored = MlflowClient(file_store).get_run(run_id)
        experiment = MlflowClient(file_store).get_experiment(stored.info.experiment_id)
        assert "exp" == experiment.name
        assert "c4" == stored.info.run_name
        assert "RUNNING" == stored.info.status
        tags = stored.data.tags
        assert ("vllm", "my-model", "ml") == (
            tags["gen_ai.provider.name"],
            tags["gen_ai.request.model"],
            tags["team"],
        )
        assert "my-model" == stored.data.params["model"]
        assert CANARY not in json.dumps([stored.data.params, stored.data.tags])
        exported = json.loads((run.run_dir / EXPORT_FILE).read_text())
        assert {
            "tracking_uri": file_store,
            "experiment_name": "exp",
            "run_id": run_id,
            "run_status": "RUNNING",
            "benchmark_id": "b0b0b0",
        } == {
            k: exported[k]
            for k in ("tracking_uri", "experiment_name", "run_id", "run_status", "benchmark_id")
        }

    def test_start_run_is_idempotent(self, file_store: str, tmp_path: Path) -> None:
        """A second call (the exporter after an abandoned start) returns the same run."""
        run = make_run(tmp_path / "run")
        session = new_session(file_store, run.run_dir)
        assert session.start_run(run) == session.start_run(run)
        runs = MlflowClient(file_store).search_runs([session.experiment_id])
        assert 1 == len(runs)

    def test_start_run_default_experiment_and_name(self, file_store: str, tmp_path: Path) -> None:
        """No experiment named: 'aiperf'; no run name: the run directory's name."""
        run = make_run(tmp_path / "my-model-chat-concurrency4")
        session = new_session(file_store, run.run_dir)
        session.start_run(run)
        assert "aiperf" == session.experiment_name
        assert "my-model-chat-concurrency4" == session.run_name

    def test_start_run_nests_under_parent_in_its_experiment(
        self, file_store: str, tmp_path: Path
    ) -> None:
        """A child joins its parent's experiment and carries mlflow.parentRunId."""
        client = MlflowClient(file_store)
        sweep = client.create_experiment("my-sweep")
        parent = client.create_run(sweep).info.run_id
        run = make_run(tmp_path / "run")
        session = new_session(file_store, run.run_dir, parent_run_id=parent)
        run_id = session.start_run(run)
        child = client.get_run(run_id)
        assert (sweep, parent) == (child.info.experiment_id, child.data.tags["mlflow.parentRunId"])
        assert "my-sweep" == session.experiment_name

    def test_start_run_missing_parent_warns_once_and_goes_top_level(
        self, file_store: str, tmp_path: Path
    ) -> None:
        """A parent that does not exist: one warning, a top-level run."""
        run = make_run(tmp_path / "run")
        session = new_session(
            file_store, run.run_dir, parent_run_id="0123456789abcdef0123456789abcdef"
        )
        with capture_logs() as logs:
            run_id = session.start_run(run)
        warnings = [e for e in logs if e["log_level"] == "warning"]
        expected = (
            "MLflow parent run 0123456789abcdef0123456789abcdef does not exist; "
            "logging a top-level run."
        )
        assert [expected] == [e["event"] for e in warnings]
        assert "mlflow.parentRunId" not in MlflowClient(file_store).get_run(run_id).data.tags

    def test_start_run_parent_in_other_experiment_warns(
        self, file_store: str, tmp_path: Path
    ) -> None:
        """An explicit experiment other than the parent's is kept, with a hint about nesting."""
        client = MlflowClient(file_store)
        parent = client.create_run(client.create_experiment("sweep")).info.run_id
        run = make_run(tmp_path / "run")
        session = new_session(
            file_store, run.run_dir, parent_run_id=parent, experiment_name="other"
        )
        with capture_logs() as logs:
            session.start_run(run)
        assert ["mlflow_parent_in_other_experiment"] == [
            e["event"] for e in logs if e["log_level"] == "warning"
        ]
        assert "other" == session.experiment_name


class FakeClient:
    """Just enough of MlflowClient to script a race or count requests."""

    def __init__(self) -> None:
        self.experiments: dict[str, Any] = {}
        self.batches: list[int] = []
        self.creates = 0

    def get_experiment_by_name(self, name: str) -> Any:
        return self.experiments.get(name)

    def create_experiment(self, name: str) -> str:
        self.creates += 1
        # Another benchmark created it between our get and our create.
        self.experiments[name] = _Experiment("42", "active")
        raise MlflowException("already there", error_code=databricks_pb2.RESOURCE_ALREADY_EXISTS)

    def log_batch(self, run_id: str, metrics: Any = (), synchronous: bool = True) -> None:
        self.batches.append(len(metrics))


class _Experiment:
    def __init__(self, experiment_id: str, stage: str) -> None:
        self.experiment_id = experiment_id
        self.lifecycle_stage = stage


class TestExperiment:
    def test_lost_create_race_reads_the_winner(self) -> None:
        """RESOURCE_ALREADY_EXISTS on create: the experiment another run made is used."""
        client = FakeClient()
        assert "42" == get_or_create_experiment(client, "exp")
        assert 1 == client.creates

    def test_other_create_errors_propagate(self) -> None:
        """Any other refusal is not mistaken for the race."""

        class Refusing(FakeClient):
            def create_experiment(self, name: str) -> str:
                raise MlflowException("no", error_code=databricks_pb2.PERMISSION_DENIED)

        with pytest.raises(MlflowException):
            get_or_create_experiment(Refusing(), "exp")

    def test_deleted_experiment_is_restored(self, file_store: str) -> None:
        """A deleted experiment keeps its name in MLflow: it is restored, and the user told."""
        client = MlflowClient(file_store)
        experiment_id = client.create_experiment("gone")
        client.delete_experiment(experiment_id)
        with capture_logs() as logs:
            assert experiment_id == get_or_create_experiment(client, "gone")
        assert "active" == client.get_experiment(experiment_id).lifecycle_stage
        assert ["mlflow_experiment_restored"] == [e["event"] for e in logs]


class TestLogging:
    def test_log_points_at_most_1000_per_request(self, tmp_path: Path) -> None:
        """2500 points go out as 1000 + 1000 + 500."""
        session = new_session("http://127.0.0.1:1", tmp_path)
        session.client = FakeClient()
        session.run_id = "r"
        session.log_points([Point("k", 1.0, 0, i) for i in range(2500)])
        assert [1000, 1000, 500] == session.client.batches

    def test_log_points_history_in_store(self, file_store: str, tmp_path: Path) -> None:
        """Points land in the run's history with their steps, values and timestamps."""
        run = make_run(tmp_path / "run")
        session = new_session(file_store, run.run_dir)
        run_id = session.start_run(run)
        session.log_points([Point("live.x", float(i), 1000 + i, i) for i in range(5)])
        history = MlflowClient(file_store).get_metric_history(run_id, "live.x")
        assert [(i, float(i), 1000 + i) for i in range(5)] == sorted(
            (m.step, m.value, m.timestamp) for m in history
        )

    def test_summary_metrics_names(self) -> None:
        """Statistics become '<tag>.<stat>'; run metrics their bare tag."""
        got = summary_metrics(make_result())
        assert 24.0 == got["time_to_first_token.p99"]
        assert 20.5 == got["time_to_first_token.avg"]
        assert 64.0 == got["time_to_first_token.count"]
        assert 3.5 == got["request_throughput"]

    def test_summary_metrics_loop_lag_of_the_worst_process(self) -> None:
        """Measurement health: the worst load process's loop lag, in ms like the summary."""
        import attrs
        from aiperf._health import ProcessHealth, assess

        def process(worker: int, p99: float) -> ProcessHealth:
            return ProcessHealth(
                worker=worker, lag_count=100, lag_p50_ms=0.5, lag_p99_ms=p99, lag_max_ms=p99 * 2,
                wall_s=1.0, cpu_s=0.5, loop_cpu_s=0.5, cpu_wait_s=0.0, cpus_available=2.0,
            )  # fmt: skip

        result = attrs.evolve(make_result(), health=assess([process(0, 1.5), process(1, 7.0)]))
        got = summary_metrics(result)
        assert (0.5, 7.0, 14.0) == (
            got["client.loop_lag.p50"], got["client.loop_lag.p99"], got["client.loop_lag.max"]
        )
        assert not any(key.startswith("client.loop_lag") for key in summary_metrics(make_result()))

    def test_upload_keeps_place_in_run_directory(self, file_store: str, tmp_path: Path) -> None:
        """plots/x.png stays under plots/ in the run's artifacts."""
        run = make_run(tmp_path / "run")
        (run.run_dir / "plots").mkdir()
        png = run.run_dir / "plots" / "ttft.png"
        png.write_bytes(b"\x89PNG")
        (run.run_dir / "a.json").write_text("{}")
        session = new_session(file_store, run.run_dir)
        run_id = session.start_run(run)
        assert ["a.json", "plots/ttft.png"] == session.upload([run.run_dir / "a.json", png])
        client = MlflowClient(file_store)
        assert ["plots/ttft.png"] == [f.path for f in client.list_artifacts(run_id, "plots")]


class TestExportFile:
    def test_adopt_export_file_of_same_benchmark(self, file_store: str, tmp_path: Path) -> None:
        """The file written for this benchmark hands over its run."""
        run = make_run(tmp_path / "run")
        first = new_session(file_store, run.run_dir)
        run_id = first.start_run(run)
        second = new_session(file_store, run.run_dir)
        second.adopt_export_file()
        assert (run_id, "RUNNING") == (second.run_id, second.run_status)

    def test_stale_export_file_is_ignored(self, file_store: str, tmp_path: Path) -> None:
        """A file left by an earlier benchmark in the same directory is not adopted."""
        run = make_run(tmp_path / "run")
        new_session(file_store, run.run_dir).start_run(run)
        later = MlflowSession(
            config=MlflowConfig(tracking_uri=file_store),
            run_dir=run.run_dir,
            probe_timeout_s=5.0,
            benchmark_id="another",
        )
        later.adopt_export_file()
        assert later.run_id is None


def test_describe_error_one_line_without_credentials() -> None:
    """An MLflow error becomes one short line with no user:password@."""
    exc = MlflowException("API request to http://u:pw@h:5000/x failed\nTo increase the timeout...")
    assert "MlflowException: API request to http://h:5000/x failed" == describe_error(exc)
    assert len(describe_error(MlflowException("x" * 1000))) < 330


def test_describe_error_names_network_cause() -> None:
    """A refused connection deep in MLflow's wrappers is named plainly."""
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("HTTPConnectionPool(host=...): Max retries exceeded") from inner
    except RuntimeError as middle:
        exc = MlflowException(
            f"API request to http://u:pw@h:5000/api failed with exception {middle}"
        )
        exc.__context__ = middle
    assert "MlflowException: Connection refused" == describe_error(exc)
