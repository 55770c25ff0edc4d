"""Hook implementations of aiperf-ray. Imports nothing heavy: ``aiperf --help`` loads this
module, and Ray itself is imported only by a run given ``--ray-address``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiperf import hookimpl

if TYPE_CHECKING:
    from aiperf import PluginOptions, ProfileConfig, Prompt


@hookimpl
def aiperf_register_options(register: Callable[[PluginOptions], None]) -> None:
    from aiperf import PluginOptions

    from aiperf_ray import config as c

    register(
        PluginOptions(
            name="ray",
            options=c.RayOptions,
            title="Ray cluster (aiperf-ray)",
            check=c.check_options,
        )
    )


@hookimpl
def aiperf_configure(config: ProfileConfig) -> None:
    from aiperf_ray.config import from_options

    from_options(config.plugin_options)


@hookimpl
def aiperf_remote_load(
    config: ProfileConfig,
    prompts: Sequence[Prompt],
    bodies: Sequence[bytes],
    conversations: Any,
    yield_cpu: bool,
) -> Any:
    from aiperf_ray.config import from_options

    options = from_options(config.plugin_options)
    if options.address is None:
        return None
    from aiperf_ray.pool import make_ray_pool

    return make_ray_pool(config, options, prompts, bodies, conversations)
