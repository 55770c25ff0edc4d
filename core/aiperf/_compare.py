"""``aiperf compare``: how much two or more runs differ, metric by metric, with intervals from
the per-request records, and a gate for CI (``--fail-if``). See docs/compare.md.

Only argparse work happens at import (``aiperf --help`` builds the parser); numpy loads when
the command runs. The statistics are in :mod:`aiperf._bootstrap`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from aiperf._types import AiperfError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from aiperf._bootstrap import Family
    from aiperf._plugins import Plugins

HELP = "compare runs: differences with bootstrap intervals, and a CI gate (--fail-if)"
DESCRIPTION = (
    "Compare each RUN with the first (the baseline): for every per-request metric and "
    "statistic, the difference with a bootstrap interval computed from the runs' "
    "profile_export.jsonl, and a verdict (faster, slower, or no difference the data can show). "
    "A RUN is a run directory, a sweep directory (compared point by point) or, with "
    "aiperf-mlflow, an MLflow run id (mlflow:RUN_ID). Exit status: 0, 1 when a --fail-if "
    "condition is violated, 2 for bad input."
)

JSONL_FILE = "profile_export.jsonl"
SUMMARY_FILE = "profile_export_aiperf.json"
SWEEP_FILE = "sweep_summary.json"
SCHEMA_VERSION = 1
DEFAULT_STATS = ("avg", "p50", "p90", "p99")
#: per-request values that are lists (one per chunk), not one number per request.
LIST_METRICS = ("inter_chunk_latency",)
#: measures of the benchmarking client itself, not of the server: compared only when named in
#: ``--metrics`` (a busy client machine moves them between runs of the same server).
CLIENT_METRICS = ("request_send_time",)
#: an MLflow run reference: ``mlflow:<id>``, or a bare 32-hex id (what MLflow makes).
MLFLOW_REF = re.compile(r"^(mlflow:.+|[0-9a-f]{32})$")

NO_DIFFERENCE = "no difference"
TOO_FEW = "too few requests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directories, sweep directories or MLflow run ids; the first is the baseline",
    )
    parser.add_argument(
        "--fail-if",
        dest="fail_if",
        action="append",
        default=[],
        metavar="EXPR",
        help="exit 1 when a run differs from the baseline beyond a bound, e.g. "
        "'time_to_first_token.p99>+5%%' (slower by more than 5 %%) or "
        "'request_latency.avg>+20ms'; '<' with a negative bound for a decrease, "
        "'output_token_throughput_per_user.p50<-5%%'. Violated when the difference is beyond "
        "the bound and its interval excludes 0 (repeatable)",
    )
    parser.add_argument(
        "--metrics",
        metavar="LIST",
        help="comma-separated metrics to compare (default: every per-request metric both runs "
        "have, but request_send_time)",
    )
    parser.add_argument(
        "--stats",
        metavar="LIST",
        default=",".join(DEFAULT_STATS),
        help="comma-separated statistics: avg and percentiles pNN (default: %(default)s)",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=None,
        metavar="LEVEL",
        help="confidence of the intervals, which hold for a whole table at once (default 0.99)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap resamples (default 2000; at least 200); time grows with N x requests",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the resampling: the same runs and seed give the same intervals (default 0)",
    )
    parser.add_argument(
        "--json",
        dest="json_file",
        type=Path,
        metavar="FILE",
        help="also write the comparison as JSON to FILE",
    )


# -- the result ------------------------------------------------------------------------------


@attrs.frozen
class RunInfo:
    """One side of a comparison."""

    #: as given on the command line (a sweep point: ``REF/<point's run_dir>``).
    ref: str
    #: the local run directory; ``None`` for a run fetched by a plugin into a temporary one.
    path: Path | None
    #: successful requests of the measured phase, the ones compared.
    requests: int
    #: resampled in runs of this many requests, consecutive by start time (see
    #: :func:`block_length`).
    block: int = 1
    benchmark_id: str | None = None


@attrs.frozen
class ComparisonRow:
    """One metric at one statistic."""

    metric: str
    header: str
    unit: str
    stat: str
    baseline: float
    run: float
    #: ``run - baseline`` with its interval, in the metric's unit.
    difference: float
    low: float
    high: float
    #: the same in percent of the baseline's value; ``None`` when that value is 0.
    difference_pct: float | None
    low_pct: float | None
    high_pct: float | None
    #: ``faster``, ``slower``, ``higher``, ``lower`` or ``no difference``.
    verdict: str


@attrs.frozen
class Comparison:
    """One run (or sweep point) against the baseline."""

    baseline: RunInfo
    run: RunInfo
    #: the sweep point's parameter values; ``None`` outside sweeps.
    point: dict[str, Any] | None
    rows: tuple[ComparisonRow, ...]
    #: the level each row's interval is taken at, so that all hold together at the report's
    #: confidence.
    row_level: float
    #: what could not be compared, one line each.
    not_compared: tuple[str, ...] = ()

    def row(self, metric: str, stat: str) -> ComparisonRow | None:
        return next((r for r in self.rows if r.metric == metric and r.stat == stat), None)


@attrs.frozen
class GateResult:
    gate: Gate
    #: ``(comparison, row)`` pairs where the condition is violated.
    violations: tuple[tuple[Comparison, ComparisonRow], ...]

    @property
    def expression(self) -> str:
        return self.gate.text

    @property
    def violated(self) -> bool:
        return bool(self.violations)


@attrs.frozen
class ComparisonReport:
    """Everything ``aiperf compare`` found: what ``--json`` writes and plugins are handed."""

    comparisons: tuple[Comparison, ...]
    confidence: float
    resamples: int
    seed: int
    gates: tuple[GateResult, ...] = ()
    #: sweep points without a counterpart, or failed.
    not_compared: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 1 if any(g.violated for g in self.gates) else 0

    def as_dict(self) -> dict[str, Any]:
        from aiperf import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "aiperf_version": __version__,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "comparisons": [_comparison_dict(c) for c in self.comparisons],
            "not_compared": list(self.not_compared),
            "fail_if": [
                {
                    "expression": g.expression,
                    "metric": g.gate.metric,
                    "stat": g.gate.stat,
                    "op": g.gate.op,
                    "bound": g.gate.bound,
                    "bound_unit": "%" if g.gate.percent else "metric",
                    "violated": g.violated,
                    "violations": [
                        {"run": c.run.ref, "point": c.point, **attrs.asdict(r)}
                        for c, r in g.violations
                    ],
                }
                for g in self.gates
            ],
            "exit_code": self.exit_code,
        }


def _comparison_dict(c: Comparison) -> dict[str, Any]:
    def side(info: RunInfo) -> dict[str, Any]:
        data = attrs.asdict(info)
        data["path"] = None if info.path is None else str(info.path)
        return data

    return {
        "baseline": side(c.baseline),
        "run": side(c.run),
        "point": c.point,
        "row_level": c.row_level,
        "rows": [attrs.asdict(r) for r in c.rows],
        "not_compared": list(c.not_compared),
    }


# -- --fail-if -------------------------------------------------------------------------------

_GATE = re.compile(
    r"^\s*(?P<metric>[A-Za-z_]\w*)\.(?P<stat>[A-Za-z]\w*(?:\.\d+)?)\s*(?P<op>[<>])\s*"
    r"(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>%|[A-Za-z/]+)?\s*$"
)


@attrs.frozen
class Gate:
    """``--fail-if METRIC.STAT>BOUND``: violated when the difference is beyond the bound and
    its interval excludes 0 on that side."""

    text: str
    metric: str
    stat: str
    op: str
    bound: float
    percent: bool

    def violated_by(self, row: ComparisonRow) -> bool:
        if self.percent:
            value, low, high = row.difference_pct, row.low_pct, row.high_pct
            if value is None or low is None or high is None:
                return False
        else:
            value, low, high = row.difference, row.low, row.high
        if self.op == ">":
            return value > self.bound and low > 0
        return value < self.bound and high < 0


def parse_gate(text: str) -> Gate:
    from aiperf._bootstrap import check_stat
    from aiperf._metrics import METRICS

    flag = f"--fail-if {text!r}"
    match = _GATE.match(text)
    if match is None:
        raise UsageError(
            f"{flag}: expected METRIC.STAT>BOUND or METRIC.STAT<BOUND, e.g. "
            "'time_to_first_token.p99>+5%' or 'request_latency.avg>+20ms'"
        )
    metric, stat, op = match["metric"], match["stat"], match["op"]
    _check_metric(metric, flag)
    problem = check_stat(stat)
    if problem:
        raise UsageError(f"{flag}: {problem}")
    bound = float(match["value"])
    if not math.isfinite(bound):
        raise UsageError(f"{flag}: the bound must be a finite number")
    unit = match["unit"]
    spec = METRICS.get(metric)
    if unit not in (None, "%") and (spec is None or unit != spec.unit):
        expected = f"'%' or {spec.unit!r}" if spec else "'%'"
        raise UsageError(f"{flag}: the bound's unit must be {expected} (got {unit!r})")
    if op == ">" and bound < 0:
        raise UsageError(f"{flag}: '>' takes an increase, a bound >= 0 (for a decrease use '<-')")
    if op == "<" and bound > 0:
        raise UsageError(f"{flag}: '<' takes a decrease, a bound <= 0 such as '<-5%'")
    return Gate(text=text.strip(), metric=metric, stat=stat, op=op, bound=bound, percent=unit == "%")


def comparable_metrics() -> list[str]:
    from aiperf._metrics import METRICS

    return [t for t, s in METRICS.items() if s.kind == "request" and t not in LIST_METRICS]


def _check_metric(metric: str, where: str) -> None:
    from aiperf._metrics import METRICS

    spec = METRICS.get(metric)
    if spec is None:
        raise UsageError(
            f"{where}: unknown metric {metric!r}; per-request metrics are "
            f"{', '.join(comparable_metrics())}"
        )
    if spec.kind != "request" or metric in LIST_METRICS:
        raise UsageError(
            f"{where}: {metric} is not compared (one value per run, or a list per request: "
            "there is no per-request sample to draw an interval from); per-request metrics are "
            f"{', '.join(comparable_metrics())}"
        )


# -- the runs --------------------------------------------------------------------------------


@attrs.frozen
class RunData:
    info: RunInfo
    #: per-request values aligned by request, NaN where a request lacks the metric.
    columns: dict[str, np.ndarray]

    def count(self, metric: str) -> int:
        import numpy as np

        column = self.columns.get(metric)
        return 0 if column is None else int(np.count_nonzero(~np.isnan(column)))


@attrs.frozen
class SweepPoint:
    values: dict[str, Any]
    run_dir: Path | None
    status: str


@attrs.frozen
class Sweep:
    ref: str
    path: Path
    points: tuple[SweepPoint, ...]
    local: bool = True


Source = tuple[str, Path, bool]  # (ref, directory, fetched by a plugin)


def resolve(ref: str, plugins: Plugins, scratch: Callable[[], Path], options: dict[str, Any]) -> Source:
    """Where the run ``ref`` is: a local directory, or one a plugin fetched it into."""
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{ref}: not a directory (give the run directory)")
        return ref, path, False
    fetched = plugins.fetch_run(ref, scratch(), options)
    if fetched is not None:
        return ref, Path(fetched), True
    if MLFLOW_REF.match(ref) and not plugins.loaded("mlflow"):
        raise UsageError(
            f"{ref}: no such directory; to compare MLflow runs install aiperf-mlflow: "
            'pip install "aiperf[mlflow]"'
        )
    raise UsageError(f"{ref}: no such directory")


def is_sweep(path: Path) -> bool:
    return (path / SWEEP_FILE).is_file() and not (path / JSONL_FILE).is_file()


def load_sweep(ref: str, path: Path, *, local: bool = True) -> Sweep:
    shown = f"{ref}/{SWEEP_FILE}"
    try:
        data = json.loads((path / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{shown}: not readable as JSON ({exc})") from None
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("kind") != "sweep" or not isinstance(points, list):
        raise UsageError(f"{shown}: not a sweep summary (expected \"kind\": \"sweep\" and \"points\")")
    out = []
    for n, point in enumerate(points):
        values = point.get("values") if isinstance(point, dict) else None
        if not isinstance(values, dict):
            raise UsageError(f"{shown}: point {n} has no \"values\" object")
        run_dir = point.get("run_dir")
        out.append(
            SweepPoint(
                values=values,
                run_dir=path / run_dir if isinstance(run_dir, str) and run_dir else None,
                status=str(point.get("status", "ok")),
            )
        )
    return Sweep(ref=ref, path=path, points=tuple(out), local=local)


def load_run(ref: str, path: Path, *, local: bool = True, in_sweep: bool = False) -> RunData:
    """The measured phase's successful requests of a run directory, metric by metric.
    ``local``: a directory of the user's (not one a plugin fetched into a temporary one)."""
    import numpy as np

    jsonl = path / JSONL_FILE
    if not jsonl.is_file():
        raise UsageError(
            f"{ref}: not an aiperf run directory (no {JSONL_FILE})"
            + ("" if in_sweep else f" nor a sweep directory (no {SWEEP_FILE})")
        )
    rows: list[dict[str, float]] = []
    times: list[tuple[int, int] | None] = []
    indices: list[int] = []
    try:
        with jsonl.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise UsageError(f"{ref}/{JSONL_FILE}: line {number} is not JSON") from None
                if not isinstance(record, dict):
                    raise UsageError(f"{ref}/{JSONL_FILE}: line {number} is not a JSON object")
                if record.get("phase", "profile") != "profile" or record.get("error") is not None:
                    continue
                metrics = record.get("metrics")
                if not isinstance(metrics, dict):
                    continue
                rows.append(
                    {
                        k: float(v)
                        for k, v in metrics.items()
                        if isinstance(v, (int, float))
                        and not isinstance(v, bool)
                        and math.isfinite(v)
                        and k not in LIST_METRICS
                    }
                )
                start, end = record.get("start_time_ns"), record.get("end_time_ns")
                if isinstance(start, int) and isinstance(end, int) and end >= start:
                    times.append((start, end))
                else:
                    times.append(None)
                index = record.get("request_index")
                indices.append(index if isinstance(index, int) else number)
    except OSError as exc:
        raise UsageError(f"{ref}/{JSONL_FILE}: cannot read it ({exc.strerror or exc})") from None
    if not rows:
        raise UsageError(f"{ref}: no successful request in the measured phase to compare")
    block = 1
    if all(t is not None for t in times):
        # In the order they started: requests in flight together ran under the same
        # conditions (a busy client, a batch on the server) and are resampled together.
        spans = [t for t in times if t is not None]
        order = sorted(range(len(rows)), key=lambda i: (spans[i][0], indices[i]))
        rows = [rows[i] for i in order]
        block = block_length(spans)
    names = sorted({name for row in rows for name in row})
    columns = {
        name: np.array([row.get(name, math.nan) for row in rows], dtype=np.float64)
        for name in names
    }
    info = RunInfo(
        ref=ref, path=path if local else None, requests=len(rows), block=block,
        benchmark_id=_benchmark_id(path),
    )  # fmt: skip
    return RunData(info=info, columns=columns)


def block_length(spans: Sequence[tuple[int, int]]) -> int:
    """Twice the average number of requests in flight (their summed durations over the time
    from the first start to the last end), so that a block holds requests that overlapped;
    at most a tenth of the requests, so that a resample still mixes ten blocks or more."""
    first = min(start for start, _ in spans)
    last = max(end for _, end in spans)
    busy = sum(end - start for start, end in spans)
    in_flight = busy / (last - first) if last > first else 1.0
    return max(1, min(round(2 * in_flight), len(spans) // 10))


def _benchmark_id(path: Path) -> str | None:
    try:
        value = json.loads((path / SUMMARY_FILE).read_text(encoding="utf-8")).get("benchmark_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# -- comparing -------------------------------------------------------------------------------


@attrs.frozen
class Settings:
    metrics: tuple[str, ...] | None
    stats: tuple[str, ...]
    gates: tuple[Gate, ...]
    confidence: float
    resamples: int
    seed: int


def settings_from(args: argparse.Namespace) -> Settings:
    from aiperf._bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, check_stat

    stats = tuple(s.strip() for s in str(args.stats).split(",") if s.strip())
    if not stats:
        raise UsageError("--stats: give at least one statistic, e.g. avg,p50,p99")
    for stat in stats:
        problem = check_stat(stat)
        if problem:
            raise UsageError(f"--stats: {problem}")
    metrics = None
    if args.metrics is not None:
        metrics = tuple(m.strip() for m in str(args.metrics).split(",") if m.strip())
        if not metrics:
            raise UsageError("--metrics: give at least one metric, e.g. time_to_first_token")
        for metric in metrics:
            _check_metric(metric, "--metrics")
    confidence = DEFAULT_CONFIDENCE if args.confidence is None else args.confidence
    if not 0.5 <= confidence < 1:
        raise UsageError(f"--confidence: must be at least 0.5 and below 1 (got {confidence:g})")
    resamples = DEFAULT_RESAMPLES if args.resamples is None else args.resamples
    if not 200 <= resamples <= 1_000_000:
        raise UsageError(f"--resamples: must be between 200 and 1000000 (got {resamples})")
    gates = tuple(parse_gate(text) for text in args.fail_if)
    json_file = args.json_file
    if json_file is not None and (json_file.is_dir() or not json_file.parent.is_dir()):
        what = "a directory" if json_file.is_dir() else f"no directory {json_file.parent}"
        raise UsageError(f"--json {json_file}: {what}; give a file in an existing directory")
    return Settings(
        metrics=_unique(metrics) if metrics else None,
        stats=_unique(stats),
        gates=gates,
        confidence=confidence,
        resamples=resamples,
        seed=args.seed,
    )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def verdict(unit: str, low: float, high: float) -> str:
    """What the interval ``[low, high]`` of a difference says, in words for the unit."""
    if low <= 0 <= high:
        return NO_DIFFERENCE
    up = low > 0
    if unit == "ms":
        return "slower" if up else "faster"
    if unit.endswith("/s"):
        return "faster" if up else "slower"
    return "higher" if up else "lower"


def compare_pair(
    baseline: RunData, run: RunData, settings: Settings, point: dict[str, Any] | None = None
) -> Comparison:
    from aiperf._bootstrap import compare_samples, min_requests
    from aiperf._metrics import METRICS

    where = "" if point is None else f" (point {_point_text(point)})"
    wanted = settings.metrics or tuple(
        m
        for m in comparable_metrics()
        if (m in baseline.columns or m in run.columns) and m not in CLIENT_METRICS
    )
    # A --fail-if metric must be in the table; missing from the runs it is an error.
    for gate in settings.gates:
        if gate.metric not in wanted:
            wanted = (*wanted, gate.metric)
    notes: list[str] = []
    plan: list[tuple[str, list[str]]] = []
    needed: dict[tuple[str, int], list[str]] = {}
    gate_stats: dict[str, list[str]] = {}
    for gate in settings.gates:
        gate_stats.setdefault(gate.metric, []).append(gate.stat)
    for metric in wanted:
        missing = [r.info.ref for r in (baseline, run) if r.count(metric) == 0]
        if missing:
            message = f"{metric}: no request of {' or '.join(missing)} has it{where}"
            if metric in gate_stats or settings.metrics:
                raise UsageError(message)
            notes.append(message)
            continue
        fewest = min(baseline.count(metric), run.count(metric))
        stats = []
        for stat in _unique([*settings.stats, *gate_stats.get(metric, [])]):
            need = min_requests(stat)
            if fewest < need:
                if stat in gate_stats.get(metric, []):
                    raise UsageError(
                        f"--fail-if {metric}.{stat}: {stat} needs at least {need} requests with "
                        f"the metric in each run; {fewest} here{where}"
                    )
                needed.setdefault((stat, need), []).append(metric)
                continue
            stats.append(stat)
        if stats:
            plan.append((metric, stats))
    for (stat, need), metrics in needed.items():
        fewest = min(min(baseline.count(m), run.count(m)) for m in metrics)
        what = metrics[0] if len(metrics) == 1 else f"{len(metrics)} metrics"
        notes.append(
            f"{stat} not compared for {what}: needs at least {need} requests in each run "
            f"({fewest} here)"
        )
    family = compare_samples(
        baseline.columns, run.columns, plan,
        resamples=settings.resamples, confidence=settings.confidence, seed=settings.seed,
        blocks=(baseline.info.block, run.info.block),
    )  # fmt: skip
    return Comparison(
        baseline=baseline.info,
        run=run.info,
        point=point,
        rows=tuple(_rows(family, METRICS)),
        row_level=family.row_level,
        not_compared=tuple(notes),
    )


def _rows(family: Family, specs: Mapping[str, Any]) -> Iterable[ComparisonRow]:
    for e in family.estimates:
        spec = specs.get(e.metric)
        unit = spec.unit if spec else ""
        yield ComparisonRow(
            metric=e.metric,
            header=spec.header if spec else e.metric,
            unit=unit,
            stat=e.stat,
            baseline=e.baseline,
            run=e.run,
            difference=e.difference,
            low=e.low,
            high=e.high,
            difference_pct=_percent(e.relative),
            low_pct=_percent(e.relative_low),
            high_pct=_percent(e.relative_high),
            verdict=verdict(unit, e.low, e.high),
        )


def _percent(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _point_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _point_key(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def compare_sources(sources: Sequence[Source], settings: Settings) -> ComparisonReport:
    sweeps = [is_sweep(path) for _, path, _ in sources]
    if any(sweeps) and not all(sweeps):
        kind = {True: "a sweep directory", False: "a run directory"}
        first, other = sources[0], next(s for s, w in zip(sources, sweeps) if w != sweeps[0])
        raise UsageError(
            f"{other[0]} is {kind[not sweeps[0]]} but the baseline {first[0]} is {kind[sweeps[0]]}; "
            "compare runs with runs and sweeps with sweeps"
        )
    comparisons: list[Comparison] = []
    notes: list[str] = []
    if not sweeps[0]:
        runs = [load_run(ref, path, local=not fetched) for ref, path, fetched in sources]
        for run in runs[1:]:
            comparisons.append(compare_pair(runs[0], run, settings))
    else:
        loaded = [load_sweep(ref, path, local=not fetched) for ref, path, fetched in sources]
        base = loaded[0]
        for sweep in loaded[1:]:
            comparisons += _compare_sweeps(base, sweep, settings, notes)
        if not comparisons:
            raise UsageError(
                f"no sweep point could be compared: none with the same values ran in "
                f"{base.ref} and {', '.join(s.ref for s in loaded[1:])}"
            )
    return ComparisonReport(
        comparisons=tuple(comparisons),
        confidence=settings.confidence,
        resamples=settings.resamples,
        seed=settings.seed,
        gates=tuple(_evaluate(g, comparisons) for g in settings.gates),
        not_compared=tuple(notes),
    )


def _compare_sweeps(base: Sweep, other: Sweep, settings: Settings, notes: list[str]) -> list[Comparison]:
    theirs = {_point_key(p.values): p for p in other.points}
    ours = {_point_key(p.values) for p in base.points}
    out = []
    cache: dict[Path, RunData] = {}

    def load(sweep: Sweep, point: SweepPoint) -> RunData:
        assert point.run_dir is not None
        if point.run_dir not in cache:
            ref = f"{sweep.ref.rstrip('/')}/{point.run_dir.name}"
            cache[point.run_dir] = load_run(ref, point.run_dir, local=sweep.local, in_sweep=True)
        return cache[point.run_dir]

    for point in base.points:
        text = _point_text(point.values)
        match = theirs.get(_point_key(point.values))
        if match is None:
            notes.append(f"point {text}: not in {other.ref}")
            continue
        failed = [s.ref for s, p in ((base, point), (other, match)) if p.status != "ok" or p.run_dir is None]
        if failed:
            notes.append(f"point {text}: failed in {' and '.join(failed)}")
            continue
        out.append(compare_pair(load(base, point), load(other, match), settings, point.values))
    for point in other.points:
        if _point_key(point.values) not in ours:
            notes.append(f"point {_point_text(point.values)}: not in the baseline {base.ref}")
    return out


def _evaluate(gate: Gate, comparisons: Sequence[Comparison]) -> GateResult:
    violations = []
    for comparison in comparisons:
        row = comparison.row(gate.metric, gate.stat)
        if row is None:
            continue
        if gate.percent and row.difference_pct is None:
            raise UsageError(
                f"--fail-if {gate.text}: the baseline's {gate.stat} is 0, so a change in % has "
                f"no meaning; give the bound in {row.unit or 'the metric unit'}"
            )
        if gate.violated_by(row):
            violations.append((comparison, row))
    return GateResult(gate=gate, violations=tuple(violations))


# -- output ----------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"


def _signed(value: float) -> str:
    text = _num(value)
    return text if text.startswith("-") else "+" + text


def _pct(value: float) -> str:
    return f"{value:+.2f} %" if abs(value) < 100 else f"{value:+.0f} %"


def _change(row: ComparisonRow) -> str:
    if row.difference_pct is None:
        return _signed(row.difference)
    return f"{_signed(row.difference)} ({_pct(row.difference_pct)})"


def _interval(row: ComparisonRow) -> str:
    if row.low_pct is None or row.high_pct is None:
        return f"[{_signed(row.low)}, {_signed(row.high)}]"
    return f"[{_pct(row.low_pct)}, {_pct(row.high_pct)}]"


def render(report: ComparisonReport) -> str:
    from aiperf._exporters import _grid

    level = f"{100 * report.confidence:g} %"
    lines: list[str] = []
    for c in report.comparisons:
        title = f"{c.run.ref} vs baseline {c.baseline.ref}"
        if c.point is not None:
            title += f"  (point {_point_text(c.point)})"
        lines.append(title)
        lines.append(
            f"{c.run.requests} vs {c.baseline.requests} requests, resampled in blocks of "
            f"{c.run.block} and {c.baseline.block}; {level} intervals for all {len(c.rows)} rows "
            f"together (each row at {100 * c.row_level:.4g} %); {report.resamples} resamples, "
            f"seed {report.seed}"
        )
        table = [["Metric", "Stat", "Baseline", "Run", "Difference", f"{level} interval", "Verdict"]]
        for r in c.rows:
            table.append(
                [f"{r.header} ({r.unit})" if r.unit else r.header, r.stat, _num(r.baseline),
                 _num(r.run), _change(r), _interval(r), r.verdict]
            )  # fmt: skip
        if c.rows:
            lines += _grid(table)
        lines += [f"not compared: {note}" for note in c.not_compared]
        lines.append("")
    lines += [f"not compared: {note}" for note in report.not_compared]
    for gate in report.gates:
        if not gate.violated:
            lines.append(f"fail-if {gate.expression}: ok")
        for c, r in gate.violations:
            where = c.run.ref + ("" if c.point is None else f" (point {_point_text(c.point)})")
            lines.append(f"fail-if {gate.expression}: VIOLATED by {where}: {_change(r)} {_interval(r)}")
    return "\n".join(lines).rstrip("\n") + "\n"


# -- the command -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import tempfile

    from aiperf._plugins import current

    settings = settings_from(args)
    refs = list(args.runs)
    if len(refs) < 2:
        raise UsageError("give at least two runs: the baseline first, then the runs to compare")
    plugins = current()
    options = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    with tempfile.TemporaryDirectory(prefix="aiperf-compare-") as tmp:
        counter = iter(range(len(refs)))

        def scratch() -> Path:
            path = Path(tmp) / str(next(counter))
            path.mkdir()
            return path

        sources = [resolve(ref, plugins, scratch, options) for ref in refs]
        report = compare_sources(sources, settings)
    sys.stdout.write(render(report))
    sys.stdout.flush()
    if args.json_file is not None:
        _write_json(args.json_file, report.as_dict())
    for path in plugins.compared(report, options):
        sys.stdout.write(f"figure: {path}\n")
    return report.exit_code


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from aiperf._exporters import write_text_atomic

    try:
        write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    except AiperfError as exc:
        raise UsageError(f"--json: {exc}") from None
