"""Sweeps, repeats and the load search: several runs of one ``aiperf profile`` command, each a
normal run directory below one directory that summarizes them (docs/sweeps.md).

::

    SWEEP_DIR/                      a sweep (comma lists) or a search (--search)
        concurrency_1/ ...          one run directory per point, named from its values
        sweep_summary.json          {"kind": "sweep" | "search", "points": [...], ...}
        sweep_summary.csv           one row per point: every metric's avg, p50, p90, p99
    REPEAT_DIR/                     --num-profile-runs N
        trial_1/ ... trial_N/
        aggregate/profile_export_aiperf_aggregate.json, .csv
        repeat_summary.json         {"kind": "repeat", "points": [...], "aggregate": {...}}
        repeat_summary.csv

The summary is rewritten after every point, so an interrupted or killed sweep leaves every
finished point recorded. A point that fails is marked ``failed`` and the next one runs; the
first Ctrl-C (or SIGTERM) ends the point in progress as a single run would, and the sweep with
it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
import structlog

from aiperf import __version__
from aiperf._config import SWEEPABLE, ProfileConfig, redacted_config, sweep_points
from aiperf._exporters import ArtifactWriteError, iso, write_json, write_text_atomic
from aiperf._types import AiperfError, RunResult, RunStatus

if TYPE_CHECKING:
    from aiperf._plugins import Plugins

log = structlog.get_logger()

SWEEP_SUMMARY = "sweep_summary.json"
SWEEP_CSV = "sweep_summary.csv"
REPEAT_SUMMARY = "repeat_summary.json"
REPEAT_CSV = "repeat_summary.csv"
AGGREGATE_DIR = "aggregate"
#: the statistics of each metric a summary row keeps (a run metric has ``avg`` only).
STATS = ("avg", "p50", "p90", "p99")
#: ``--search-max`` when not given, in requests in flight or requests per second.
DEFAULT_SEARCH_MAX = 4096
#: ``--search-resolution`` when not given.
DEFAULT_RESOLUTION = 1.0
SUMMARY_SCHEMA = 1

_FIELDS = {name: field for name, field, _ in SWEEPABLE}
_TYPES = {name: kind for name, _, kind in SWEEPABLE}
#: the fields only the sweep itself reads; each point's configuration has their defaults.
_MULTI_FIELDS = (
    "sweep_values", "sweep_type", "sweep_cooldown_seconds", "sweep_same_seed",
    "num_profile_runs", "profile_run_cooldown_seconds", "profile_run_disable_warmup_after_first",
    "confidence_level", "search", "slo_attainment", "search_resolution", "search_max",
)  # fmt: skip
#: what the console table shows of each point: (heading, metric, statistic).
TABLE_METRICS = (
    ("TTFT p50 ms", "time_to_first_token", "p50"),
    ("TTFT p99 ms", "time_to_first_token", "p99"),
    ("ITL p50 ms", "inter_token_latency", "p50"),
    ("Lat p50 ms", "request_latency", "p50"),
    ("Lat p99 ms", "request_latency", "p99"),
    ("Out tok/s", "output_token_throughput", "avg"),
    ("Req/s", "request_throughput", "avg"),
)


def is_multi(config: ProfileConfig) -> bool:
    """Several runs: comma lists, ``--num-profile-runs`` above 1, or ``--search``."""
    return bool(config.sweep_values) or config.num_profile_runs > 1 or config.search is not None


def kind_of(config: ProfileConfig) -> str:
    if config.search is not None:
        return "search"
    return "repeat" if config.num_profile_runs > 1 else "sweep"


@attrs.define(kw_only=True)
class SweepContext:
    """What plugins may know about a sweep, repeats or a search in progress (the
    ``aiperf_sweep_*`` hooks)."""

    #: ``"sweep"``, ``"repeat"`` or ``"search"``.
    kind: str
    #: the command's configuration, seed fixed; each point runs a copy with its own values.
    config: ProfileConfig
    #: the directory holding the points' run directories and the summary.
    sweep_dir: Path
    sweep_id: str
    #: what varies from point to point: ``("concurrency",)``, ``("concurrency", "isl")``,
    #: ``("trial",)`` for repeats.
    parameters: tuple[str, ...]
    version: str = __version__
    #: the planned values of each parameter (a sweep's lists; empty for a search).
    values: dict[str, list[float]] = attrs.field(factory=dict)
    #: one row per finished point, as in the summary file.
    points: list[dict[str, Any]] = attrs.field(factory=list)
    #: plugin scratch space, keyed by plugin name.
    state: dict[str, Any] = attrs.field(factory=dict)

    @property
    def summary_file(self) -> Path:
        return self.sweep_dir / (REPEAT_SUMMARY if self.kind == "repeat" else SWEEP_SUMMARY)

    def redacted_config(self) -> dict[str, Any]:
        """The command's configuration as plain data with every secret replaced by ``***``."""
        return redacted_config(self.config)


# -- naming ------------------------------------------------------------------------------------


def show_value(value: float) -> str:
    """``4`` and ``2.5``, never ``4.0``: how a value appears in names and on the console."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def point_name(values: Mapping[str, float]) -> str:
    """``concurrency_4``, ``concurrency_4-isl_128``, ``request_rate_2.5``, ``trial_3``."""
    return "-".join(f"{name}_{show_value(value)}" for name, value in values.items())


def default_dir(config: ProfileConfig, kind: str) -> Path:
    from aiperf._profile import default_run_dir

    base = default_run_dir(config)
    prefix = base.name.rsplit("-", 1)[0]  # <model>-<type>
    if kind == "sweep":
        return base.with_name(f"{prefix}-sweep-{'-'.join(n for n, _ in config.sweep_values)}")
    if kind == "search":
        return base.with_name(f"{prefix}-search-{config.search}")
    return base.with_name(f"{base.name}-repeat{config.num_profile_runs}")


def point_config(
    base: ProfileConfig,
    values: Mapping[str, float],
    run_dir: Path,
    plugin_options: Mapping[str, Any],
    **changes: Any,
) -> ProfileConfig:
    """The configuration of one point: the base one with the point's values, its own run
    directory, and none of the sweep's own flags."""
    defaults: dict[str, Any] = {f.name: f.default for f in attrs.fields(ProfileConfig) if f.name in _MULTI_FIELDS}
    for name, value in values.items():
        if name in _FIELDS:
            defaults[_FIELDS[name]] = _TYPES[name](value)
    return attrs.evolve(
        base,
        **defaults,
        artifact_dir=run_dir,
        plugin_options={**base.plugin_options, **plugin_options},
        **changes,
    )


# -- rows --------------------------------------------------------------------------------------


def metric_rows(result: RunResult) -> dict[str, dict[str, float]]:
    """Every metric's avg, p50, p90 and p99, as the run's own summary has them."""
    out: dict[str, dict[str, float]] = {}
    for group in (result.metrics, result.run_metrics):
        for tag, stats in group.items():
            data = stats.as_dict()
            row = {stat: data[stat] for stat in STATS if isinstance(data.get(stat), (int, float))}
            if row:
                out[tag] = row
    return out


def goodput_fraction(result: RunResult) -> float | None:
    """The share of the measured requests (failed ones included) that met every SLO."""
    ok = result.value("request_count") or 0.0
    failed = result.value("error_request_count") or 0.0
    total = ok + failed
    if total <= 0:
        return None
    goodput = result.value("goodput")
    duration = result.value("benchmark_duration")
    if goodput is None or duration is None:
        return 0.0
    return min(1.0, round(goodput * duration) / total)


def _why_failed(code: int, result: RunResult, state: Mapping[str, Any]) -> str:
    if result.partial:
        return f"partial results: {result.partial_reason}"
    if result.status is RunStatus.FAILED:
        return "every request failed"
    if not result.value("request_count"):
        return "no request completed"
    if state.get("artifact_errors"):
        return "; ".join(state["artifact_errors"])
    return f"exit code {code}"


# -- the console -------------------------------------------------------------------------------


class Table:
    """The points as they finish, one line each, under a header printed at the start."""

    def __init__(self, parameters: Sequence[str], search: bool, stream: IO[str]) -> None:
        self.stream = stream
        self.search = search
        self.columns: list[tuple[str, int]] = [("#", 3)]
        self.columns += [(name, max(len(name), 8)) for name in parameters]
        self.columns.append(("status", 6))
        if search:
            self.columns += [("good %", 7), ("pass", 4)]
        self.columns += [(heading, max(len(heading), 9)) for heading, _, _ in TABLE_METRICS]
        self.border = "+" + "+".join("-" * (w + 2) for _, w in self.columns) + "+"

    def _line(self, cells: Sequence[str]) -> str:
        parts = [cell.rjust(width) for cell, (_, width) in zip(cells, self.columns)]
        return "| " + " | ".join(parts) + " |"

    def header(self, title: str) -> None:
        self._write([title, self.border, self._line([h for h, _ in self.columns]), self.border])

    def row(self, row: Mapping[str, Any]) -> None:
        cells = [str(row["index"])]
        cells += [show_value(v) for v in row["values"].values()]
        cells.append(row["status"])
        if self.search:
            fraction = row.get("goodput_fraction")
            cells.append("" if fraction is None else f"{100 * fraction:.1f}")
            cells.append("yes" if row.get("passed") else "no")
        metrics = row.get("metrics", {})
        for _, tag, stat in TABLE_METRICS:
            value = metrics.get(tag, {}).get(stat)
            cells.append("" if value is None else _fmt(value))
        self._write([self._line(cells)])

    def close(self, lines: Sequence[str]) -> None:
        self._write([self.border, *lines])

    def _write(self, lines: Sequence[str]) -> None:
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"


# -- stopping ----------------------------------------------------------------------------------


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP between the runs of a sweep: stop as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the sweep the way Ctrl-C does (during a run the engine takes
    them over, and gives them back after)."""

    def stop(signum: int, frame: object) -> None:
        raise Stopped(signum)

    saved = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        try:
            saved[signum] = signal.signal(signum, stop)
        except (ValueError, OSError):  # not the main thread, or no such signal here
            continue
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


# -- the runner --------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class Runner:
    ctx: SweepContext
    plugins: Plugins
    argv: list[str]
    table: Table
    #: plugin options every point gets (the MLflow parent run's id).
    options: dict[str, Any] = attrs.field(factory=dict)
    #: the signal that stopped the sweep, if one did.
    stopped: int | None = None
    started_ns: int = attrs.field(factory=time.time_ns)
    ended_ns: int | None = None
    #: extra top-level blocks of the summary (``search``, ``aggregate``).
    extra: dict[str, Any] = attrs.field(factory=dict)
    write_errors: list[str] = attrs.field(factory=list)
    #: each metric's unit and header, as the runs reported them.
    units: dict[str, tuple[str, str]] = attrs.field(factory=dict)

    @property
    def kind(self) -> str:
        return self.ctx.kind

    # -- one point ---------------------------------------------------------------------------

    def run_point(
        self, index: int, values: dict[str, float], config: ProfileConfig
    ) -> tuple[dict[str, Any], RunResult | None]:
        from aiperf._profile import run_once
        from aiperf._redact import scrub

        assert config.artifact_dir is not None
        name = config.artifact_dir.name
        row: dict[str, Any] = {
            "index": index,
            "values": {k: _json_number(k, v) for k, v in values.items()},
            "run_dir": name,
            "status": "failed",
            "metrics": {},
        }
        try:
            outcome = run_once(config, self.plugins, self.argv, console=False)
        except Stopped as exc:
            self.stopped = exc.signum
            row["error"] = "interrupted before the run finished"
            return row, None
        except KeyboardInterrupt:
            self.stopped = signal.SIGINT
            row["error"] = "interrupted before the run finished"
            return row, None
        except AiperfError as exc:
            row["error"] = str(exc)
            self._say(f"{name} failed: {exc}")
            return row, None
        except Exception as exc:  # noqa: BLE001 - one point's bug must not lose the others
            row["error"] = f"internal error: {type(exc).__name__}: {scrub(str(exc))}"
            self._say(f"{name} failed: {row['error']}")
            return row, None
        result = outcome.result
        row["metrics"] = metric_rows(result)
        for group in (result.metrics, result.run_metrics):
            self.units.update({tag: (s.unit, s.header) for tag, s in group.items()})
        if result.was_cancelled:
            self.stopped = int(outcome.run.state.get("signal", signal.SIGINT))
            row["error"] = "interrupted; the results hold what completed"
        elif outcome.code == 0:
            row["status"] = "ok"
        else:
            row["error"] = _why_failed(outcome.code, result, outcome.run.state)
            self._say(f"{name} failed: {row['error']}")
        return row, result

    def _say(self, text: str) -> None:
        sys.stderr.write(f"aiperf: {text}; the {self.kind} goes on\n")
        sys.stderr.flush()

    def finish(self, row: dict[str, Any]) -> None:
        self.ctx.points.append(row)
        self.table.row(row)
        self.write_summary()
        try:
            self.plugins.sweep_point_finished(self.ctx, row)
        except AiperfError as exc:
            log.warning("sweep_hook_failed", error=str(exc))

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """A signal between two points (or before the first) ends the loop, not the sweep:
        what finished is still summarized."""
        try:
            yield
        except Stopped as exc:
            self.stopped = exc.signum
        except KeyboardInterrupt:
            self.stopped = signal.SIGINT

    def pause(self, seconds: float) -> bool:
        """Sleep between points; False when a signal stopped the sweep meanwhile."""
        if seconds <= 0:
            return True
        try:
            time.sleep(seconds)
        except Stopped as exc:
            self.stopped = exc.signum
        except KeyboardInterrupt:
            self.stopped = signal.SIGINT
        return self.stopped is None

    # -- the summary -------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        from aiperf._redact import redact_argv

        ctx, config = self.ctx, self.ctx.config
        if self.ended_ns is None:
            status = "running"
        else:
            status = "interrupted" if self.stopped is not None else "complete"
        data: dict[str, Any] = {
            "kind": ctx.kind,
            "schema_version": SUMMARY_SCHEMA,
            "aiperf_version": ctx.version,
            "sweep_id": ctx.sweep_id,
            "sweep_type": config.sweep_type if ctx.kind == "sweep" else ctx.kind,
            "parameters": list(ctx.parameters),
            "values": {k: [_json_number(k, v) for v in vs] for k, vs in ctx.values.items()},
            "status": status,
            "start_time": iso(self.started_ns),
            "end_time": iso(self.ended_ns),
            "random_seed": config.random_seed,
            "same_seed": config.sweep_same_seed,
            "command_line": redact_argv(list(self.argv)),
            **self.extra,
            "points": ctx.points,
            "input_config": ctx.redacted_config(),
        }
        return data

    def write_summary(self) -> list[Path]:
        ctx = self.ctx
        csv_path = ctx.sweep_dir / (REPEAT_CSV if ctx.kind == "repeat" else SWEEP_CSV)
        written = []
        for path, write in (
            (ctx.summary_file, lambda p: write_json(p, self.summary())),
            (csv_path, lambda p: write_text_atomic(p, summary_csv(ctx.parameters, ctx.points, ctx.kind))),
        ):
            try:
                written.append(write(path))
            except ArtifactWriteError as exc:
                if str(exc) not in self.write_errors:
                    self.write_errors.append(str(exc))
                    sys.stderr.write(f"aiperf: {exc}\n")
        return written

    # -- the whole -----------------------------------------------------------------------------

    def start(self, title: str) -> None:
        try:
            options = self.plugins.sweep_started(self.ctx)
        except AiperfError as exc:
            log.warning("sweep_hook_failed", error=str(exc))
            options = {}
        self.options.update(options)
        self.table.header(title)
        self.write_summary()

    def end(self, lines: Sequence[str], paths: Sequence[Path] = ()) -> int:
        self.ended_ns = time.time_ns()
        written = self.write_summary()
        failed = [p for p in self.ctx.points if p["status"] != "ok"]
        if self.stopped is not None:
            status = RunStatus.KILLED
        elif failed or not self.ctx.points:
            status = RunStatus.FAILED
        else:
            status = RunStatus.FINISHED
        ok = len(self.ctx.points) - len(failed)
        noun = "trials" if self.kind == "repeat" else "points"
        done = f"{len(self.ctx.points)} {noun}, {ok} ok" + (f", {len(failed)} failed" if failed else "")
        if self.stopped is not None:
            done += f"; stopped by {_signal_name(self.stopped)}"
        self.table.close([*lines, f"{self.kind.capitalize()}: {done}. Results: {self.ctx.sweep_dir}"])
        try:
            self.plugins.sweep_finished(self.ctx, [*written, *paths], status)
        except AiperfError as exc:
            log.warning("sweep_hook_failed", error=str(exc))
        if self.stopped is not None:
            return 128 + int(self.stopped)
        return 1 if failed or self.write_errors or not self.ctx.points else 0


def _signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _json_number(name: str, value: float) -> float | int:
    kind = _TYPES.get(name, int if float(value).is_integer() else float)
    return kind(value)


def summary_csv(parameters: Sequence[str], points: Sequence[Mapping[str, Any]], kind: str) -> str:
    """One row per point: its values, status, directory, then ``metric.stat`` columns."""
    columns: list[tuple[str, str]] = []
    for point in points:
        for tag, stats in point.get("metrics", {}).items():
            for stat in STATS:
                if stat in stats and (tag, stat) not in columns:
                    columns.append((tag, stat))
    fh = io.StringIO()
    out = csv.writer(fh)
    extra = ["goodput_fraction", "passed"] if kind == "search" else []
    out.writerow(["index", *parameters, "status", "run_dir", *extra, *(f"{t}.{s}" for t, s in columns)])
    for point in points:
        values = point.get("values", {})
        metrics = point.get("metrics", {})
        row = [point["index"], *(values.get(name, "") for name in parameters), point["status"], point["run_dir"]]
        if kind == "search":
            fraction = point.get("goodput_fraction")
            row += ["" if fraction is None else repr(fraction), "yes" if point.get("passed") else "no"]
        row += [repr(metrics[t][s]) if s in metrics.get(t, {}) else "" for t, s in columns]
        out.writerow(row)
    return fh.getvalue()


# -- set aside an earlier sweep ------------------------------------------------------------------


def set_aside_earlier_sweep(sweep_dir: Path) -> Path | None:
    """An earlier sweep, repeat or search in ``sweep_dir`` moves to ``previous/<its id>/``
    whole (its points, summary, aggregate and plots), as an earlier run's files do."""
    from aiperf._rundir import PREVIOUS_DIR, _free

    summary = None
    for name in (SWEEP_SUMMARY, REPEAT_SUMMARY):
        try:
            summary = json.loads((sweep_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict):
            break
        summary = None
    if summary is None:
        return None
    names = {SWEEP_SUMMARY, SWEEP_CSV, REPEAT_SUMMARY, REPEAT_CSV, AGGREGATE_DIR, "plots", "mlflow_export.json"}
    for point in summary.get("points") or ():
        run_dir = point.get("run_dir") if isinstance(point, dict) else None
        if isinstance(run_dir, str) and run_dir and "/" not in run_dir and run_dir not in ("..", "."):
            names.add(run_dir)
    old = [sweep_dir / name for name in sorted(names) if (sweep_dir / name).exists()]
    earlier = str(summary.get("sweep_id") or "")
    if not earlier.isalnum():
        earlier = time.strftime("%Y%m%dT%H%M%S", time.gmtime(max(p.stat().st_mtime for p in old)))
    target = _free(sweep_dir / PREVIOUS_DIR / earlier)
    target.mkdir(parents=True)
    for path in old:
        os.replace(path, target / path.name)
    log.info(f"The previous {summary.get('kind', 'sweep')} in {sweep_dir} was moved to {target}.")
    return target


# -- entry -------------------------------------------------------------------------------------


def run_multi(config: ProfileConfig, plugins: Plugins, argv: Sequence[str]) -> int:
    """``aiperf profile`` with comma lists, ``--num-profile-runs`` or ``--search``."""
    from aiperf._profile import prepare_run_dir, resolve
    from aiperf._rundir import set_aside_earlier_run

    config = resolve(config, plugins)  # the seed is fixed here, once for every point
    kind = kind_of(config)
    sweep_dir = config.artifact_dir or default_dir(config, kind)
    if kind == "sweep":
        parameters = tuple(name for name, _ in config.sweep_values)
    elif kind == "repeat":
        parameters = ("trial",)
    else:
        parameters = ("concurrency" if config.search == "max-concurrency" else "request_rate",)
    ctx = SweepContext(
        kind=kind,
        config=config,
        sweep_dir=sweep_dir,
        sweep_id=uuid.uuid4().hex,
        parameters=parameters,
        values={name: [_json_number(name, v) for v in values] for name, values in config.sweep_values},
    )
    plan = _plan(ctx, plugins) if kind == "sweep" else []
    prepare_run_dir(sweep_dir)
    set_aside_earlier_sweep(sweep_dir)
    set_aside_earlier_run(sweep_dir)
    runner = Runner(ctx=ctx, plugins=plugins, argv=list(argv), table=Table(parameters, kind == "search", sys.stdout))
    with _stop_signals():
        if kind == "sweep":
            return _sweep(runner, plan)
        if kind == "repeat":
            return _repeat(runner)
        return _search(runner)


def _plan(ctx: SweepContext, plugins: Plugins) -> list[tuple[dict[str, float], ProfileConfig]]:
    """Every point's configuration, checked before the first request: a bad value in the
    middle of a list is one line now, not a failure an hour in."""
    from aiperf._profile import resolve

    plan = []
    config = ctx.config
    for index, values in enumerate(sweep_points(config)):
        changes: dict[str, Any] = {}
        if not config.sweep_same_seed and config.random_seed is not None:
            changes["random_seed"] = config.random_seed + index
        point = point_config(config, values, ctx.sweep_dir / point_name(values), {}, **changes)
        resolve(point, plugins)
        plan.append((values, point))
    return plan


def _sweep(runner: Runner, plan: list[tuple[dict[str, float], ProfileConfig]]) -> int:
    ctx = runner.ctx
    config = ctx.config
    shown = ", ".join(f"{name} {','.join(show_value(v) for v in vs)}" for name, vs in ctx.values.items())
    log.info("sweep_starting", points=len(plan), sweep_dir=str(ctx.sweep_dir))
    runner.start(f"aiperf sweep ({config.sweep_type}, {len(plan)} points): {config.model}  {shown}")
    with runner.interruptible():
        for index, (values, point) in enumerate(plan):
            if index and not runner.pause(config.sweep_cooldown_seconds):
                break
            if runner.options:
                point = attrs.evolve(point, plugin_options={**point.plugin_options, **runner.options})
            row, _ = runner.run_point(index, values, point)
            runner.finish(row)
            if runner.stopped is not None:
                break
    return runner.end([])


def _repeat(runner: Runner) -> int:
    from aiperf import _aggregate

    ctx = runner.ctx
    config = ctx.config
    confidence = config.confidence_level or _aggregate.DEFAULT_CONFIDENCE
    total = config.num_profile_runs
    runner.extra = {"num_profile_runs": total, "confidence_level": confidence}
    log.info("repeat_starting", runs=total, sweep_dir=str(ctx.sweep_dir))
    runner.start(f"aiperf repeat ({total} runs): {config.model}  {config.load_setting}")
    with runner.interruptible():
        for n in range(1, total + 1):
            if n > 1 and not runner.pause(config.profile_run_cooldown_seconds):
                break
            changes: dict[str, Any] = {}
            if n > 1 and config.profile_run_disable_warmup_after_first:
                changes["warmup_request_count"] = 0
            values = {"trial": float(n)}
            point = point_config(config, values, ctx.sweep_dir / f"trial_{n}", runner.options, **changes)
            row, _ = runner.run_point(n - 1, values, point)
            runner.finish(row)
            if runner.stopped is not None:
                break
    trials = [p["metrics"] for p in ctx.points if p["status"] == "ok"]
    paths: list[Path] = []
    lines: list[str] = []
    block: dict[str, Any] = {
        "confidence_level": confidence,
        "cv_limit": _aggregate.CV_LIMIT,
        "trials_ok": len(trials),
    }
    if trials:
        metrics = _aggregate.aggregate(trials, confidence, runner.units)
        unstable = _aggregate.unstable_metrics(metrics)
        folder = ctx.sweep_dir / AGGREGATE_DIR
        data = {
            "kind": "repeat_aggregate",
            "schema_version": SUMMARY_SCHEMA,
            "sweep_id": ctx.sweep_id,
            "num_profile_runs": total,
            "trials_ok": len(trials),
            "trials": [p["run_dir"] for p in ctx.points if p["status"] == "ok"],
            "confidence_level": confidence,
            "cv_limit": _aggregate.CV_LIMIT,
            "unstable": unstable,
            "metrics": metrics,
        }
        try:
            folder.mkdir(exist_ok=True)
            paths.append(write_json(folder / _aggregate.AGGREGATE_JSON, data))
            paths.append(write_text_atomic(folder / _aggregate.AGGREGATE_CSV, _aggregate.to_csv(metrics)))
        except ArtifactWriteError as exc:
            runner.write_errors.append(str(exc))
            sys.stderr.write(f"aiperf: {exc}\n")
        except OSError as exc:
            error = ArtifactWriteError(folder, exc)
            runner.write_errors.append(str(error))
            sys.stderr.write(f"aiperf: {error}\n")
        block.update(
            json=f"{AGGREGATE_DIR}/{_aggregate.AGGREGATE_JSON}",
            csv=f"{AGGREGATE_DIR}/{_aggregate.AGGREGATE_CSV}",
            unstable=unstable,
        )
        lines = _aggregate_lines(metrics, confidence, len(trials))
    runner.extra["aggregate"] = block
    return runner.end(lines, paths)


def _aggregate_lines(metrics: Mapping[str, Mapping[str, Any]], confidence: float, n: int) -> list[str]:
    """The key metrics' means with their intervals, under the table of trials."""
    lines = [f"Mean over {n} runs, {100 * confidence:g}% interval (Student's t), CV = std/mean:"]
    for heading, tag, stat in TABLE_METRICS:
        entry = metrics.get(tag, {}).get(stat)
        if not isinstance(entry, Mapping):
            continue
        text = f"  {heading:<12} {_fmt(entry['mean']):>10}"
        if entry.get("ci_low") is not None:
            text += f"  [{_fmt(entry['ci_low'])}, {_fmt(entry['ci_high'])}]"
        if entry.get("cv") is not None:
            text += f"  CV {100 * entry['cv']:.1f}%"
        if entry.get("unstable"):
            text += "  UNSTABLE: the runs disagree; more runs or a longer run"
        lines.append(text)
    return lines


# -- the search ----------------------------------------------------------------------------------


@attrs.define
class Search:
    """Double the load until a probe fails (or the maximum passes), then bisect between the
    largest load that passed and the smallest that failed until they are ``resolution``
    apart."""

    start: float
    maximum: float
    resolution: float
    whole: bool
    #: the largest load that passed / the smallest that failed, so far.
    passed: float | None = None
    failed: float | None = None

    def next_load(self) -> float | None:
        if self.failed is None:
            if self.passed is None:
                return self.start
            if self.passed >= self.maximum:
                return None
            return min(self.passed * 2, self.maximum)
        if self.passed is None or self.failed - self.passed <= self.resolution:
            return None
        middle = (self.passed + self.failed) / 2
        if self.whole:
            middle = math.floor(middle)
        return middle if self.passed < middle < self.failed else None

    def record(self, load: float, passed: bool) -> None:
        if passed:
            self.passed = load if self.passed is None else max(self.passed, load)
        else:
            self.failed = load if self.failed is None else min(self.failed, load)


def _search(runner: Runner) -> int:
    ctx = runner.ctx
    config = ctx.config
    name = ctx.parameters[0]
    whole = name == "concurrency"
    start = float(config.concurrency or 1) if whole else float(config.request_rate or 1.0)
    search = Search(
        start=start,
        maximum=float(config.search_max or DEFAULT_SEARCH_MAX),
        resolution=float(config.search_resolution or DEFAULT_RESOLUTION),
        whole=whole,
    )
    target = config.slo_attainment
    slos = " ".join(f"{tag}:{show_value(bound)}" for tag, bound in config.goodput.items())
    block: dict[str, Any] = {
        "target": config.search,
        "parameter": name,
        "slo_attainment": target,
        "goodput": dict(config.goodput),
        "resolution": search.resolution,
        "max": search.maximum,
        "result": None,
        "result_run_dir": None,
    }
    runner.extra = {"search": block}
    runner.start(
        f"aiperf search ({config.search}): {config.model}  {100 * target:g}% of requests "
        f"within '{slos}'"
    )
    log.info("search_starting", parameter=name, start=start, sweep_dir=str(ctx.sweep_dir))
    warned = False
    index = 0
    with runner.interruptible():
        while (load := search.next_load()) is not None:
            if index and not runner.pause(config.sweep_cooldown_seconds):
                break
            values = {name: load}
            if whole and not warned and config.effective_request_count is not None and load > config.effective_request_count:
                warned = True
                log.warning(
                    f"concurrency {show_value(load)} with --request-count {config.effective_request_count}: "
                    "fewer requests than the concurrency never fill it; give --benchmark-duration "
                    "or a larger --request-count"
                )
            point = point_config(config, values, ctx.sweep_dir / point_name(values), runner.options)
            row, result = runner.run_point(index, values, point)
            fraction = goodput_fraction(result) if result is not None else None
            passed = row["status"] == "ok" and fraction is not None and fraction >= target
            row["goodput_fraction"] = fraction
            row["passed"] = passed
            if runner.stopped is None:
                search.record(load, passed)
            if passed and search.passed == load:
                block["result"] = _json_number(name, load)
                block["result_run_dir"] = row["run_dir"]
            runner.finish(row)
            index += 1
            if runner.stopped is not None:
                break
    lines = []
    unit = "requests in flight" if whole else "requests/s"
    if block["result"] is not None:
        limit = " (the largest tried)" if search.failed is None else ""
        lines.append(
            f"Largest {name.replace('_', ' ')} with {100 * target:g}% of requests within "
            f"'{slos}': {show_value(block['result'])} {unit}{limit}"
        )
    elif runner.stopped is None and ctx.points:
        lines.append(
            f"No load met the target: at {name.replace('_', ' ')} {show_value(start)}, "
            f"{_percent(ctx.points[0].get('goodput_fraction'))} of requests were within '{slos}'"
        )
    code = runner.end(lines)
    if runner.stopped is not None:
        return code
    # A probe that failed outright counts as a load that did not pass; the answer stands.
    return 1 if block["result"] is None or runner.write_errors else 0


def _percent(fraction: float | None) -> str:
    return "none" if fraction is None else f"{100 * fraction:.1f}%"
