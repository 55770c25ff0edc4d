"""The OTel options of ``aiperf profile``, checked once and frozen.

Nothing here imports OpenTelemetry: the CLI builds and checks this before the SDK is loaded.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs
from aiperf import UsageError, strip_userinfo

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
    raw = text.strip()
    if not raw:
        raise UsageError(
            "--otel-url: expected host, host:port or a URL such as http://localhost:4318 (got '')"
        )
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    shown = _without_userinfo(text.strip())
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--otel-url: expected an http:// or https:// URL (got {shown!r})")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(
            f"--otel-url: the port is not a number between 1 and 65535 (got {shown!r})"
        ) from None
    if not parts.hostname or port == 0:
        raise UsageError(
            f"--otel-url: expected host, host:port or a URL such as http://localhost:4318 (got {shown!r})"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"--otel-url: a collector URL takes no query or fragment (got {shown!r})")
    netloc = parts.netloc
    if port is None and parts.scheme == "http":
        netloc = f"{netloc}:{DEFAULT_PORT}"
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


def _without_userinfo(text: str) -> str:
    """For error messages: drop ``user:password@`` even from a URL too broken to parse."""
    scheme, sep, rest = text.rpartition("://")
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    return f"{scheme}{sep}{netloc}{slash}{path}"


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


def from_options(options: Mapping[str, Any]) -> OtelConfig | None:
    """Build the config from the profile flags; ``None`` when OTel was not asked for.

    ``--otel-url`` turns the integration on; every other flag of this plugin (``--stream``
    included) needs it, and is an error without it, like ``--mlflow-*`` without a tracking URI:
    a flag that would silently do nothing is a mistake worth one line.
    """
    url = options.get(URL)
    stream = options.get(STREAM)
    stream_value = parse_stream(stream) if stream is not None else Stream.DEFAULT
    attributes = options.get(RESOURCE_ATTRIBUTES)
    interval = options.get(EXPORT_INTERVAL)
    if url is None:
        for flag, given in (
            ("--stream", stream),
            ("--otel-resource-attributes", attributes),
            ("--otel-export-interval", interval),
        ):
            if given is not None:
                raise UsageError(f"{flag}: needs --otel-url (where to send the telemetry)")
        return None
    if not isinstance(url, str):
        raise UsageError(f"--otel-url: expected host, host:port or a URL (got {url!r})")
    return OtelConfig(
        endpoints=parse_otel_url(url),
        stream=stream_value,
        resource_attributes=parse_resource_attributes(attributes) if attributes is not None else (),
        export_interval_s=(
            parse_export_interval(interval) if interval is not None else DEFAULT_EXPORT_INTERVAL_S
        ),
    )
