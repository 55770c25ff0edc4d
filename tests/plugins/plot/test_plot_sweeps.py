"""``aiperf plot`` on a sweep directory (one point per sweep point, the Pareto front) and on
repeats (each trial, and the mean with its confidence interval as an error bar)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiperf._aggregate import aggregate
from aiperf_plot import command, figures
from aiperf_plot.draw import assign_colors
from aiperf_plot.rundir import load_run, read_sweep
from matplotlib.container import ErrorbarContainer
from plot_rundirs import write_run

STATS = ("avg", "p50", "p90", "p99")


def _args(*argv: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import aiperf

    seen: list[Any] = []
    monkeypatch.setattr(aiperf, "announce_artifacts", lambda *a: seen.append(a))
    return seen


def metrics_of(run_dir: Path) -> dict[str, dict[str, float]]:
    data = json.loads((run_dir / "profile_export_aiperf.json").read_text())
    return {
        tag: {s: v for s, v in stats.items() if s in STATS}
        for tag, stats in data["metrics"].items()
        if any(s in stats for s in STATS)
    }


def write_sweep(root: Path, points: list[dict[str, int]], kind: str = "sweep") -> Path:
    """A sweep directory as aiperf profile writes it (docs/sweeps.md): runs and the summary."""
    rows = []
    for index, values in enumerate(points):
        name = "-".join(f"{k}_{v}" for k, v in values.items())
        write_run(root / name, concurrency=values.get("concurrency", 4), requests=16, seed=index)
        rows.append({"index": index, "values": values, "run_dir": name, "status": "ok",
                     "metrics": metrics_of(root / name)})  # fmt: skip
    summary = {"kind": kind, "sweep_type": "grid", "parameters": list(points[0]), "points": rows}
    (root / ("repeat_summary.json" if kind == "repeat" else "sweep_summary.json")).write_text(json.dumps(summary))
    return root


def write_repeat(root: Path, trials: int = 3) -> Path:
    write_sweep(root, [{"trial": n} for n in range(1, trials + 1)], kind="repeat")
    summary = json.loads((root / "repeat_summary.json").read_text())
    metrics = aggregate([p["metrics"] for p in summary["points"]], 0.9, {"request_latency": ("ms", "Request Latency")})
    (root / "aggregate").mkdir()
    (root / "aggregate" / "profile_export_aiperf_aggregate.json").write_text(
        json.dumps({"kind": "repeat_aggregate", "confidence_level": 0.9, "metrics": metrics})
    )
    summary["aggregate"] = {"json": "aggregate/profile_export_aiperf_aggregate.json"}
    (root / "repeat_summary.json").write_text(json.dumps(summary))
    return root


class TestSweepDirectory:
    def test_points_come_from_the_summary_named_by_their_values(self, tmp_path: Path) -> None:
        root = write_sweep(tmp_path / "sw", [{"concurrency": 1, "isl": 64}, {"concurrency": 4, "isl": 64}])
        write_run(tmp_path / "sw" / "previous" / "abc" / "concurrency_9", concurrency=9)  # set aside
        sweep = read_sweep(root)
        assert sweep is not None and sweep.kind == "sweep"
        assert [p.label for p in sweep.points] == ["concurrency 1, ISL 64", "concurrency 4, ISL 64"]
        assert [p.group for p in sweep.points] == ["ISL 64", "ISL 64"]
        assert read_sweep(tmp_path) is None

    def test_plot_draws_one_point_per_sweep_point_and_the_front(
        self, tmp_path: Path, announced: list[Any]
    ) -> None:
        root = write_sweep(tmp_path / "sw", [{"concurrency": c} for c in (1, 2, 4, 8)])
        write_run(root / "previous" / "abc" / "concurrency_9", concurrency=9)
        assert 0 == command.run(_args(str(root)))
        pngs = {p.name for p in (root / "plots").glob("*.png")}
        assert {"compare_pareto_front.png", "compare_throughput_vs_latency.png"} <= pngs
        # The earlier sweep in previous/ is not drawn.
        assert not (root / "previous" / "abc" / "concurrency_9" / "plots").exists()
        assert len(announced) == 4

    def test_curve_points_are_the_summary_values_in_sweep_order(self, tmp_path: Path) -> None:
        root = write_sweep(tmp_path / "sw", [{"concurrency": c} for c in (8, 1, 4)])
        sweep = read_sweep(root)
        assert sweep is not None
        points = {p.path.resolve(): p for p in sweep.points}
        plotted = assign_colors([load_run(p.path) for p in sweep.points], points)
        assert [p.shown_as for p in plotted] == ["concurrency 8", "concurrency 1", "concurrency 4"]
        ax = figures.throughput_vs_latency(plotted).axes[0]
        summary = json.loads((root / "sweep_summary.json").read_text())
        expected = [(p["metrics"]["request_latency"]["p50"], p["metrics"]["output_token_throughput"]["avg"])
                    for p in summary["points"]]  # fmt: skip
        offsets = [float(v) for xy in ax.collections[0].get_offsets() for v in xy]
        assert offsets == pytest.approx([v for xy in expected for v in xy])
        labels = [t.get_text() for t in ax.texts][:3]
        assert labels == ["concurrency 8", "concurrency 1", "concurrency 4"]


class TestPareto:
    def test_optimal_points(self) -> None:
        # (latency, throughput): the second beats the third; the first and fourth trade off.
        points = [(10.0, 100.0), (20.0, 300.0), (25.0, 250.0), (40.0, 400.0), (40.0, 390.0)]
        assert figures.pareto_optimal(points) == [True, True, False, True, False]

    def test_the_figure_marks_the_front(self, make_run: Callable[..., Path]) -> None:
        runs = [make_run(f"m-concurrency{c}", concurrency=c, seed=c) for c in (1, 4, 8)]
        plotted = assign_colors([load_run(p) for p in runs])
        fig = figures.pareto_front(plotted)
        points = [(p.run.summary.stat("request_latency", "p99"), p.run.summary.stat("output_token_throughput"))
                  for p in plotted]  # fmt: skip
        on_front = sum(figures.pareto_optimal(points))
        assert f"({on_front} of 3 runs on it)" in fig.axes[0].get_title()
        front_line = fig.axes[0].lines[0]
        assert len(front_line.get_xdata()) == on_front


class TestRepeats:
    def test_error_bars_are_the_confidence_intervals(self, tmp_path: Path) -> None:
        root = write_repeat(tmp_path / "rep")
        sweep = read_sweep(root)
        assert sweep is not None and sweep.aggregate is not None and sweep.confidence_level == 0.9
        fig = figures.repeat_confidence(sweep.aggregate, "rep", sweep.confidence_level)
        by_title = {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_visible()}
        ax = by_title["Request latency p99"]
        [bars] = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        segment = bars.lines[2][0].get_segments()[0]
        entry = sweep.aggregate["request_latency"]["p99"]
        assert [y for _, y in segment] == pytest.approx([entry["ci_low"], entry["ci_high"]])
        trials = ax.collections[0].get_offsets()[:, 1]
        assert list(trials) == pytest.approx(entry["values"])
        assert ax.get_ylabel() == "ms"

    def test_plot_of_a_repeat_draws_the_repeat_figure_not_comparisons(
        self, tmp_path: Path, announced: list[Any], capsys: pytest.CaptureFixture[str]
    ) -> None:
        root = write_repeat(tmp_path / "rep")
        assert 0 == command.run(_args(str(root)))
        assert [p.name for p in (root / "plots").glob("*.png")] == ["repeat_confidence.png"]
        assert "repeats: 1 figures in" in capsys.readouterr().out
        assert (root / "trial_2" / "plots" / "ttft_over_time.png").is_file()


@pytest.mark.integration
def test_plot_of_a_real_sweep_and_repeat(tmp_path: Path) -> None:
    """``aiperf profile --concurrency 1,2,4`` then ``aiperf plot`` on its directory; the same
    for ``--num-profile-runs 2``."""
    from aiperf.testing import MockServer

    def aiperf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aiperf", *args], capture_output=True, text=True,
                              timeout=300, check=False, cwd=tmp_path)  # fmt: skip

    with MockServer(ttft_ms=2, itl_ms=1) as server:
        common = ["profile", "--url", server.url, "-m", "m", "--streaming", "--isl", "16", "--osl", "4",
                  "--request-count", "8", "--no-progress"]  # fmt: skip
        assert 0 == aiperf(*common, "--concurrency", "1,2,4", "--artifact-dir", "sw").returncode
        assert 0 == aiperf(*common, "--num-profile-runs", "2", "--artifact-dir", "rep").returncode
    drawn = aiperf("plot", "sw")
    assert 0 == drawn.returncode, drawn.stderr
    assert "comparison of 3 runs" in drawn.stdout
    assert (tmp_path / "sw" / "plots" / "compare_pareto_front.png").is_file()
    drawn = aiperf("plot", "rep")
    assert 0 == drawn.returncode, drawn.stderr
    assert (tmp_path / "rep" / "plots" / "repeat_confidence.png").is_file()
    assert not (tmp_path / "rep" / "plots" / "compare_pareto_front.png").exists()
