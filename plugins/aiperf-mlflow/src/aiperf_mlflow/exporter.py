"""After the benchmark: the run directory into the MLflow run, statistics as run metrics, and
the run ended with the benchmark's status. Also ``aiperf plot --mlflow-upload``.

Runs after the trio loop, so blocking calls are fine here; every wait is still bounded (the
health probe first, then MLflow's client with the small retry counts set in
:mod:`aiperf_mlflow.environment`). A failure is logged and written into
``mlflow_export.json``; the benchmark's own results are never at stake.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
from aiperf import AiperfError, RunContext, RunResult, RunStatus, UsageError

from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig, normalize_tracking_uri
from aiperf_mlflow.session import (
    EXPORT_FILE,
    PLOTS_DIR,
    MlflowSession,
    describe_error,
    read_export_file,
    write_json,
)

log = structlog.get_logger()


def run_files(run_dir: Path) -> list[Path]:
    """What goes into the run's artifacts: every file at the top of the run directory (results,
    GPU telemetry, metadata) and ``plots/*.png``; ``mlflow_export.json`` is sent last, apart."""
    files = sorted(
        p
        for p in run_dir.iterdir()
        if p.is_file() and p.name != EXPORT_FILE and not p.name.endswith(".tmp")
    )
    plots = run_dir / PLOTS_DIR
    if plots.is_dir():
        files.extend(sorted(plots.glob("*.png")))
    return files


@attrs.define(kw_only=True)
class MlflowExporter:
    session: MlflowSession
    name: str = "mlflow"
    #: an upload: after every local file is written.
    order: int = 200

    def export(self, run: RunContext, result: RunResult) -> list[Path]:
        session = self.session
        session.exported = True
        reused = session.run_id is not None
        extra: dict[str, Any] = {
            "reused_live_run": reused,
            "benchmark_status": str(result.status),
            "uploaded": False,
        }
        if not self._reachable():
            message = environment.unresponsive_message(session.config, session.probe_timeout_s)
            session.errors.append(f"{message} Nothing was uploaded.")
            self._say_lost(message.rstrip("."))
            return [session.write_export_file(**extra)]
        step = "create the run"
        try:
            if not reused:
                session.start_run(run)
            if session.pending:
                step = "log the live points"
                session.log_points(session.pending)
                session.live_counts.logged += len(session.pending)
                session.pending.clear()
            step = "log the summary metrics"
            session.log_summary(result)
            step = "upload the run directory"
            session.upload(run_files(run.run_dir))
            step = "end the run"
            session.terminate(result.status)
            step = f"upload {EXPORT_FILE}"
            extra["uploaded"] = True
            # Listed before it is sent, so the copy in MLflow names itself too.
            session.artifacts.append(EXPORT_FILE)
            path = session.write_export_file(**extra)
            session.upload([path])
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; each is reported the same way
            error = f"could not {step}: {describe_error(exc)}"
            session.errors.append(error)
            self._say_lost(error)
            extra["uploaded"] = False
            if EXPORT_FILE in session.artifacts:
                session.artifacts.remove(EXPORT_FILE)
            return [session.write_export_file(**extra)]
        log.info(
            "mlflow_upload_done",
            run_id=session.run_id,
            artifacts=len(session.artifacts),
            status=str(result.status),
        )
        return [path]

    def _say_lost(self, why: str) -> None:
        """The one line that says what MLflow did not get, after the last attempt."""
        session = self.session
        counts = session.live_counts
        counts.failed += len(session.pending)
        session.pending.clear()
        lost = counts.failed + counts.dropped
        points = f"; {lost} live points lost" if lost else ""
        log.warning(f"mlflow: run files not uploaded to {session.config.display_uri} ({why}){points}")

    def _reachable(self) -> bool:
        session = self.session
        return environment.probe(session.config, session.probe_timeout_s)


def finish_run(session: MlflowSession, status: RunStatus) -> None:
    """End a run the exporter never reached (a local exporter failed before it)."""
    if session.exported or session.run_id is None or session.run_status != "RUNNING":
        return
    try:
        session.terminate(status)
        session.write_export_file(benchmark_status=str(status), uploaded=False)
    except Exception as exc:  # noqa: BLE001
        log.warning("mlflow_end_run_failed", run_id=session.run_id, error=describe_error(exc))


# -- aiperf plot --mlflow-upload ---------------------------------------------------------------


def upload_announced(
    run_dir: Path,
    paths: Sequence[Path],
    tracking_uri: str | None = None,
    environ: dict[str, str] | None = None,
) -> list[str]:
    """Upload files another plugin wrote into ``run_dir`` to the run named in its
    ``mlflow_export.json``; keep that file's list of artifacts current."""
    data = read_export_file(run_dir)
    if not data:
        raise UsageError(
            f"--mlflow-upload: no {EXPORT_FILE} in {run_dir}; profile with "
            "--mlflow-tracking-uri to log the run to MLflow first"
        )
    if not data.get("run_id"):
        raise UsageError(
            f"--mlflow-upload: the profile in {run_dir} never reached MLflow, so there is no run "
            f"to add the plots to (see 'errors' in {EXPORT_FILE})"
        )
    uri = tracking_uri or data.get("tracking_uri")
    if not uri:
        raise UsageError(f"--mlflow-upload: {run_dir / EXPORT_FILE} has no tracking_uri")
    config = MlflowConfig(tracking_uri=normalize_tracking_uri(str(uri)))
    prepared = environment.apply(config, os.environ if environ is None else environ)
    session = MlflowSession(
        config=config,
        run_dir=run_dir,
        probe_timeout_s=prepared.probe_timeout_s,
        run_id=str(data["run_id"]),
        artifacts=list(data.get("artifacts") or []),
    )
    if not environment.probe(config, session.probe_timeout_s):
        message = environment.unresponsive_message(config, session.probe_timeout_s)
        raise AiperfError(f"{message} The plots were not uploaded.")
    try:
        done = session.upload(_existing(paths))
        data["artifacts"] = session.artifacts
        write_json(run_dir / EXPORT_FILE, data)
        session.upload([run_dir / EXPORT_FILE])
    except Exception as exc:  # noqa: BLE001
        raise AiperfError(
            f"MLflow upload to run {session.run_id} failed: {describe_error(exc)}"
        ) from None
    log.info("mlflow_plots_uploaded", run_id=session.run_id, files=len(done))
    return done


def _existing(paths: Iterable[Path]) -> list[Path]:
    return [Path(p) for p in paths if Path(p).is_file()]
