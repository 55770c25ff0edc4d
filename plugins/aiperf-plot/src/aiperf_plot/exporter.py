"""``aiperf profile --plot``: the single-run figures, drawn by an exporter when the run ends."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiperf
import attrs
import structlog

from aiperf_plot.draw import PLOTS_DIR, draw_single
from aiperf_plot.figures import Plotted, run_color
from aiperf_plot.rundir import Summary, load_run

log = structlog.get_logger()

#: a local-file exporter (< 100): the uploaders that run after it find ``plots/`` written.
ORDER = 50


@attrs.define(kw_only=True)
class PlotExporter:
    name: str = "plot"
    order: int = ORDER
    #: options announced with the PNGs (the profile's plugin options).
    options: Mapping[str, Any] = attrs.field(factory=dict)

    def export(self, run: aiperf.RunContext, result: aiperf.RunResult) -> list[Path]:
        # The result, not the summary file: another exporter may write that file after us.
        data = load_run(run.run_dir, summary=summary_of(run, result))
        drawn = draw_single(Plotted(run=data, color=run_color(0)), run.run_dir / PLOTS_DIR)
        for figure, reason in drawn.not_drawn:
            log.warning("plot_not_drawn", figure=figure, reason=reason)
        for figure, reason in drawn.not_applicable:
            log.debug("plot_not_applicable", figure=figure, reason=reason)
        if drawn.written:
            aiperf.announce_artifacts(run.run_dir, drawn.written, dict(self.options))
        return list(drawn.written)


def summary_of(run: aiperf.RunContext, result: aiperf.RunResult) -> Summary:
    metrics = {
        tag: stats.as_dict() for tag, stats in {**result.run_metrics, **result.metrics}.items()
    }
    return Summary(
        metrics=metrics,
        load_setting=run.load_setting,
        goodput_slos=dict(run.config.goodput),
    )
