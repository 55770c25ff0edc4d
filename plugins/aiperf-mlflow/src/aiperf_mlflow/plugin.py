"""Hook implementations of aiperf-mlflow. Imports nothing heavy: `aiperf --help` loads this module.

MLflow itself is imported only once a run asks for it (``--mlflow-tracking-uri``), inside the
hooks below.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf import MissingExtra, UsageError, hookimpl

from aiperf_mlflow import config as flags

if TYPE_CHECKING:
    from aiperf import (
        Exporter,
        LiveSink,
        PluginOptions,
        ProfileConfig,
        RunContext,
        RunResult,
        RunStatus,
        SweepContext,
    )

    from aiperf_mlflow.session import MlflowSession

#: key of this plugin's objects in ``RunContext.state``.
STATE_KEY = "mlflow"


@hookimpl
def aiperf_register_options(register: Callable[[PluginOptions], None]) -> None:
    from aiperf import PluginOptions

    register(
        PluginOptions(
            name="mlflow",
            options=flags.MlflowOptions,
            title="MLflow",
            description="Live logging to MLflow and upload of the results (aiperf-mlflow)",
            check=flags.check_options,
        )
    )


@hookimpl
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "plot":
        group = parser.add_argument_group("MLflow", "Upload the plots (aiperf-mlflow)")
        group.add_argument(
            "--mlflow-upload",
            dest=flags.UPLOAD,
            action="store_true",
            help="upload the PNGs to the MLflow run named in the run directory's "
            "mlflow_export.json",
        )
        group.add_argument(
            "--mlflow-tracking-uri",
            dest=flags.TRACKING_URI,
            metavar="URI",
            help="tracking URI for --mlflow-upload (default: the one in mlflow_export.json)",
        )
    elif command == "compare":
        group = parser.add_argument_group("MLflow", "Compare runs logged to MLflow (aiperf-mlflow)")
        group.add_argument(
            "--mlflow-tracking-uri",
            dest=flags.TRACKING_URI,
            metavar="URI",
            help="where the runs given as mlflow:RUN_ID (or a bare 32-hex run id) are logged "
            "(default: MLFLOW_TRACKING_URI)",
        )


@hookimpl
def aiperf_configure(config: ProfileConfig) -> None:
    mlflow_config = flags.from_options(config.plugin_options)
    if mlflow_config is None:
        return
    from aiperf_mlflow import environment

    # Before the import: MLflow reads some of its settings only then.
    environment.apply(mlflow_config)
    _require_mlflow(mlflow_config.tracking_uri)
    environment.note_store(mlflow_config)


@hookimpl
def aiperf_live_sinks(config: ProfileConfig, run: RunContext) -> Sequence[LiveSink] | None:
    session = _session(config, run)
    if session is None:
        return None
    from aiperf_mlflow.sink import MlflowLiveSink

    return [MlflowLiveSink(session=session)]


@hookimpl
def aiperf_exporters(config: ProfileConfig, run: RunContext) -> Sequence[Exporter] | None:
    session = _session(config, run)
    if session is None:
        return None
    from aiperf_mlflow.exporter import MlflowExporter

    return [MlflowExporter(session=session)]


@hookimpl
def aiperf_run_finished(run: RunContext, result: RunResult) -> None:
    session = run.state.get(STATE_KEY)
    if session is not None:
        from aiperf_mlflow.exporter import finish_run

        finish_run(session, result.status)


@hookimpl
def aiperf_sweep_started(sweep: SweepContext) -> dict[str, Any] | None:
    mlflow_config = flags.from_options(sweep.config.plugin_options)
    if mlflow_config is None:
        return None
    from aiperf_mlflow.parent import start_parent

    return start_parent(sweep, mlflow_config)


@hookimpl
def aiperf_sweep_point_finished(sweep: SweepContext, point: dict[str, Any]) -> None:
    if STATE_KEY in sweep.state:
        from aiperf_mlflow.parent import log_point

        log_point(sweep, point)


@hookimpl
def aiperf_sweep_finished(sweep: SweepContext, paths: Sequence[Path], status: RunStatus) -> None:
    if STATE_KEY in sweep.state:
        from aiperf_mlflow.parent import finish_parent

        finish_parent(sweep, paths, status)


@hookimpl
def aiperf_artifacts_written(run_dir: Path, paths: Sequence[Path], options: dict[str, Any]) -> None:
    if not options.get(flags.UPLOAD):
        return
    tracking_uri = options.get(flags.TRACKING_URI)
    _require_mlflow(tracking_uri)
    from aiperf_mlflow.exporter import upload_announced

    upload_announced(run_dir, paths, tracking_uri=tracking_uri)


@hookimpl
def aiperf_fetch_run(ref: str, dest: Path, options: dict[str, Any]) -> Path | None:
    from aiperf_mlflow import fetch

    run_id = fetch.run_id_of(ref)
    if run_id is None:
        return None
    uri = fetch.tracking_uri(ref, options.get(flags.TRACKING_URI))
    _require_mlflow(uri)
    return fetch.fetch(ref, run_id, dest, uri)


def _require_mlflow(tracking_uri: str | None) -> None:
    """Import MLflow now, so a broken or missing install is one line before the run starts."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise MissingExtra(flags.MISSING_PACKAGE) from None
    if tracking_uri and tracking_uri.startswith("sqlite:"):
        import importlib.util

        if (
            importlib.util.find_spec("sqlalchemy") is None
            or importlib.util.find_spec("alembic") is None
        ):
            raise UsageError(
                "--mlflow-tracking-uri: sqlite:// stores need the full MLflow package "
                "(pip install mlflow); with mlflow-skinny alone use a tracking server or file:DIR"
            )


def _session(config: ProfileConfig, run: RunContext) -> MlflowSession | None:
    """The run's MLflow session: made by the first hook that needs it, shared through
    ``run.state`` by the live sink and the exporter."""
    session = run.state.get(STATE_KEY)
    if session is not None:
        return session
    mlflow_config = flags.from_options(config.plugin_options)
    if mlflow_config is None:
        return None
    from aiperf_mlflow import environment
    from aiperf_mlflow.session import MlflowSession

    prepared = environment.apply(mlflow_config)
    session = MlflowSession(
        config=mlflow_config,
        run_dir=run.run_dir,
        probe_timeout_s=prepared.probe_timeout_s,
        benchmark_id=run.benchmark_id,
    )
    session.adopt_export_file()
    run.state[STATE_KEY] = session
    return session
