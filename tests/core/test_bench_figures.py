"""The benchmark suite's own logic: medians and spreads, goals, results.json and the table."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib.figures import (
    SCHEMA_VERSION,
    Figure,
    Figures,
    Goal,
    markdown_document,
    markdown_table,
    results_document,
    spread,
)


class TestSpread:
    def test_spread_median_of_odd_count(self) -> None:
        """The median of an odd count is the middle value; min and max bound it."""
        result = spread([3.0, 1.0, 2.0])
        assert (2.0, 1.0, 3.0, 3) == (result.median, result.low, result.high, result.n)

    def test_spread_median_of_even_count_interpolates(self) -> None:
        """An even count takes the mean of the two middle values."""
        assert 2.5 == spread([4.0, 1.0, 2.0, 3.0]).median

    def test_spread_ignores_nan_and_none(self) -> None:
        """A run that produced no value does not drag the median."""
        result = spread([1.0, math.nan, None, 5.0])  # type: ignore[list-item]
        assert (3.0, 2) == (result.median, result.n)

    def test_spread_of_nothing_is_nan(self) -> None:
        """No values: NaN, and n = 0."""
        result = spread([])
        assert 0 == result.n
        assert math.isnan(result.median) and math.isnan(result.low) and math.isnan(result.high)

    def test_spread_median_resists_one_outlier(self) -> None:
        """One disturbed run out of three leaves the median at the undisturbed value."""
        assert 10.0 == spread([10.0, 9.5, 500.0]).median


class TestGoal:
    @pytest.mark.parametrize(
        ("op", "bound", "value", "expected"),
        [
            (">=", 1000, 1000.0, True),
            (">=", 1000, 999.9, False),
            ("<=", 0.25, 0.25, True),
            ("<=", 0.25, 0.2501, False),
            ("abs<=", 0.5, -0.5, True),
            ("abs<=", 0.5, -0.51, False),
            ("abs<=", 0.5, 0.51, False),
        ],
    )
    def test_goal_met_at_and_beyond_the_bound(self, op: str, bound: float, value: float, expected: bool) -> None:
        """Bounds are inclusive; abs<= judges the size of an error in either direction."""
        assert expected == Goal(op=op, bound=bound, text="").met(value)  # type: ignore[arg-type]

    def test_goal_never_met_by_nan(self) -> None:
        """A missing value cannot pass."""
        assert not Goal(op="<=", bound=1.0, text="").met(math.nan)


class TestFigure:
    def test_figure_status_follows_median(self) -> None:
        """Status is judged on the median of the runs, not on the best run."""
        figure = Figure(id="x", group="g", name="x", unit="s", goal=Goal(op="<=", bound=1.0, text="≤ 1 s"))
        for value in (0.9, 1.2, 1.3):
            figure.add(value, load=0.5)
        assert "fail" == figure.status
        figure.add(0.8)
        figure.add(0.7)
        assert "pass" == figure.status

    def test_figure_without_goal_is_info(self) -> None:
        """A figure without a goal is reported, not judged."""
        figure = Figure(id="x", group="g", name="x", unit="")
        figure.add(1.0)
        assert "info" == figure.status

    def test_figure_without_runs_is_error(self) -> None:
        """A figure whose scenario never produced a value is an error, not a pass."""
        figure = Figure(id="x", group="g", name="x", unit="", goal=Goal(op=">=", bound=0, text=""))
        assert "error" == figure.status

    def test_figure_of_failed_scenario_is_error_even_with_some_runs(self) -> None:
        """A scenario that stopped half-way cannot claim its goal."""
        figure = Figure(id="x", group="g", name="x", unit="", goal=Goal(op=">=", bound=0, text=""))
        figure.add(5.0)
        figure.error = "accuracy: aiperf profile exited 1"
        assert "error" == figure.status

    def test_declare_keeps_first_declaration_and_order(self) -> None:
        """Figures keep their declaration order, and a repeat declaration is the same object."""
        figures = Figures()
        first = figures.declare(Figure(id="b", group="g", name="B", unit=""))
        figures.declare(Figure(id="a", group="g", name="A", unit=""))
        again = figures.declare(Figure(id="b", group="g", name="other", unit=""))
        assert first is again
        assert ["b", "a"] == [f.id for f in figures]

    def test_fail_scenario_marks_only_named_figures(self) -> None:
        """A failed scenario marks its own figures and leaves the others alone."""
        figures = Figures()
        figures.declare(Figure(id="a", group="g", name="A", unit=""))
        figures.declare(Figure(id="b", group="g", name="B", unit=""))
        figures.fail_scenario(["a"], "boom")
        assert ("boom", None) == (figures["a"].error, figures["b"].error)


def _document() -> dict:
    figures = Figures()
    capacity = figures.declare(
        Figure(id="capacity_c64", group="capacity", name="capacity, concurrency 64", unit="req/s",
               goal=Goal(op=">=", bound=1000, text="≥ 1000 req/s"), digits=0)
    )  # fmt: skip
    for value, load in ((900.0, 1.0), (1100.0, 1.5), (1050.0, 0.9)):
        capacity.add(value, load)
    lag = figures.declare(Figure(id="lag", group="rate", name="send lag | p99", unit="ms", digits=3))
    lag.add(math.nan)
    lag.notes.append("no open-loop run")
    figures.declare(Figure(id="never", group="memory", name="never ran", unit="MiB"))
    figures.fail_scenario(["never"], "memory: aiperf profile exited 1")
    machine = {"cpu_model": "Test CPU", "cpus": 2, "usable_cpus": 2, "python": "3.11.0", "versions": {"aiperf": "0.1.0"}}
    suite = {"mode": "full", "duration_s": 12.0, "load_average": {"start": [1.0, 2.0, 3.0], "end": [1.5, 2.0, 3.0]}}
    return results_document(figures, machine=machine, suite=suite)


class TestResults:
    def test_results_document_schema(self) -> None:
        """results.json carries the schema version, the machine, a status count and every figure."""
        document = _document()
        assert SCHEMA_VERSION == document["schema_version"]
        assert {"pass": 1, "fail": 0, "info": 0, "error": 2} == document["summary"]
        capacity = document["figures"][0]
        assert {
            "id", "group", "name", "unit", "digits", "goal", "value", "spread", "n", "runs",
            "load_average_1m", "status", "notes", "error", "data",
        } == set(capacity)  # fmt: skip
        assert (1050.0, [900.0, 1100.0], 3, "pass") == (
            capacity["value"], capacity["spread"], capacity["n"], capacity["status"]
        )
        assert {"op": ">=", "bound": 1000, "text": "≥ 1000 req/s"} == capacity["goal"]
        assert [1.0, 1.5, 0.9] == capacity["load_average_1m"]

    def test_results_document_is_strict_json(self) -> None:
        """NaN never reaches the file: a missing value is null."""
        text = json.dumps(_document(), allow_nan=False)
        lag = json.loads(text)["figures"][1]
        assert (None, [None, None], [None]) == (lag["value"], lag["spread"], lag["runs"])

    def test_markdown_table_rows(self) -> None:
        """One row per figure: name, goal, median with spread and n, status; pipes escaped."""
        lines = markdown_table(_document()["figures"]).splitlines()
        assert "| figure | goal | measured (median, min–max, runs) | status |" == lines[0]
        assert "| capacity, concurrency 64 | ≥ 1000 req/s | 1,050 req/s (900–1,100, n=3) | pass |" == lines[2]
        assert lines[3].startswith("| send lag \\| p99 | — | no value")
        assert "| never ran | — | no value: memory: aiperf profile exited 1 | error |" == lines[4]
        assert ["", "Notes:", "", "- send lag | p99: no open-loop run"] == lines[5:]

    def test_markdown_document_names_machine_and_load(self) -> None:
        """results.md says what machine and what load the figures were measured under."""
        text = markdown_document(_document())
        assert "Test CPU, 2 CPUs" in text
        assert "at start 1.00/2.00/3.00, at end 1.50/2.00/3.00" in text
        # a blank line before the table, or Markdown renders it as part of the list
        assert "\n\n| figure |" in text
