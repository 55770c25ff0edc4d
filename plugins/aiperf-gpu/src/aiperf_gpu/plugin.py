"""Hook implementations of aiperf-gpu. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiperf import hookimpl

if TYPE_CHECKING:
    from aiperf import ProfileConfig, RunContext, Sampler


@hookimpl
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    if command != "profile":
        return
    from aiperf_gpu import config as c

    group = parser.add_argument_group("GPU telemetry (aiperf-gpu)")
    group.add_argument(
        "--gpu-telemetry",
        dest=c.SOURCES,
        nargs="+",
        action="extend",
        metavar="SOURCE",
        help=(
            "where to read GPU telemetry: 'nvml' for this machine's GPUs and/or DCGM exporter "
            "URLs (http://node:9400/metrics, node:9400); may be repeated. "
            "Default: nvml (nothing is sampled when this machine has no NVIDIA GPU)"
        ),
    )
    group.add_argument(
        "--no-gpu-telemetry",
        dest=c.DISABLE,
        action="store_true",
        default=None,
        help="do not sample GPUs",
    )
    group.add_argument(
        "--gpu-telemetry-interval",
        dest=c.INTERVAL,
        type=float,
        metavar="SECONDS",
        help=f"GPU sampling period (default {c.DEFAULT_INTERVAL_S:g} s)",
    )
    group.add_argument(
        "--gpu-telemetry-table",
        dest=c.TABLE,
        action="store_true",
        default=None,
        help="print per-GPU statistics and energy with the results table",
    )


@hookimpl
def aiperf_configure(config: ProfileConfig) -> None:
    from aiperf import MissingExtra

    from aiperf_gpu.config import MISSING_PACKAGE, from_options

    gpu = from_options(config.plugin_options)
    if gpu is not None and gpu.nvml_requested:
        try:
            import pynvml  # noqa: F401
        except ImportError:
            raise MissingExtra(MISSING_PACKAGE) from None


@hookimpl
def aiperf_samplers(config: ProfileConfig, run: RunContext) -> Sequence[Sampler] | None:
    from aiperf_gpu.config import from_options

    gpu = from_options(config.plugin_options)
    if gpu is None:
        return None
    from aiperf_gpu.sampler import create_sampler

    return [create_sampler(gpu, run, config.ca_bundle)]
