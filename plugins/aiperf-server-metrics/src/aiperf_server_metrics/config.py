"""The server-metrics options of ``aiperf profile``, checked once and frozen.

Nothing here imports ``prometheus_client``: the CLI builds and checks this before anything
is scraped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
from aiperf import UsageError, given_options, normalize_url, option, read_options, strip_userinfo

#: dest names of the flags this plugin adds to ``aiperf profile``.
URLS = "server_metrics"
DISABLE = "no_server_metrics"
INTERVAL = "server_metrics_interval"

#: scrape period when ``--server-metrics-interval`` is not given.
DEFAULT_INTERVAL_S = 0.5
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 60.0
METRICS_PATH = "/metrics"

MISSING_PACKAGE = (
    "Server metrics require the 'aiperf-server-metrics' plugin. "
    'Install with: pip install "aiperf[server-metrics]"'
)

_EXPECTED = "expected a Prometheus endpoint URL such as http://server:8000/metrics"


@attrs.frozen(kw_only=True)
class Endpoint:
    """One ``/metrics`` URL to scrape."""

    #: as handed to the HTTP client (userinfo kept for authentication).
    url: str = attrs.field(repr=False)
    #: named with ``--server-metrics`` (rather than derived from ``--url``).
    explicit: bool

    @property
    def label(self) -> str:
        """The URL to print, log and export: never with ``user:password@``, and its query
        (which may carry a token) only as ``?***``."""
        parts = urlsplit(strip_userinfo(self.url))
        query = "***" if parts.query else ""
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@attrs.frozen(kw_only=True)
class ServerMetricsConfig:
    endpoints: tuple[Endpoint, ...]
    interval_s: float = DEFAULT_INTERVAL_S


@attrs.frozen(kw_only=True)
class ServerMetricsOptions:
    """The flags of aiperf-server-metrics, as the core builds them (flag,
    ``[plugins.server_metrics]``, default)."""

    #: ``--server-metrics`` endpoints, checked and in order.
    urls: tuple[str, ...] = option(
        "--server-metrics",
        dest=URLS,
        default=(),
        action="extend",
        metavar="URL",
        parse=lambda value: _urls(value),
        repr=False,
        help=(
            "Prometheus endpoints to scrape besides <url>/metrics of every --url "
            "(http://node:8000/metrics, node:8000); may be repeated"
        ),
    )
    disabled: bool = option(
        "--no-server-metrics", dest=DISABLE, default=False, action="store_true",
        help="do not scrape the servers' metrics endpoints",
    )  # fmt: skip
    interval_s: float = option(
        "--server-metrics-interval",
        dest=INTERVAL,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        parse=lambda value: _interval(value),
        help=f"scrape period (default {DEFAULT_INTERVAL_S:g} s)",
    )

    def config(self, server_urls: Sequence[str]) -> ServerMetricsConfig | None:
        """What to scrape; ``None`` when scraping is turned off. Every ``--url`` gets
        ``<url>/metrics`` scraped; ``--server-metrics`` adds endpoints."""
        if self.disabled:
            return None
        endpoints = [Endpoint(url=url, explicit=True) for url in self.urls]
        seen = set(self.urls)
        for server in server_urls:
            url = default_metrics_url(server)
            if url not in seen:
                seen.add(url)
                endpoints.append(Endpoint(url=url, explicit=False))
        return ServerMetricsConfig(endpoints=tuple(endpoints), interval_s=self.interval_s)


def check_options(options: ServerMetricsOptions, given: frozenset[str]) -> None:
    if options.disabled and options.urls:
        raise UsageError("--no-server-metrics: cannot be combined with --server-metrics")


def from_options(options: Any, server_urls: Sequence[str]) -> ServerMetricsConfig | None:
    """The checked settings of a config (or its ``plugin_options``); ``None`` when off."""
    values = read_options(ServerMetricsOptions, options)
    check_options(values, given_options(ServerMetricsOptions, options))
    return values.config(server_urls)


def _urls(value: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in _as_list(value):
        url = normalize_metrics_url(item)
        if url not in out:
            out.append(url)
    return tuple(out)


def default_metrics_url(server_url: str) -> str:
    """``<url>/metrics`` of a ``--url``: its query (which may carry a key) is left behind."""
    parts = urlsplit(server_url)
    path = parts.path.rstrip("/") + METRICS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def normalize_metrics_url(text: str) -> str:
    """``host:port`` / a URL without a path -> ``http://host:port/metrics``; a URL with a path
    is used as given (a proxy may serve the metrics elsewhere)."""
    if not text.strip():
        raise UsageError(f"--server-metrics: {_EXPECTED} (got an empty value)")
    return normalize_url(
        text, flag="--server-metrics", expected=_EXPECTED, default_path=METRICS_PATH
    )


def _as_list(value: Any) -> list[str]:
    """Flags give a list; a config file may give a string or a list. Commas also separate."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise UsageError(f"--server-metrics: {_EXPECTED} (got {item!r})")
        out.extend(part.strip() for part in item.split(",") if part.strip())
    return out


def _interval(value: Any) -> float:
    if value is None:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--server-metrics-interval: expected seconds (got {value!r})") from None
    if not math.isfinite(seconds) or not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise UsageError(
            f"--server-metrics-interval: must be between {MIN_INTERVAL_S:g} and "
            f"{MAX_INTERVAL_S:g} seconds (got {value})"
        )
    return seconds
