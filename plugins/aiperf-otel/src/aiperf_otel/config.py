"""The OTel options of ``aiperf profile``, checked once and frozen.

Nothing here imports OpenTelemetry: the CLI builds and checks this before the SDK is loaded.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlunsplit

import attrs
from aiperf import UsageError, given_options, option, read_options, split_url, strip_userinfo

MISSING_PACKAGES = (
    "OTel integration requires the 'opentelemetry' packages. "
    'Install with: pip install "aiperf[otel]"'
)

#: dest names of the flags this plugin adds to ``aiperf profile``.
URL = "otel_url"
STREAM = "otel_stream"
RESOURCE_ATTRIBUTES = "otel_resource_attributes"
EXPORT_INTERVAL = "otel_export_interval"

DEFAULT_PORT = 4318
DEFAULT_EXPORT_INTERVAL_S = 1.0
METRICS_PATH = "/v1/metrics"
TRACES_PATH = "/v1/traces"


class Stream(enum.StrEnum):
    """What ``--stream`` sends: ``default`` is metrics and timing."""

    DEFAULT = "default"
    METRICS = "metrics"
    TIMING = "timing"

    @property
    def metrics(self) -> bool:
        return self is not Stream.TIMING

    @property
    def timing(self) -> bool:
        return self is not Stream.METRICS


@attrs.frozen(kw_only=True)
class OtlpEndpoints:
    """Where the two OTLP/HTTP signals go, derived from one ``--otel-url``."""

    #: as handed to the exporter (userinfo kept: it may carry the collector's credentials).
    metrics_url: str = attrs.field(repr=False)
    traces_url: str = attrs.field(repr=False)
    #: the collector's base URL (what the start-up probe asks); userinfo kept as given.
    base_url: str = attrs.field(repr=False)
    #: the collector's base URL for people: no ``user:password@``, no signal path.
    display_url: str


@attrs.frozen(kw_only=True)
class OtelConfig:
    endpoints: OtlpEndpoints
    stream: Stream = Stream.DEFAULT
    #: from ``--otel-resource-attributes``; they win over ``OTEL_RESOURCE_ATTRIBUTES``.
    resource_attributes: tuple[tuple[str, str], ...] = ()
    export_interval_s: float = DEFAULT_EXPORT_INTERVAL_S


def parse_otel_url(text: str) -> OtlpEndpoints:
    """``host``, ``host:port`` or a full URL -> the metrics and traces endpoints.

    ``http://`` is added when there is no scheme and port 4318 when an http URL has none (an
    https URL without a port keeps 443: hosted collectors listen there). A path ending in
    ``/v1/metrics`` or ``/v1/traces`` names the signal; any other path is a prefix that both
    signal paths are appended to.
    """
    expected = "expected host, host:port or a URL such as http://localhost:4318"
    if not text.strip():
        raise UsageError(f"--otel-url: {expected} (got '')")
    parts = split_url(text, flag="--otel-url", expected=expected)
    if parts.query or parts.fragment:
        raise UsageError(
            "--otel-url: a collector URL takes no query or fragment "
            f"(got {strip_userinfo(text.strip())!r})"
        )
    netloc = parts.netloc
    if parts.port is None and parts.scheme == "http":
        netloc = f"{netloc.removesuffix(':')}:{DEFAULT_PORT}"
    prefix = parts.path.rstrip("/")
    for signal in (METRICS_PATH, TRACES_PATH):
        if prefix.endswith(signal):
            prefix = prefix[: -len(signal)]
            break
    base = urlunsplit((parts.scheme, netloc, prefix, "", ""))
    return OtlpEndpoints(
        metrics_url=base + METRICS_PATH,
        traces_url=base + TRACES_PATH,
        base_url=base,
        display_url=strip_userinfo(base),
    )


def parse_resource_attributes(
    items: str | list[str] | tuple[str, ...],
) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` (the ``OTEL_RESOURCE_ATTRIBUTES`` syntax; values may be %-encoded)."""
    texts = [items] if isinstance(items, str) else list(items)
    out: dict[str, str] = {}
    for text in texts:
        if not isinstance(text, str):
            raise UsageError(f"--otel-resource-attributes: expected 'key=value,...' (got {text!r})")
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key or any(c.isspace() for c in key):
                raise UsageError(
                    f"--otel-resource-attributes: expected 'key=value,...' (got {item.strip()!r})"
                )
            out[key] = unquote(value.strip())
    return tuple(out.items())


def parse_export_interval(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"--otel-export-interval: expected seconds as a number (got {value!r})"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"--otel-export-interval: must be > 0 (got {value})")
    return seconds


def parse_stream(value: Any) -> Stream:
    try:
        return Stream(value)
    except ValueError:
        choices = ", ".join(s.value for s in Stream)
        raise UsageError(f"--stream: expected one of {choices} (got {value!r})") from None


@attrs.frozen(kw_only=True)
class OtelOptions:
    """The flags of aiperf-otel, as the core builds them (flag, ``[plugins.otel]``, default)."""

    endpoints: OtlpEndpoints | None = option(
        "--otel-url",
        dest=URL,
        metavar="URL",
        parse=lambda value: parse_otel_url(_text(value)),
        repr=False,
        help="stream live metrics (and request spans) to this OTLP/HTTP collector: host, "
        "host:port or a full URL (default port 4318; /v1/metrics and /v1/traces are added)",
    )
    stream: Stream = option(
        "--stream",
        dest=STREAM,
        default=Stream.DEFAULT,
        choices=[s.value for s in Stream],
        parse=parse_stream,
        help="what to stream: default = metrics and timing (one span per request and the "
        "run's progress counters), metrics = GenAI metrics only, timing = timing only",
    )
    resource_attributes: tuple[tuple[str, str], ...] = option(
        "--otel-resource-attributes",
        dest=RESOURCE_ATTRIBUTES,
        default=(),
        action="append",
        metavar="KEY=VALUE,...",
        parse=parse_resource_attributes,
        help="extra OTel resource attributes; they override OTEL_RESOURCE_ATTRIBUTES",
    )
    export_interval_s: float = option(
        "--otel-export-interval",
        dest=EXPORT_INTERVAL,
        default=DEFAULT_EXPORT_INTERVAL_S,
        metavar="SECONDS",
        parse=parse_export_interval,
        help=f"how often live metrics are pushed (default {DEFAULT_EXPORT_INTERVAL_S:g})",
    )

    def config(self) -> OtelConfig | None:
        """The integration's settings; ``None`` when OTel was not asked for."""
        if self.endpoints is None:
            return None
        return OtelConfig(
            endpoints=self.endpoints,
            stream=self.stream,
            resource_attributes=self.resource_attributes,
            export_interval_s=self.export_interval_s,
        )


def check_options(options: OtelOptions, given: frozenset[str]) -> None:
    """``--otel-url`` turns the integration on; every other flag of this plugin (``--stream``
    included) needs it, and is an error without it, like ``--mlflow-*`` without a tracking URI:
    a flag that would silently do nothing is a mistake worth one line."""
    if "endpoints" in given:
        return
    lines = [
        f"{flag}: needs --otel-url (where to send the telemetry)"
        for name, flag in (
            ("stream", "--stream"),
            ("resource_attributes", "--otel-resource-attributes"),
            ("export_interval_s", "--otel-export-interval"),
        )
        if name in given
    ]
    if lines:
        raise UsageError("\n".join(lines))


def from_options(options: Any, environ: Mapping[str, str] | None = None) -> OtelConfig | None:
    """The checked settings of a config (or its ``plugin_options``); ``None`` when off."""
    values = read_options(OtelOptions, options, environ)
    check_options(values, given_options(OtelOptions, options))
    return values.config()


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise UsageError(f"--otel-url: expected host, host:port or a URL (got {value!r})")
    return value
