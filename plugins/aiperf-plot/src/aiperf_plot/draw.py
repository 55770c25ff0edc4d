"""Draw every figure that the data allows, save the PNGs, and say what could not be drawn."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import attrs
from matplotlib.figure import Figure

from aiperf_plot.figures import (
    COMPARISON,
    DPI,
    REPEAT_FIGURE,
    SINGLE_RUN,
    CannotDraw,
    NotApplicable,
    Plotted,
    repeat_confidence,
    run_color,
)
from aiperf_plot.rundir import RunData, Sweep, SweepPoint

PLOTS_DIR = "plots"


@attrs.frozen(kw_only=True)
class Drawn:
    """What one batch of figures produced: the PNGs written, and for each figure that was not
    drawn its file name and why (``("gpu_over_time.png", "no gpu_telemetry_export.jsonl ...")``)."""

    out_dir: Path
    written: tuple[Path, ...] = ()
    #: figures that could not be drawn: missing, damaged or older files.
    not_drawn: tuple[tuple[str, str], ...] = ()
    #: figures for data the run did not record (no GPU telemetry, no SLOs).
    not_applicable: tuple[tuple[str, str], ...] = ()


def assign_colors(
    runs: Sequence[RunData], points: Mapping[Path, SweepPoint] | None = None
) -> list[Plotted]:
    """Runs in load order (a sweep reads left to right; a sweep's points in their order,
    named by their values), each with its colour."""
    points = points or {}
    plotted = []
    for run in runs:
        point = points.get(run.path.resolve())
        plotted.append(
            Plotted(run=run, color="", label=point.label, index=point.index, group=point.group)
            if point is not None
            else Plotted(run=run, color="")
        )
    plotted.sort(key=lambda p: (p.order, p.run.name))
    return [attrs.evolve(p, color=run_color(i)) for i, p in enumerate(plotted)]


def draw_single(plotted: Plotted, out_dir: Path) -> Drawn:
    builders = {name: partial(b, plotted.run, plotted.color) for name, b in SINGLE_RUN.items()}
    return _draw(out_dir, builders)


def draw_comparison(runs: Sequence[Plotted], out_dir: Path) -> Drawn:
    return _draw(out_dir, {name: partial(build, runs) for name, build in COMPARISON.items()})


def _draw(out_dir: Path, builders: Mapping[str, Callable[[], Figure]]) -> Drawn:
    written: list[Path] = []
    not_drawn: list[tuple[str, str]] = []
    not_applicable: list[tuple[str, str]] = []
    for name, build in builders.items():
        filename = f"{name}.png"
        try:
            fig = build()
        except NotApplicable as exc:
            not_applicable.append((filename, str(exc)))
            continue
        except CannotDraw as exc:
            not_drawn.append((filename, str(exc)))
            continue
        path = out_dir / filename
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI)
        except OSError as exc:
            not_drawn.append((filename, f"cannot write {path}: {exc.strerror or exc}"))
            continue
        written.append(path)
    return Drawn(
        out_dir=out_dir,
        written=tuple(written),
        not_drawn=tuple(not_drawn),
        not_applicable=tuple(not_applicable),
    )


@attrs.frozen(kw_only=True)
class Report:
    """Everything ``aiperf plot`` drew, per run and for the comparison."""

    runs: tuple[tuple[RunData, Drawn], ...]
    comparison: Drawn | None = None
    #: one line per run the comparison figures could not include.
    left_out: tuple[str, ...] = ()
    #: figures of repeats, one batch per repeat directory.
    extra: tuple[Drawn, ...] = ()

    @property
    def written(self) -> tuple[Path, ...]:
        drawn = [d for _, d in self.runs] + ([self.comparison] if self.comparison else [])
        drawn += list(self.extra)
        return tuple(path for d in drawn for path in d.written)


def plot_runs(
    run_dirs: Sequence[Path],
    output: Path | None = None,
    *,
    points: Mapping[Path, SweepPoint] | None = None,
    repeats: Sequence[Sweep] = (),
) -> Report:
    """Single-run figures for every run; comparison figures too when there are several.

    Without ``output`` each run's figures go to ``RUN/plots/`` and the comparison figures to
    ``plots/`` in the directory holding the runs. With it, a single run's figures go to
    ``output`` itself; several runs get ``output/<run name>/`` and the comparison ``output``.
    ``points`` names the runs that are points of a sweep (by resolved path). The trials of
    ``repeats`` are one load measured again: they get the figure of the repeats (in
    ``REPEAT_DIR/plots/``, or ``output``) instead of comparison figures among themselves.
    """
    from aiperf_plot.rundir import common_parent, load_run

    plotted = assign_colors([load_run(path) for path in run_dirs], points)
    trials = {p.path.resolve() for sweep in repeats for p in sweep.points}
    only_trials = bool(trials) and all(p.run.path.resolve() in trials for p in plotted)
    several = len(plotted) > 1 and not only_trials
    names: set[str] = set()
    per_run = []
    for p in plotted:
        if output is None:
            out_dir = p.run.path / PLOTS_DIR
        elif several:
            out_dir = output / _unique(p.run.name, names)
        else:
            out_dir = output
        per_run.append((p.run, draw_single(p, out_dir)))
    extra = tuple(_draw_repeat(sweep, output) for sweep in repeats)
    if not several:
        return Report(runs=tuple(per_run), extra=extra)
    left_out = tuple(
        f"{p.run.name}: left out of the comparison figures: {p.run.summary_problem}"
        for p in plotted
        if p.run.summary is None
    )
    compare_dir = output if output is not None else common_parent(run_dirs) / PLOTS_DIR
    return Report(
        runs=tuple(per_run),
        comparison=draw_comparison(plotted, compare_dir),
        left_out=left_out,
        extra=extra,
    )


def _draw_repeat(sweep: Sweep, output: Path | None) -> Drawn:
    out_dir = output if output is not None else sweep.path / PLOTS_DIR
    if sweep.aggregate is None:
        def missing() -> Figure:
            raise CannotDraw(f"no aggregate in {sweep.path.name} (no trial finished?)")

        return _draw(out_dir, {REPEAT_FIGURE: missing})
    build = partial(repeat_confidence, sweep.aggregate, sweep.path.name, sweep.confidence_level)
    return _draw(out_dir, {REPEAT_FIGURE: build})


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate
