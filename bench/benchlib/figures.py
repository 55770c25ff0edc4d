"""Figures of the suite: repeated runs summarised as a median and a spread, judged against a goal.

A figure is one number a reader compares with a goal (capacity at concurrency 64, TTFT error
p99 at concurrency 16, ...). Every run of its scenario adds one value; the figure reports the
median, because a shared machine produces occasional outliers that a mean would absorb, and
the min–max spread, so that a reader can see how much to trust the median.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

SCHEMA_VERSION = 1

GoalOp = Literal[">=", "<=", "abs<="]
Status = Literal["pass", "fail", "info", "error"]


@attrs.frozen(kw_only=True)
class Goal:
    """What a figure must be: ``value >= bound``, ``value <= bound`` or ``|value| <= bound``."""

    op: GoalOp
    bound: float
    #: how the goal reads in the table, e.g. "≥ 1000 req/s".
    text: str

    def met(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.op == ">=":
            return value >= self.bound
        if self.op == "<=":
            return value <= self.bound
        return abs(value) <= self.bound


@attrs.frozen(kw_only=True)
class Spread:
    median: float
    low: float
    high: float
    n: int


def spread(values: Iterable[float]) -> Spread:
    """Median and min–max of the finite values; NaN for all three when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return Spread(median=math.nan, low=math.nan, high=math.nan, n=0)
    return Spread(median=statistics.median(finite), low=min(finite), high=max(finite), n=len(finite))


@attrs.define(kw_only=True)
class Figure:
    """One line of the results table, filled run by run."""

    id: str
    group: str
    name: str
    unit: str
    goal: Goal | None = None
    #: how many digits after the point the table shows.
    digits: int = 2
    runs: list[float] = attrs.field(factory=list)
    #: the 1-minute load average when each run started, to judge a noisy value.
    load: list[float] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    #: data behind the figure worth keeping (e.g. RSS over time), written to results.json only.
    data: dict[str, Any] = attrs.field(factory=dict)
    #: why the figure has no value (its scenario failed), if it has none.
    error: str | None = None

    def add(self, value: float, load: float | None = None) -> None:
        self.runs.append(float(value))
        if load is not None:
            self.load.append(float(load))

    @property
    def summary(self) -> Spread:
        return spread(self.runs)

    @property
    def status(self) -> Status:
        summary = self.summary
        if summary.n == 0 or self.error is not None:
            return "error"
        if self.goal is None:
            return "info"
        return "pass" if self.goal.met(summary.median) else "fail"

    def as_dict(self) -> dict[str, Any]:
        summary = self.summary
        return {
            "id": self.id,
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "digits": self.digits,
            "goal": None
            if self.goal is None
            else {"op": self.goal.op, "bound": self.goal.bound, "text": self.goal.text},
            "value": _json_number(summary.median),
            "spread": [_json_number(summary.low), _json_number(summary.high)],
            "n": summary.n,
            "runs": [_json_number(v) for v in self.runs],
            "load_average_1m": self.load,
            "status": self.status,
            "notes": self.notes,
            "error": self.error,
            "data": self.data,
        }


def _json_number(value: float) -> float | None:
    # JSON has no NaN; a missing value is null.
    return None if math.isnan(value) else value


@attrs.define
class Figures:
    """The suite's figures in the order they were declared (which is the table's order)."""

    by_id: dict[str, Figure] = attrs.field(factory=dict)

    def declare(self, figure: Figure) -> Figure:
        """The figure with this id, declared once; later declarations return the first one."""
        return self.by_id.setdefault(figure.id, figure)

    def __getitem__(self, figure_id: str) -> Figure:
        return self.by_id[figure_id]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def fail_scenario(self, ids: Iterable[str], reason: str) -> None:
        for figure_id in ids:
            figure = self.by_id.get(figure_id)
            if figure is not None and figure.error is None:
                figure.error = reason


def format_value(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


STATUS_TEXT = {"pass": "pass", "fail": "**FAIL**", "info": "(info)", "error": "error"}


def markdown_table(figures: Sequence[Mapping[str, Any]]) -> str:
    """The results table: figure, goal, measured (median and min–max of n runs), status.

    Takes the figures as written to results.json, so the table can be rebuilt from the file.
    """
    lines = [
        "| figure | goal | measured (median, min–max, runs) | status |",
        "|---|---|---|---|",
    ]
    for fig in figures:
        d = fig.get("digits", 2)
        goal = fig["goal"]["text"] if fig.get("goal") else "—"
        if fig.get("n", 0) == 0:
            measured = f"no value: {fig.get('error') or 'not run'}"
        else:
            low, high = fig["spread"]
            unit = f" {fig['unit']}" if fig["unit"] else ""
            measured = f"{format_value(fig['value'], d)}{unit} ({format_value(low, d)}–{format_value(high, d)}, n={fig['n']})"
            if fig.get("error"):
                measured += f"; stopped: {fig['error']}"
        cells = (fig["name"], goal, measured, STATUS_TEXT[fig["status"]])
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    notes = [f"- {fig['name']}: {note}" for fig in figures for note in fig.get("notes", ())]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def results_document(
    figures: Figures, *, machine: Mapping[str, Any], suite: Mapping[str, Any]
) -> dict[str, Any]:
    """What results.json holds."""
    listed = [figure.as_dict() for figure in figures]
    counts = {status: sum(1 for f in listed if f["status"] == status) for status in STATUS_TEXT}
    return {
        "schema_version": SCHEMA_VERSION,
        "suite": dict(suite),
        "machine": dict(machine),
        "summary": counts,
        "figures": listed,
    }


def markdown_document(document: Mapping[str, Any]) -> str:
    """results.md: the machine in one paragraph, then the table."""
    machine = document["machine"]
    suite = document["suite"]
    load = suite.get("load_average", {})
    head = [
        "# aiperf benchmark results",
        "",
        f"Generated by `nox -s bench` ({suite.get('mode', 'full')} suite) on {suite.get('finished_at', '?')}.",
        "",
        (
            f"- machine: {machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} CPUs "
            f"(usable: {machine.get('usable_cpus', '?')}), {machine.get('memory_gib', '?')} GiB, "
            f"{machine.get('platform', '?')}"
        ),
        f"- python {machine.get('python', '?')}; " + ", ".join(
            f"{name} {version}" for name, version in machine.get("versions", {}).items()
        ),
        (
            f"- commit: {machine.get('commit') or 'unknown'}; load average (1/5/15 min) at start "
            f"{_triple(load.get('start'))}, at end {_triple(load.get('end'))}"
        ),
        (
            "- every figure is the median of n runs with the min–max spread; suite wall time "
            f"{suite.get('duration_s', 0):.0f} s"
        ),
        "",
    ]
    return "\n".join(head) + "\n" + markdown_table(document["figures"])


def _triple(values: Sequence[float] | None) -> str:
    if not values:
        return "?"
    return "/".join(f"{v:.2f}" for v in values)
