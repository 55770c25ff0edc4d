"""The GPU telemetry options of ``aiperf profile``, checked once and frozen.

Nothing here imports NVML: the CLI builds and checks this before any sampling starts.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from aiperf import UsageError, given_options, normalize_url, option, read_options, strip_userinfo

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


@attrs.frozen(kw_only=True)
class GpuOptions:
    """The flags of aiperf-gpu, as the core builds them (flag, ``[plugins.gpu]``, default)."""

    #: ``nvml`` and/or DCGM exporter URLs, checked and in order; empty: the default (NVML).
    sources: tuple[str, ...] = option(
        "--gpu-telemetry",
        dest=SOURCES,
        default=(),
        action="extend",
        metavar="SOURCE",
        parse=lambda value: _sources(value),
        repr=False,
        help=(
            "where to read GPU telemetry: 'nvml' for this machine's GPUs and/or DCGM exporter "
            "URLs (http://node:9400/metrics, node:9400); may be repeated. "
            "Default: nvml (nothing is sampled when this machine has no NVIDIA GPU)"
        ),
    )
    disabled: bool = option(
        "--no-gpu-telemetry", dest=DISABLE, default=False, action="store_true",
        help="do not sample GPUs",
    )  # fmt: skip
    interval_s: float = option(
        "--gpu-telemetry-interval",
        dest=INTERVAL,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        parse=lambda value: _interval(value),
        help=f"GPU sampling period (default {DEFAULT_INTERVAL_S:g} s)",
    )
    table: bool = option(
        "--gpu-telemetry-table", dest=TABLE, default=False, action="store_true",
        help="print per-GPU statistics and energy with the results table",
    )  # fmt: skip

    def config(self) -> GpuConfig | None:
        """What to sample; ``None`` when telemetry is turned off. Without ``--gpu-telemetry``
        the local GPUs are sampled through NVML."""
        if self.disabled:
            return None
        if not self.sources:
            return GpuConfig(interval_s=self.interval_s, table=self.table)
        nvml = NVML in self.sources
        urls = tuple(source for source in self.sources if source != NVML)
        return GpuConfig(
            nvml=nvml, nvml_requested=nvml, dcgm_urls=urls, interval_s=self.interval_s, table=self.table
        )


def check_options(options: GpuOptions, given: frozenset[str]) -> None:
    if options.disabled:
        lines = [
            f"--no-gpu-telemetry: cannot be combined with {flag}"
            for flag, on in (("--gpu-telemetry", options.sources), ("--gpu-telemetry-table", options.table))
            if on
        ]
        if lines:
            raise UsageError("\n".join(lines))


def from_options(options: Any) -> GpuConfig | None:
    """The checked settings of a config (or its ``plugin_options``); ``None`` when off."""
    values = read_options(GpuOptions, options)
    check_options(values, given_options(GpuOptions, options))
    return values.config()


def _sources(value: Any) -> tuple[str, ...]:
    out: list[str] = []
    for item in _as_list(value):
        source = NVML if item.lower() == NVML else normalize_dcgm_url(item)
        if source not in out:
            out.append(source)
    return tuple(out)


def normalize_dcgm_url(text: str) -> str:
    """``node`` / ``node:9400`` / a full URL -> ``http://node:9400/metrics``.

    Without a scheme, dcgm-exporter's port and path are filled in; a URL with a scheme keeps
    its port (a proxy may serve it elsewhere) and only gets ``/metrics`` when it has no path.
    """
    raw = text.strip()
    if not raw:
        raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got an empty value)")
    has_scheme = "://" in raw
    if not has_scheme:
        host_part = raw.split("/", 1)[0].rsplit("@", 1)[-1]
        # A lone word is far more likely a misspelt 'nvml' than a host without a domain.
        if host_part != "localhost" and not any(c in host_part for c in ".:"):
            raise UsageError(f"--gpu-telemetry: {_EXPECTED} (got {strip_userinfo(raw)!r})")
    return normalize_url(
        raw,
        flag="--gpu-telemetry",
        expected=_EXPECTED,
        default_port=None if has_scheme else DCGM_PORT,
        default_path=DCGM_PATH,
    )


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
