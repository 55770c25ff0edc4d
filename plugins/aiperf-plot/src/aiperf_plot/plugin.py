"""Hook implementations of aiperf-plot. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

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
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    if command == "profile":
        from aiperf_plot.command import add_profile_options

        add_profile_options(parser)


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
