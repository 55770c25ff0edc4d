"""``aiperf plot`` and ``aiperf profile --plot``: flags, and the command itself.

Only argparse work happens at import (``aiperf --help`` builds these parsers); matplotlib and
numpy load inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf_plot.config import PlotRequest, require_matplotlib

if TYPE_CHECKING:
    from aiperf_plot.draw import Drawn, Report

HELP = "draw PNG figures from aiperf run directories"
DESCRIPTION = (
    "Draw figures from one or more aiperf run directories. One run gives the single-run "
    "figures (TTFT, ITL, latency distribution, throughput, GPU); several runs, or a directory "
    "holding several, also give the comparison figures (throughput vs. latency curves)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument(
        "path_args",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="run directories, or directories holding runs (default: ./artifacts)",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="the same as the positional PATHs",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the PNGs here instead of RUN/plots/ (several runs: DIR/<run>/ and the "
        "comparison figures in DIR)",
    )


def run(args: argparse.Namespace) -> int:
    request = PlotRequest.from_args(args)
    require_matplotlib()
    from aiperf import UsageError

    from aiperf_plot.draw import plot_runs
    from aiperf_plot.rundir import RUN_MARKERS, SweepPoint, find_runs, read_sweep

    run_dirs: dict[Path, Path] = {}
    points: dict[Path, SweepPoint] = {}
    repeats = []
    for path in request.paths:
        sweep = read_sweep(path)
        if sweep is not None and sweep.points:
            # A sweep's points as its summary lists them (never an earlier sweep set aside
            # in previous/), named by their values.
            for point in sweep.points:
                run_dirs.setdefault(point.path.resolve(), point.path)
                points[point.path.resolve()] = point
            if sweep.kind == "repeat":
                repeats.append(sweep)
            continue
        found = find_runs(path)
        if not found:
            raise UsageError(
                f"--paths: no aiperf run directory in {path} (a run directory holds "
                f"{' or '.join(RUN_MARKERS)})"
            )
        for run_dir in found:
            run_dirs.setdefault(run_dir.resolve(), run_dir)
    report = plot_runs(list(run_dirs.values()), request.output, points=points, repeats=repeats)
    print_report(report)
    code = announce(report, vars(args))
    if not report.written:
        print("aiperf plot: no figure could be drawn (see the reasons above)", file=sys.stderr)
        return 1
    return code


def announce(report: Report, options: dict[str, Any]) -> int:
    """Tell the other plugins about each run's PNGs (aiperf-mlflow uploads them with
    ``--mlflow-upload``). One run's failure is reported and the other runs still go.

    Comparison figures belong to no single run, so they are not announced.
    """
    from aiperf import AiperfError, announce_artifacts

    code = 0
    for run_data, drawn in report.runs:
        if not drawn.written:
            continue
        try:
            announce_artifacts(run_data.path, drawn.written, options)
        except AiperfError as exc:
            print(f"aiperf: error: {_shown(run_data.path)}: {exc}", file=sys.stderr)
            code = max(code, exc.exit_code)
    return code


def print_report(
    report: Report,
    out: Callable[[str], Any] = lambda line: print(line),
    err: Callable[[str], Any] = lambda line: print(line, file=sys.stderr),
) -> None:
    for run_data, drawn in report.runs:
        _print_drawn(_shown(run_data.path), drawn, out, err)
    for line in report.left_out:
        err(line)
    if report.comparison is not None:
        _print_drawn(f"comparison of {len(report.runs)} runs", report.comparison, out, err)
    for drawn in report.extra:
        _print_drawn("repeats", drawn, out, err)


def _print_drawn(
    what: str, drawn: Drawn, out: Callable[[str], Any], err: Callable[[str], Any]
) -> None:
    if drawn.written:
        out(f"{what}: {len(drawn.written)} figures in {_shown(drawn.out_dir)}")
    for figure, reason in (*drawn.not_drawn, *drawn.not_applicable):
        err(f"{what}: not drawn: {figure}: {reason}")


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(absolute)
