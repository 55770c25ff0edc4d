"""``aiperf compare --plot FILE``: the differences from the baseline with their intervals, one
panel per comparison (a run, or a sweep point), one row per metric and statistic.

The flag is added here; the figure is drawn when the core hands over the comparison through
the ``aiperf_compared`` hook, so the core never imports matplotlib.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiperf
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: colour of each verdict: worse red, better green, a change of size blue, none grey.
VERDICT_COLORS = {
    "slower": "#d62728",
    "faster": "#2ca02c",
    "higher": "#1f77b4",
    "lower": "#1f77b4",
    "no difference": "0.45",
}
#: the ``gid`` of the marks of ``--fail-if`` bounds.
GATE_GID = "fail-if-bound"
#: at most this many panels side by side; more go on further lines.
COLUMNS = 3
#: differences beyond this many percent turn the axis logarithmic past +-LINEAR_PCT.
LINEAR_PCT = 20.0


def add_compare_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plots (aiperf-plot)")
    group.add_argument(
        "--plot",
        dest="plot",
        type=Path,
        metavar="FILE",
        help="draw the differences with their intervals into FILE (.png, .svg or .pdf)",
    )


def draw_report(report: aiperf.ComparisonReport, path: Path) -> Path:
    """Draw and save; one line (UsageError) when the file cannot be written."""
    from aiperf import UsageError

    fig = comparison_figure(report)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    except ValueError as exc:  # an unknown file type
        raise UsageError(f"--plot {path}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write it ({exc.strerror or exc})") from None
    return path


def comparison_figure(report: aiperf.ComparisonReport) -> Figure:
    from matplotlib.figure import Figure

    from aiperf_plot.figures import DPI

    panels = list(report.comparisons)
    # One row per metric and statistic in any panel, in the same place in every panel.
    keys = list(dict.fromkeys((r.metric, r.stat) for c in panels for r in _shown(c)[0]))
    rows = max(1, len(keys))
    ncols = min(COLUMNS, max(1, len(panels)))
    nrows = math.ceil(len(panels) / ncols) if panels else 1
    fig = Figure(
        figsize=(4.8 * ncols + 2.4, (0.28 * rows + 1.3) * nrows + 0.6), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    level = f"{100 * report.confidence:g} %"
    fig.suptitle(f"Difference from the baseline, % of its value ({level} intervals, together per panel)")
    labels = _labels(panels, keys)
    for ax, comparison in zip(axes.ravel(), panels):
        _panel(ax, comparison, report, keys)
        ax.set_yticks(range(len(keys)), labels)
        ax.set_ylim(len(keys) - 0.5, -0.5)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    _legend(fig, report)
    return fig


def _labels(panels: Sequence[aiperf.Comparison], keys: Sequence[tuple[str, str]]) -> list[str]:
    headers = {r.metric: r.header for c in panels for r in c.rows}
    return [f"{headers[metric]} {stat}" for metric, stat in keys]


def _legend(fig: Figure, report: aiperf.ComparisonReport) -> None:
    from matplotlib.lines import Line2D

    verdicts = sorted(
        {r.verdict for c in report.comparisons for r in _shown(c)[0]},
        key=list(VERDICT_COLORS).index,
    )
    handles = [
        Line2D([], [], marker="o", color=VERDICT_COLORS[v], label=v, markersize=4) for v in verdicts
    ]
    if any(g.gate.percent for g in report.gates):
        handles.append(
            Line2D([], [], marker="|", markersize=12, color="#d62728", linestyle="none",
                   label="--fail-if bound")
        )  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


def _shown(comparison: aiperf.Comparison) -> tuple[list[Any], list[Any]]:
    """Rows drawn (those with a difference in %), and those left out (baseline value 0)."""
    drawn = [r for r in comparison.rows if r.difference_pct is not None]
    left_out = [r for r in comparison.rows if r.difference_pct is None]
    return drawn, left_out


def _panel(
    ax: Axes,
    comparison: aiperf.Comparison,
    report: aiperf.ComparisonReport,
    keys: Sequence[tuple[str, str]],
) -> None:
    drawn, left_out = _shown(comparison)
    ax.grid(True, axis="x", alpha=0.3)
    ax.axvline(0, color="0.2", linewidth=0.8)
    for row in drawn:
        y = keys.index((row.metric, row.stat))
        color = VERDICT_COLORS.get(row.verdict, "0.45")
        ax.errorbar(
            row.difference_pct, y,
            xerr=[[row.difference_pct - row.low_pct], [row.high_pct - row.difference_pct]],
            fmt="o", color=color, ecolor=color, capsize=3, markersize=4,
        )  # fmt: skip
        for gate in _gates_on(report, row):
            ax.plot([gate], [y], marker="|", markersize=14, color="#d62728", linestyle="none",
                    gid=GATE_GID)  # fmt: skip
    widest = max((abs(v) for r in drawn for v in (r.low_pct, r.high_pct)), default=0.0)
    if widest > LINEAR_PCT:
        ax.set_xscale("symlog", linthresh=LINEAR_PCT / 2)
    ax.set_xlabel("run - baseline (% of baseline)")
    title = f"{comparison.run.ref}\nvs {comparison.baseline.ref}"
    if comparison.point is not None:
        title = ", ".join(f"{k}={v}" for k, v in comparison.point.items()) + "\n" + title
    ax.set_title(title, fontsize=9)
    if left_out:
        names = ", ".join(f"{r.metric}.{r.stat}" for r in left_out[:3])
        more = f" and {len(left_out) - 3} more" if len(left_out) > 3 else ""
        ax.annotate(
            f"not drawn (baseline 0): {names}{more}", (0, 0), xycoords="axes fraction",
            xytext=(0, -28), textcoords="offset points", fontsize=7, color="0.4",
        )  # fmt: skip


def _gates_on(report: aiperf.ComparisonReport, row: Any) -> Sequence[float]:
    """``--fail-if`` bounds in % on this row's metric and statistic."""
    return [
        g.gate.bound
        for g in report.gates
        if g.gate.percent and g.gate.metric == row.metric and g.gate.stat == row.stat
    ]


def hook_compared(report: aiperf.ComparisonReport, options: dict[str, Any]) -> list[Path] | None:
    path = options.get("plot")
    if path is None:
        return None
    from aiperf_plot.config import require_matplotlib

    require_matplotlib()
    return [draw_report(report, Path(path))]
