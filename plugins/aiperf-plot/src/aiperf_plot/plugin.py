"""Hook implementations of aiperf-plot. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf import hookimpl

if TYPE_CHECKING:
    import aiperf


@hookimpl
def aiperf_register_commands(register: Callable[[aiperf.Command], None]) -> None:
    from aiperf import Command

    from aiperf_plot import command

    register(
        Command(
            name="plot", help=command.HELP, add_arguments=command.add_arguments, run=command.run
        )
    )


@hookimpl
def aiperf_register_options(register: Callable[[aiperf.PluginOptions], None]) -> None:
    from aiperf import PluginOptions

    from aiperf_plot.config import PlotConfig

    register(PluginOptions(name="plot", options=PlotConfig, title="plots (aiperf-plot)"))


@hookimpl
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "compare":
        from aiperf_plot.compare import add_compare_options

        add_compare_options(parser)


@hookimpl
def aiperf_configure(config: aiperf.ProfileConfig) -> None:
    from aiperf_plot.config import PlotConfig, require_matplotlib

    if PlotConfig.from_options(config.plugin_options).enabled:
        require_matplotlib()


@hookimpl
def aiperf_exporters(
    config: aiperf.ProfileConfig, run: aiperf.RunContext
) -> Sequence[aiperf.Exporter] | None:
    from aiperf_plot.config import PlotConfig

    if not PlotConfig.from_options(config.plugin_options).enabled:
        return None
    from aiperf_plot.exporter import PlotExporter

    return [PlotExporter(options=dict(config.plugin_options))]


@hookimpl
def aiperf_compared(report: aiperf.ComparisonReport, options: dict[str, Any]) -> Sequence[Path] | None:
    from aiperf_plot.compare import hook_compared

    return hook_compared(report, options)
