"""A sweep's parent run: a sweep, repeats or a search get one MLflow run above the runs of
their points (docs/sweeps.md, docs/mlflow.md).

The parent run holds the sweep's parameters, one metric series per key metric whose step is
the point's index (``time_to_first_token.p99`` at step 2 is the third point's p99), the swept
value beside it as a series of its own (``sweep.concurrency``), and the summary files as
artifacts. In MLflow's chart of ``time_to_first_token.p99``, choosing ``sweep.concurrency`` as
the x axis draws latency against load.

Each point is a child run, made by the point's own session as for any run: this module only
hands every point the parent's id. Nothing here may stop the sweep: a failure is one warning,
recorded in the sweep directory's ``mlflow_export.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from aiperf import ArtifactWriteError, RunStatus, SweepContext

from aiperf_mlflow import config as flags
from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig
from aiperf_mlflow.exporter import OutOfTime, call_within
from aiperf_mlflow.params import flatten_params
from aiperf_mlflow.plugin import STATE_KEY
from aiperf_mlflow.points import Point
from aiperf_mlflow.session import MlflowSession, describe_error

log = structlog.get_logger()

#: the metrics of each point drawn as series on the parent run (every statistic a point has).
KEY_METRICS = (
    "time_to_first_token",
    "inter_token_latency",
    "request_latency",
    "output_token_throughput",
    "request_throughput",
    "goodput",
    "request_error_rate",
)
#: the configuration field of each swept parameter.
_FIELDS = {"isl": "synthetic_input_tokens_mean", "osl": "output_tokens_mean"}
#: the swept values' series: ``sweep.concurrency``, ``sweep.trial``, ...
SWEEP_PREFIX = "sweep."
#: the means of repeats, with their intervals: ``aggregate.request_latency.p99.mean``.
AGGREGATE_PREFIX = "aggregate."


def parent_tags(sweep: SweepContext, user_tags: tuple[tuple[str, str], ...]) -> dict[str, str]:
    config = sweep.config
    tags = {
        "gen_ai.request.model": config.model,
        "aiperf.endpoint_type": config.endpoint_type,
        "aiperf.version": sweep.version,
        "aiperf.kind": sweep.kind,
        "aiperf.sweep_id": sweep.sweep_id,
        "aiperf.sweep.parameters": ",".join(sweep.parameters),
    }
    tags.update(user_tags)
    return tags


def parent_params(sweep: SweepContext) -> dict[str, str]:
    """The command's configuration, and what the sweep varies in so many words."""
    params = flatten_params(sweep.redacted_config())
    # The swept flags hold only the first value; the lists are below.
    for name in ("sweep_values", *(_FIELDS.get(n, n) for n in sweep.parameters)):
        params.pop(name, None)
    extra: dict[str, Any] = {"sweep.kind": sweep.kind, "sweep.parameters": list(sweep.parameters)}
    for name, values in sweep.values.items():
        extra[f"sweep.{name}"] = values
    config = sweep.config
    if sweep.kind == "sweep":
        extra["sweep.type"] = config.sweep_type
    elif sweep.kind == "repeat":
        extra["repeat.num_profile_runs"] = config.num_profile_runs
        extra["repeat.confidence_level"] = config.confidence_level or 0.95
    else:
        extra["search.target"] = config.search
        extra["search.slo_attainment"] = config.slo_attainment
    params.update(flatten_params(extra))
    return params


def start_parent(sweep: SweepContext, mlflow_config: MlflowConfig) -> dict[str, Any] | None:
    """Create the parent run; the plugin options that make each point its child."""
    prepared = environment.apply(mlflow_config)
    session = MlflowSession(
        config=mlflow_config,
        run_dir=sweep.sweep_dir,
        probe_timeout_s=prepared.probe_timeout_s,
        benchmark_id=sweep.sweep_id,
    )
    if not environment.probe(mlflow_config, session.probe_timeout_s):
        message = environment.unresponsive_message(mlflow_config, session.probe_timeout_s)
        log.warning(f"mlflow: {message} The {sweep.kind} has no parent run.")
        return None
    name = mlflow_config.run_name or sweep.sweep_dir.name or f"aiperf-{sweep.kind}"
    try:
        call_within(
            lambda: session.create_run(
                tags=parent_tags(sweep, mlflow_config.tags), params=parent_params(sweep), run_name=name
            ),
            mlflow_config.upload_timeout_s,
        )
    except OutOfTime:
        _warn(sweep, f"no answer within {mlflow_config.upload_timeout_s:g}s")
        return None
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; the sweep goes on
        _warn(sweep, describe_error(exc))
        return None
    sweep.state[STATE_KEY] = session
    # Every point a child of this run, named by its directory (concurrency_4), not by
    # --mlflow-run-name, which named the parent.
    return {flags.PARENT_RUN_ID: session.run_id, flags.RUN_NAME: None}


def _warn(sweep: SweepContext, why: str) -> None:
    log.warning(
        f"mlflow: the {sweep.kind}'s parent run could not be created ({why}); "
        "each point is logged as a run of its own"
    )


def point_series(point: dict[str, Any]) -> list[Point]:
    """One point's values on the parent run's series, at step ``point["index"]``."""
    metrics = point.get("metrics") or {}
    if not metrics:
        return []
    step = int(point["index"])
    when = time.time_ns() // 1_000_000
    out = [
        Point(f"{SWEEP_PREFIX}{name}", float(value), when, step)
        for name, value in (point.get("values") or {}).items()
    ]
    fraction = point.get("goodput_fraction")
    if isinstance(fraction, (int, float)):
        out.append(Point(f"{SWEEP_PREFIX}goodput_fraction", float(fraction), when, step))
    for tag in KEY_METRICS:
        for stat, value in (metrics.get(tag) or {}).items():
            if isinstance(value, (int, float)):
                out.append(Point(f"{tag}.{stat}", float(value), when, step))
    return out


def log_point(sweep: SweepContext, point: dict[str, Any]) -> None:
    session: MlflowSession | None = sweep.state.get(STATE_KEY)
    if session is None or session.run_id is None:
        return
    series = point_series(point)
    if not series:
        return
    try:
        call_within(lambda: session.log_points(series), session.config.upload_timeout_s)
        session.live_counts.logged += len(series)
    except Exception as exc:  # noqa: BLE001 - OutOfTime too: a lost point, said once per point
        why = "no answer" if isinstance(exc, OutOfTime) else describe_error(exc)
        error = f"could not log point {point['index']} ({point['run_dir']}): {why}"
        session.errors.append(error)
        session.live_counts.failed += len(series)
        log.warning(f"mlflow: {error}")


def aggregate_points(paths: Sequence[Path]) -> list[Point]:
    """The means of repeats, with their intervals, from the aggregate file among ``paths``."""
    data: Any = None
    for path in paths:
        if path.name.endswith("_aggregate.json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return []
    when = time.time_ns() // 1_000_000
    out = []
    for tag in KEY_METRICS:
        entry = data["metrics"].get(tag) or {}
        for stat, numbers in entry.items():
            if not isinstance(numbers, dict):
                continue
            for field in ("mean", "ci_low", "ci_high", "cv"):
                value = numbers.get(field)
                if isinstance(value, (int, float)):
                    out.append(Point(f"{AGGREGATE_PREFIX}{tag}.{stat}.{field}", float(value), when, 0))
    return out


def finish_parent(sweep: SweepContext, paths: Sequence[Path], status: RunStatus) -> None:
    """Upload the summary, log the aggregate of repeats, end the parent run with ``status``."""
    session: MlflowSession | None = sweep.state.get(STATE_KEY)
    if session is None or session.run_id is None:
        return
    files = [p for p in paths if p.is_file()]
    failures: list[str] = []
    steps = [
        ("log the aggregate", lambda: session.log_points(aggregate_points(files))),
        ("upload the summary", lambda: session.upload(files)),
    ]
    for step, call in steps:
        try:
            call_within(call, session.time_left())
        except OutOfTime:
            failures.append(f"could not {step}: no answer within {session.config.upload_timeout_s:g}s")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"could not {step}: {describe_error(exc)}")
    try:
        call_within(lambda: session.terminate(status), max(session.time_left(), 1.0))
    except Exception as exc:  # noqa: BLE001 - OutOfTime too
        why = "no answer" if isinstance(exc, OutOfTime) else describe_error(exc)
        failures.append(f"could not end the run: {why}")
    for failure in failures:
        log.warning(f"mlflow: parent run {session.run_id}: {failure}")
    session.errors.extend(failures)
    try:
        session.write_export_file(kind=sweep.kind, sweep_status=str(status), uploaded=not failures)
    except ArtifactWriteError as exc:
        log.warning(f"mlflow: {exc}")
        return
    log.info("mlflow_parent_run_ended", run_id=session.run_id, status=str(status))
