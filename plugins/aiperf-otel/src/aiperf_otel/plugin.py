"""Hook implementations of aiperf-otel. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiperf import hookimpl

from aiperf_otel import config as otel_config

if TYPE_CHECKING:
    from aiperf import LiveSink, ProfileConfig, RunContext


@hookimpl
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    if command != "profile":
        return
    group = parser.add_argument_group("OpenTelemetry (aiperf-otel)")
    group.add_argument(
        "--otel-url",
        dest=otel_config.URL,
        metavar="URL",
        help="stream live metrics (and request spans) to this OTLP/HTTP collector: host, "
        "host:port or a full URL (default port 4318; /v1/metrics and /v1/traces are added)",
    )
    group.add_argument(
        "--stream",
        dest=otel_config.STREAM,
        choices=[s.value for s in otel_config.Stream],
        help="what to stream: default = metrics and timing (one span per request and the "
        "run's progress counters), metrics = GenAI metrics only, timing = timing only",
    )
    group.add_argument(
        "--otel-resource-attributes",
        dest=otel_config.RESOURCE_ATTRIBUTES,
        metavar="KEY=VALUE,...",
        action="append",
        help="extra OTel resource attributes; they override OTEL_RESOURCE_ATTRIBUTES",
    )
    group.add_argument(
        "--otel-export-interval",
        dest=otel_config.EXPORT_INTERVAL,
        metavar="SECONDS",
        help=f"how often live metrics are pushed (default {otel_config.DEFAULT_EXPORT_INTERVAL_S:g})",
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
