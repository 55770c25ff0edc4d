"""Hook implementations of aiperf-server-metrics. Imports nothing heavy: ``aiperf --help``
loads this module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiperf import hookimpl

if TYPE_CHECKING:
    from aiperf import Exporter, PluginOptions, ProfileConfig, RunContext, Sampler

#: where the sampler of a run waits for the exporter (``run.state``).
STATE_KEY = "server_metrics"


@hookimpl
def aiperf_register_options(register: Callable[[PluginOptions], None]) -> None:
    from aiperf import PluginOptions

    from aiperf_server_metrics import config as c

    register(
        PluginOptions(
            name="server_metrics",
            options=c.ServerMetricsOptions,
            title="Server metrics (aiperf-server-metrics)",
            check=c.check_options,
        )
    )


@hookimpl
def aiperf_configure(config: ProfileConfig) -> None:
    from aiperf_server_metrics.config import from_options

    from_options(config.plugin_options, config.urls)


@hookimpl
def aiperf_samplers(config: ProfileConfig, run: RunContext) -> Sequence[Sampler] | None:
    from aiperf_server_metrics.config import from_options

    options = from_options(config.plugin_options, config.urls)
    if options is None or not options.endpoints:
        return None
    from aiperf_server_metrics.sampler import create_sampler

    sampler = create_sampler(options, run, config.ca_bundle)
    run.state[STATE_KEY] = sampler
    return [sampler]


@hookimpl
def aiperf_exporters(config: ProfileConfig, run: RunContext) -> Sequence[Exporter] | None:
    sampler = run.state.get(STATE_KEY)
    if sampler is None:
        return None
    from aiperf_server_metrics.export import ServerMetricsExporter

    return [ServerMetricsExporter(sampler=sampler)]
