"""One benchmark's MLflow run: the blocking client calls, shared by the live sink, the post-run
exporter and ``aiperf plot --mlflow-upload``.

Every method here blocks on the network (or the local store): call it from a worker thread
(``trio.to_thread.run_sync``) or after the trio loop. MLflow is imported here, so import this
module only when the integration is used.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
from aiperf import MetricStats, RunContext, RunResult, RunStatus, describe_error, write_json_atomic
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from aiperf_mlflow.config import DEFAULT_EXPERIMENT, MlflowConfig
from aiperf_mlflow.params import run_params, run_tags
from aiperf_mlflow.points import Point

log = structlog.get_logger()

EXPORT_FILE = "mlflow_export.json"
PARENT_TAG = "mlflow.parentRunId"
#: the MLflow server takes at most this many metrics per request.
BATCH_LIMIT = 1000
#: run-directory files uploaded besides those found by name (plots live in a folder).
PLOTS_DIR = "plots"

_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
_DOES_NOT_EXIST = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND")


def get_or_create_experiment(client: Any, name: str) -> str:
    """The id of experiment ``name``, created when missing.

    Safe when several benchmarks start at once: whoever loses the race to create it gets
    ``RESOURCE_ALREADY_EXISTS`` and reads the winner's. A deleted experiment keeps its name in
    MLflow, so it is restored (and the user told) rather than failing.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException as exc:
            if exc.error_code != _ALREADY_EXISTS:
                raise
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise MlflowException(f"experiment {name!r} exists but cannot be read")
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
        log.warning("mlflow_experiment_restored", experiment=name, id=experiment.experiment_id)
    return str(experiment.experiment_id)


def default_run_name(run: RunContext) -> str:
    return run.run_dir.name or f"{run.config.model}-{run.config.endpoint_type}-{run.load_setting}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@attrs.define(kw_only=True)
class LiveCounts:
    """What happened to the live points (for the end-of-run line and ``mlflow_export.json``)."""

    logged: int = 0
    #: the sink's buffer was full (MLflow fell behind).
    dropped: int = 0
    #: MLflow refused them or could not be reached.
    failed: int = 0
    #: measured requests whose per-request points were left out to stay within the sink's
    #: request rate (not lost: the summary and the JSONL have every request).
    thinned: int = 0

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


@attrs.define(kw_only=True)
class MlflowSession:
    """The MLflow side of one benchmark. Holds what the sink learned for the exporter."""

    config: MlflowConfig
    run_dir: Path
    #: how long the tracking server has to answer the health probe.
    probe_timeout_s: float
    #: the benchmark this session logs (guards against adopting a stale mlflow_export.json).
    benchmark_id: str | None = None
    client: Any = None
    experiment_id: str | None = None
    experiment_name: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    parent_run_id: str | None = None
    #: the MLflow state of the run as far as we know (``RUNNING`` until we end it).
    run_status: str | None = None
    artifacts: list[str] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    live_counts: LiveCounts = attrs.field(factory=LiveCounts)
    #: points the sink could not log for want of a run; the exporter logs them into its run.
    pending: list[Point] = attrs.field(factory=list)
    #: the post-run exporter has done its part (uploaded, or given up and said why).
    exported: bool = False
    #: time.monotonic() by which everything after the load must be done; set by the first
    #: of the sink's final flush and the exporter (see :meth:`tail_deadline`).
    deadline: float | None = None
    _start_lock: threading.Lock = attrs.field(factory=threading.Lock)

    def tail_deadline(self) -> float:
        """The one deadline shared by the final flush, the upload and ending the run
        (``--mlflow-upload-timeout``), so that a hung server costs that long once, not per step."""
        if self.deadline is None:
            self.deadline = time.monotonic() + self.config.upload_timeout_s
        return self.deadline

    def time_left(self) -> float:
        return max(0.0, self.tail_deadline() - time.monotonic())

    def _client(self) -> Any:
        if self.client is None:
            self.client = MlflowClient(tracking_uri=self.config.tracking_uri)
        return self.client

    # -- the run -------------------------------------------------------------------------

    def adopt_export_file(self) -> None:
        """Take over the run named in the run directory's ``mlflow_export.json`` when that
        file was written for this very benchmark (never a stale one from an earlier run)."""
        data = read_export_file(self.run_dir)
        if (
            self.run_id is not None
            or not data
            or not data.get("run_id")
            or self.benchmark_id is None
            or data.get("benchmark_id") != self.benchmark_id
            or data.get("tracking_uri") != self.config.display_uri
        ):
            return
        self.run_id = str(data["run_id"])
        self.experiment_id = data.get("experiment_id")
        self.experiment_name = data.get("experiment_name")
        self.run_name = data.get("run_name")
        self.parent_run_id = data.get("parent_run_id")
        self.run_status = data.get("run_status")

    def start_run(self, run: RunContext) -> str:
        """Create the run with params and tags and write ``mlflow_export.json``; idempotent."""
        return self.create_run(
            tags=run_tags(run, self.config.tags),
            params=run_params(run),
            run_name=self.config.run_name or default_run_name(run),
        )

    def create_run(self, *, tags: dict[str, str], params: dict[str, str], run_name: str) -> str:
        """Create a run (under ``--mlflow-parent-run-id`` when given) with these tags, params
        and name, and write ``mlflow_export.json``; idempotent."""
        with self._start_lock:
            if self.run_id is not None:
                return self.run_id
            client = self._client()
            parent = self._parent_run(client)
            name = self.config.experiment_name
            if name is None:
                name = self._parent_experiment_name(client, parent) or DEFAULT_EXPERIMENT
            elif parent is not None and parent.info.experiment_id != self._experiment_id_of(
                client, name
            ):
                log.warning(
                    "mlflow_parent_in_other_experiment",
                    parent_run_id=parent.info.run_id,
                    experiment=name,
                    hint="the MLflow UI nests child runs only within the parent's experiment",
                )
            experiment_id = get_or_create_experiment(client, name)
            tags = dict(tags)
            if parent is not None:
                tags[PARENT_TAG] = parent.info.run_id
            created = client.create_run(
                experiment_id, start_time=_now_ms(), tags=tags, run_name=run_name
            )
            run_id = created.info.run_id
            # Known (and written down) the moment it exists: whatever fails next, this run is
            # the one that gets the points and is ended; no second run is ever made for it.
            self.experiment_id, self.experiment_name = experiment_id, name
            self.run_name, self.run_status = run_name, "RUNNING"
            self.parent_run_id = parent.info.run_id if parent is not None else None
            self.run_id = run_id
            self.write_export_file()
            params_list = [Param(key, value) for key, value in params.items()]
            try:
                client.log_batch(run_id, params=params_list, synchronous=True)
            except Exception as exc:  # noqa: BLE001 - the run exists; losing params is reported
                error = f"could not log the params: {describe_error(exc)}"
                self.errors.append(error)
                log.warning("mlflow_params_not_logged", run_id=run_id, error=error)
                self.write_export_file()
            log.info(
                "mlflow_run_started",
                run_id=run_id,
                experiment=name,
                uri=self.config.display_uri,
            )
            return run_id

    def _parent_run(self, client: Any) -> Any:
        parent_id = self.config.parent_run_id
        if parent_id is None:
            return None
        try:
            return client.get_run(parent_id)
        except MlflowException as exc:
            if exc.error_code not in _DOES_NOT_EXIST and "not found" not in str(exc).lower():
                raise
        log.warning(
            f"MLflow parent run {parent_id} does not exist; logging a top-level run.",
            uri=self.config.display_uri,
        )
        return None

    @staticmethod
    def _parent_experiment_name(client: Any, parent: Any) -> str | None:
        if parent is None:
            return None
        return str(client.get_experiment(parent.info.experiment_id).name)

    @staticmethod
    def _experiment_id_of(client: Any, name: str) -> str | None:
        experiment = client.get_experiment_by_name(name)
        return None if experiment is None else str(experiment.experiment_id)

    # -- metrics -------------------------------------------------------------------------

    def log_points(self, points: Sequence[Point]) -> None:
        """Log points to the run, at most :data:`BATCH_LIMIT` per request."""
        if self.run_id is None:
            raise RuntimeError("no MLflow run to log to")
        client = self._client()
        for first in range(0, len(points), BATCH_LIMIT):
            metrics = [
                Metric(p.key, p.value, p.timestamp_ms, p.step)
                for p in points[first : first + BATCH_LIMIT]
            ]
            client.log_batch(self.run_id, metrics=metrics, synchronous=True)

    def log_summary(self, result: RunResult) -> int:
        """The run's statistics as run metrics (``time_to_first_token.p99``, display units)."""
        when = (result.end_wall_ns // 1_000_000) if result.end_wall_ns else _now_ms()
        points = [Point(key, value, when, 0) for key, value in summary_metrics(result).items()]
        self.log_points(points)
        return len(points)

    # -- artifacts -----------------------------------------------------------------------

    def upload(self, paths: Iterable[Path]) -> list[str]:
        """Upload files of the run directory, keeping their place in it (``plots/x.png``)."""
        if self.run_id is None:
            raise RuntimeError("no MLflow run to upload to")
        client = self._client()
        done = []
        for path in paths:
            folder = _artifact_folder(path, self.run_dir)
            client.log_artifact(self.run_id, str(path), folder)
            name = f"{folder}/{path.name}" if folder else path.name
            done.append(name)
            if name not in self.artifacts:
                self.artifacts.append(name)
        return done

    def terminate(self, status: RunStatus) -> None:
        if self.run_id is None:
            return
        self._client().set_terminated(self.run_id, status=str(status), end_time=_now_ms())
        self.run_status = str(status)

    # -- the record in the run directory -------------------------------------------------

    def export_data(self, **extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tracking_uri": self.config.display_uri,
            "benchmark_id": self.benchmark_id,
            "experiment_name": self.experiment_name,
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "run_name": self.run_name,
            "parent_run_id": self.parent_run_id,
            "run_status": self.run_status,
        }
        if self.config.is_server and self.experiment_id and self.run_id:
            data["run_url"] = (
                f"{self.config.display_uri}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
            )
        data["live_points"] = self.live_counts.as_dict()
        data.update(extra)
        if self.artifacts:
            data["artifacts"] = list(self.artifacts)
        data["errors"] = list(self.errors)
        return data

    def write_export_file(self, **extra: Any) -> Path:
        return write_json_atomic(self.run_dir / EXPORT_FILE, self.export_data(**extra))


def summary_metrics(result: RunResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for tag, stats in result.metrics.items():
        out.update(_statistics(tag, stats))
    for tag, stats in result.run_metrics.items():
        if stats.avg is not None:
            out[tag] = float(stats.avg)
    if result.send_lag is not None:
        out.update(_statistics("client.send_lag", result.send_lag))
    health = result.health
    if health is not None and health.overhead_p99_ms is not None:
        # The worst load process's event-loop lag (ms): the bound the console line gives.
        lag = health.as_dict()["loop_lag_ms"] or {}
        for stat in ("p50", "p99", "max"):
            if lag.get(stat) is not None:
                out[f"client.loop_lag.{stat}"] = float(lag[stat])
    return out


def _statistics(prefix: str, stats: MetricStats) -> dict[str, float]:
    return {
        f"{prefix}.{stat}": float(value)
        for stat, value in stats.as_dict().items()
        if stat not in ("unit", "header") and isinstance(value, (int, float))
    }


def _artifact_folder(path: Path, run_dir: Path) -> str | None:
    try:
        parent = path.resolve().relative_to(run_dir.resolve()).parent
    except ValueError:
        return PLOTS_DIR if path.suffix == ".png" else None
    return None if str(parent) == "." else parent.as_posix()


def read_export_file(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / EXPORT_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
