"""After the benchmark: the run directory into the MLflow run, statistics as run metrics, and
the run ended with the benchmark's status. Also ``aiperf plot --mlflow-upload``.

Runs after the trio loop, so blocking calls are fine here; every wait is still bounded (the
health probe first, then MLflow's client with the small retry counts set in
:mod:`aiperf_mlflow.environment`). A failure is logged and written into
``mlflow_export.json``; the benchmark's own results are never at stake.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import structlog
from aiperf import (
    AiperfError,
    RunContext,
    RunResult,
    RunStatus,
    UsageError,
    run_artifacts,
    write_json_atomic,
)

from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig, normalize_tracking_uri
from aiperf_mlflow.session import (
    EXPORT_FILE,
    MlflowSession,
    describe_error,
    read_export_file,
)

log = structlog.get_logger()


#: of the deadline, the part kept for ending the run: a hung upload must not leave it RUNNING.
END_SHARE = 1 / 3
#: at most this long is kept for ending the run.
END_RESERVE_S = 5.0
#: after one Ctrl-C during the upload: how long ending the run KILLED may take.
INTERRUPTED_END_S = 3.0


class OutOfTime(Exception):
    """A call to MLflow did not return before the deadline (it goes on in its thread)."""


def call_within(fn: Callable[[], Any], seconds: float) -> Any:
    """``fn()`` in a daemon thread; :class:`OutOfTime` when it takes longer than ``seconds``.

    The caller waits in ``Thread.join``, which a Ctrl-C interrupts (KeyboardInterrupt here,
    while the thread is abandoned); a daemon thread never holds up the process's exit.
    """
    if seconds <= 0:
        raise OutOfTime
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="aiperf-mlflow-upload", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise OutOfTime
    if "error" in box:
        raise box["error"]
    return box.get("value")


def manifest_files(run: RunContext) -> list[Path]:
    """What goes into the run's artifacts: exactly the files this run wrote (the run's
    manifest: results, GPU telemetry, metadata, plots), never anything else in the directory;
    ``mlflow_export.json`` is sent last, apart."""
    return [
        p
        for p in run_artifacts(run)
        if p.name != EXPORT_FILE and not p.name.endswith(".tmp")
    ]


@attrs.define(kw_only=True)
class MlflowExporter:
    session: MlflowSession
    name: str = "mlflow"
    #: an upload: after every local file is written.
    order: int = 200

    def export(self, run: RunContext, result: RunResult) -> list[Path]:
        session = self.session
        session.exported = True
        extra: dict[str, Any] = {
            "reused_live_run": session.run_id is not None,
            "benchmark_status": str(result.status),
            "uploaded": False,
        }
        try:
            return self._export(run, result, extra)
        except KeyboardInterrupt:
            # One Ctrl-C during the upload: the run is ended KILLED (briefly: the user is
            # waiting), the record says so, and the CLI exits 130.
            session.errors.append("upload interrupted by Ctrl-C")
            self._end(RunStatus.KILLED, INTERRUPTED_END_S)
            session.write_export_file(**extra)
            self._say_lost("interrupted by Ctrl-C")
            raise

    def _export(self, run: RunContext, result: RunResult, extra: dict[str, Any]) -> list[Path]:
        session = self.session
        total = session.config.upload_timeout_s
        reserve = min(END_RESERVE_S, total * END_SHARE)
        if not self._reachable(max(0.1, session.time_left() - reserve)):
            message = environment.unresponsive_message(session.config, session.probe_timeout_s)
            session.errors.append(f"{message} Nothing was uploaded.")
            self._say_lost(message.rstrip("."))
            return [session.write_export_file(**extra)]
        failures: list[str] = []

        def log_pending() -> None:
            session.log_points(session.pending)
            session.live_counts.logged += len(session.pending)
            session.pending.clear()

        steps: list[tuple[str, Callable[[], Any]]] = []
        if session.run_id is None:
            steps.append(("create the run", lambda: session.start_run(run)))
        if session.pending:
            steps.append(("log the live points", log_pending))
        steps.append(("log the summary metrics", lambda: session.log_summary(result)))
        files = manifest_files(run)
        steps.append(("upload the run directory", lambda: session.upload(files)))
        for step, call in steps:
            try:
                call_within(call, session.time_left() - reserve)
            except OutOfTime:
                failures.append(f"could not {step}: no answer within {total:g}s (--mlflow-upload-timeout)")
                break
            except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; each is reported the same way
                failures.append(f"could not {step}: {describe_error(exc)}")
                if session.run_id is None:
                    break
        failure = "; ".join(failures) or None
        session.errors.extend(failures)
        # Whatever failed above, the run is ended: it must never stay RUNNING.
        ended = self._end(result.status, session.time_left())
        if failure is None and ended:
            extra["uploaded"] = True
            # Listed before it is sent, so the copy in MLflow names itself too.
            session.artifacts.append(EXPORT_FILE)
            path = session.write_export_file(**extra)
            try:
                call_within(lambda: session.upload([path]), session.time_left())
            except OutOfTime:
                failure = f"could not upload {EXPORT_FILE}: no answer within {total:g}s"
            except Exception as exc:  # noqa: BLE001
                failure = f"could not upload {EXPORT_FILE}: {describe_error(exc)}"
        elif failure is None:
            failure = session.errors[-1] if session.errors else "could not end the run"
        if failure is not None:
            if failure not in session.errors:
                session.errors.append(failure)
            self._say_lost(failure)
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
        return [run.run_dir / EXPORT_FILE]

    def _end(self, status: RunStatus, seconds: float) -> bool:
        """End the run with ``status``; False (and the reason recorded) when MLflow does not
        take it in time. At least a second is given, even past the deadline."""
        session = self.session
        if session.run_id is None:
            return False
        try:
            call_within(lambda: session.terminate(status), max(seconds, 1.0))
        except OutOfTime:
            session.errors.append(f"could not end the run: no answer within {max(seconds, 1.0):g}s")
            return False
        except Exception as exc:  # noqa: BLE001
            session.errors.append(f"could not end the run: {describe_error(exc)}")
            return False
        return True

    def _say_lost(self, why: str) -> None:
        """The one line that says what MLflow did not get, after the last attempt."""
        session = self.session
        counts = session.live_counts
        counts.failed += len(session.pending)
        session.pending.clear()
        lost = counts.failed + counts.dropped
        points = f"; {lost} live points lost" if lost else ""
        ended = (
            f"; MLflow run {session.run_id} could not be ended and shows RUNNING"
            if session.run_id and session.run_status == "RUNNING"
            else ""
        )
        log.warning(
            f"mlflow: run files not uploaded to {session.config.display_uri} ({why}){points}{ended}"
        )

    def _reachable(self, seconds: float) -> bool:
        session = self.session
        return environment.probe(session.config, min(session.probe_timeout_s, seconds))


def finish_run(session: MlflowSession, status: RunStatus) -> None:
    """End a run the exporter never reached (a local exporter failed before it)."""
    if session.exported or session.run_id is None or session.run_status != "RUNNING":
        return
    try:
        call_within(lambda: session.terminate(status), max(session.time_left(), 1.0))
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
    results_id = _results_benchmark_id(run_dir)
    exported_id = data.get("benchmark_id")
    if results_id and exported_id and results_id != exported_id:
        raise UsageError(
            f"--mlflow-upload: the results in {run_dir} are from benchmark {results_id}, but its "
            f"{EXPORT_FILE} names the MLflow run of benchmark {exported_id}; not uploading "
            "another run's plots"
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
    files = _existing(paths)
    try:
        done = call_within(lambda: session.upload(files), session.time_left())
        data["artifacts"] = session.artifacts
        write_json_atomic(run_dir / EXPORT_FILE, data)
        call_within(lambda: session.upload([run_dir / EXPORT_FILE]), session.time_left())
    except OutOfTime:
        raise AiperfError(
            f"MLflow upload to run {session.run_id} did not finish within "
            f"{session.config.upload_timeout_s:g}s; the plots may be incomplete there"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise AiperfError(
            f"MLflow upload to run {session.run_id} failed: {describe_error(exc)}"
        ) from None
    log.info("mlflow_plots_uploaded", run_id=session.run_id, files=len(done))
    return done


def _existing(paths: Iterable[Path]) -> list[Path]:
    return [Path(p) for p in paths if Path(p).is_file()]


def _results_benchmark_id(run_dir: Path) -> str | None:
    """The benchmark the run directory's results are from (summary, else metadata)."""
    for name in ("profile_export_aiperf.json", "metadata.json"):
        try:
            value = json.loads((run_dir / name).read_text(encoding="utf-8")).get("benchmark_id")
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return str(value)
    return None
