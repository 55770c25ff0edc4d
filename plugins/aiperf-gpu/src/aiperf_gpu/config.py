"""The GPU telemetry options of ``aiperf profile``, checked once and frozen.

Nothing here imports NVML: the CLI builds and checks this before any sampling starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
from aiperf import UsageError, strip_userinfo

#: dest names of the flags this plugin adds to ``aiperf profile``.
SOURCES = "gpu_telemetry"
DISABLE = "no_gpu_telemetry"
INTERVAL = "gpu_telemetry_interval"
TABLE = "gpu_telemetry_table"

NVML = "nvml"
#: sampling period when ``--gpu-telemetry-interval`` is not given.
DEFAULT_INTERVAL_S = 0.5
MIN_INTERVAL_S = 0.01
MAX_INTERVAL_S = 60.0
#: where dcgm-exporter listens unless told otherwise.
DCGM_PORT = 9400
DCGM_PATH = "/metrics"

#: the line the core prints when aiperf-gpu is missing; also ours when its NVML package is.
MISSING_PACKAGE = (
    "GPU telemetry requires the 'aiperf-gpu' plugin. Install with: pip install \"aiperf[gpu]\""
)

_EXPECTED = "expected 'nvml' or a DCGM exporter URL such as http://node:9400/metrics"
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/@\s]*@")
_USERINFO_ANYWHERE = re.compile(r"(://)[^/@\s]*@")


@attrs.frozen(kw_only=True)
class GpuConfig:
    """Which GPUs to sample, and how often."""

    #: sample local GPUs through NVML.
    nvml: bool = True
    #: the user named ``nvml`` (rather than getting it by default).
    nvml_requested: bool = False
    #: DCGM exporter endpoints, as handed to the HTTP client (userinfo kept for authentication).
    dcgm_urls: tuple[str, ...] = attrs.field(default=(), repr=False)
    interval_s: float = DEFAULT_INTERVAL_S
    #: print the per-GPU table on the console.
    table: bool = False

    @property
    def display_urls(self) -> tuple[str, ...]:
        """The endpoints to print, log and export: never with ``user:password@``."""
        return tuple(strip_userinfo(url) for url in self.dcgm_urls)


def from_options(options: Mapping[str, Any]) -> GpuConfig | None:
    """Build the config from the profile flags; ``None`` when telemetry is turned off.

    Without ``--gpu-telemetry`` the local GPUs are sampled through NVML.
    """
    raw = _as_list(options.get(SOURCES))
    disabled = bool(options.get(DISABLE))
    interval = _interval(options.get(INTERVAL))
    table = bool(options.get(TABLE))
    if disabled:
        for dest, flag in ((SOURCES, "--gpu-telemetry"), (TABLE, "--gpu-telemetry-table")):
            if options.get(dest):
                raise UsageError(f"--no-gpu-telemetry: cannot be combined with {flag}")
        return None
    if not raw:
        return GpuConfig(interval_s=interval, table=table)
    nvml = False
    urls: list[str] = []
    for item in raw:
        if item.lower() == NVML:
            nvml = True
            continue
        url = normalize_dcgm_url(item)
        if url not in urls:
            urls.append(url)
    return GpuConfig(
        nvml=nvml, nvml_requested=nvml, dcgm_urls=tuple(urls), interval_s=interval, table=table
    )


def normalize_dcgm_url(text: str) -> str:
    """``node`` / ``node:9400`` / a full URL -> ``http://node:9400/metrics``.

    Without a scheme, dcgm-exporter's port and path are filled in; a URL with a scheme keeps
    its port (a proxy may serve it elsewhere) and only gets ``/metrics`` when it has no path.
    """
    raw = text.strip()
    # Never echo a password back, even in an error about the URL it came with.
    shown = _USERINFO.sub(r"\1", raw)
    if not raw:
        raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got an empty value)")
    has_scheme = "://" in raw
    if not has_scheme:
        host_part = raw.split("/", 1)[0].rsplit("@", 1)[-1]
        # A lone word is far more likely a misspelt 'nvml' than a host without a domain.
        if host_part != "localhost" and not any(c in host_part for c in ".:"):
            raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got {shown!r})")
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got {shown!r})")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(
            f"--gpu-telemetry: the port is not a number between 0 and 65535 (got {shown!r})"
        ) from None
    if not parts.hostname or port == 0:
        raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got {shown!r})")
    netloc = parts.netloc
    if not has_scheme and port is None:
        netloc = f"{netloc}:{DCGM_PORT}"
    path = parts.path if parts.path not in ("", "/") else DCGM_PATH
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def hide_userinfo(text: str) -> str:
    """Remove ``user:password@`` from every URL inside a message."""
    return _USERINFO_ANYWHERE.sub(r"\1", text)


def _as_list(value: Any) -> list[str]:
    """Flags give a list; a config file may give a string or a list. Commas also separate."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got {item!r})")
        out.extend(part.strip() for part in item.split(",") if part.strip())
    return out


def _interval(value: Any) -> float:
    if value is None:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--gpu-telemetry-interval: expected seconds (got {value!r})") from None
    if not math.isfinite(seconds) or not MIN_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise UsageError(
            f"--gpu-telemetry-interval: must be between {MIN_INTERVAL_S:g} and "
            f"{MAX_INTERVAL_S:g} seconds (got {value})"
        )
    return seconds
