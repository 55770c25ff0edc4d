"""Hook implementations of aiperf-gpu. Imports nothing heavy: `aiperf --help` loads this module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiperf import hookimpl

if TYPE_CHECKING:
    from aiperf import PluginOptions, ProfileConfig, RunContext, Sampler


@hookimpl
def aiperf_register_options(register: Callable[[PluginOptions], None]) -> None:
    from aiperf import PluginOptions

    from aiperf_gpu import config as c

    register(
        PluginOptions(
            name="gpu", options=c.GpuOptions, title="GPU telemetry (aiperf-gpu)", check=c.check_options
        )
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
