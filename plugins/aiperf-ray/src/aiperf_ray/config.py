"""The flags of aiperf-ray, checked once and frozen. Nothing here imports Ray."""

from __future__ import annotations

from typing import Any

import attrs
from aiperf import UsageError, given_options, option, read_options

#: dest names of the flags this plugin adds to ``aiperf profile``.
ADDRESS = "ray_address"
PER_NODE = "ray_workers_per_node"

_EXPECTED = "expected auto, ray://host:10001 (Ray Client) or host:6379 (the head's GCS)"


@attrs.frozen(kw_only=True)
class RayOptions:
    """``--ray-address``, ``--ray-workers-per-node`` (flag, ``[plugins.ray]``, default)."""

    address: str | None = option(
        "--ray-address",
        dest=ADDRESS,
        default=None,
        metavar="ADDRESS",
        parse=lambda value: _address(value),
        help=(
            "run the load processes as Ray actors spread over this cluster's nodes: auto (the "
            "cluster this machine is part of), ray://head:10001 or head:6379; the summary, the "
            "JSONL and the exports stay here"
        ),
    )
    workers_per_node: int | None = option(
        "--ray-workers-per-node",
        dest=PER_NODE,
        default=None,
        metavar="K",
        parse=lambda value: _per_node(value),
        help="load actors per node when --workers is not given (default 1)",
    )

    @property
    def per_node(self) -> int:
        return self.workers_per_node or 1


def check_options(options: RayOptions, given: frozenset[str]) -> None:
    if options.address is None and options.workers_per_node is not None:
        raise UsageError("--ray-workers-per-node: needs --ray-address")


def from_options(options: Any) -> RayOptions:
    """The checked settings of a config's ``plugin_options``."""
    values = read_options(RayOptions, options)
    check_options(values, given_options(RayOptions, options))
    return values


def _address(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise UsageError(f"--ray-address: {_EXPECTED} (got {value!r})")
    text = value.strip()
    if text == "auto":
        return text
    rest = text.removeprefix("ray://")
    if "://" in rest:
        raise UsageError(f"--ray-address: {_EXPECTED} (got {value!r})")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray-address: {_EXPECTED} (got {value!r})")
    return text


def _per_node(value: Any) -> int | None:
    if value is None:
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"--ray-workers-per-node: expected a whole number >= 1 (got {value!r})") from None
    if count < 1 or count > 1024:
        raise UsageError(f"--ray-workers-per-node: must be between 1 and 1024 (got {value})")
    return count
