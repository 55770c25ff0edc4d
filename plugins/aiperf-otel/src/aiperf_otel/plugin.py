"""Hook implementations of aiperf-otel. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiperf import hookimpl

from aiperf_otel import config as otel_config

if TYPE_CHECKING:
    from aiperf import LiveSink, PluginOptions, ProfileConfig, RunContext


@hookimpl
def aiperf_register_options(register: Callable[[PluginOptions], None]) -> None:
    from aiperf import PluginOptions

    register(
        PluginOptions(
            name="otel",
            options=otel_config.OtelOptions,
            title="OpenTelemetry (aiperf-otel)",
            check=otel_config.check_options,
        )
    )


@hookimpl
def aiperf_configure(config: ProfileConfig) -> None:
    if otel_config.from_options(config.plugin_options) is None:
        return
    try:
        import opentelemetry.exporter.otlp.proto.http.metric_exporter
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.metrics
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        from aiperf import MissingExtra

        raise MissingExtra(otel_config.MISSING_PACKAGES) from None


@hookimpl
def aiperf_live_sinks(config: ProfileConfig, run: RunContext) -> Sequence[LiveSink] | None:
    otel = otel_config.from_options(config.plugin_options)
    if otel is None:
        return None
    from aiperf_otel.sink import OtelSink

    return [OtelSink(config=otel, verbose=config.verbose)]
