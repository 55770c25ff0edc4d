"""The flags of aiperf-ray: values checked before anything connects."""

from __future__ import annotations

import pytest
from aiperf import UsageError
from aiperf_ray.config import from_options


@pytest.mark.parametrize(
    ("given", "address"),
    [("auto", "auto"), ("ray://head:10001", "ray://head:10001"), ("10.0.0.5:6379", "10.0.0.5:6379"),
     (" auto ", "auto"), ("[::1]:6379", "[::1]:6379")],
)  # fmt: skip
def test_addresses_accepted(given: str, address: str) -> None:
    assert address == from_options({"ray_address": given}).address


@pytest.mark.parametrize("given", ["", "head", "http://head:8265", "ray://head", "head:0", "head:99999", "a b:1"])
def test_bad_addresses_are_one_line(given: str) -> None:
    with pytest.raises(UsageError, match=r"^--ray-address: expected auto, ray://host:10001"):
        from_options({"ray_address": given})


def test_workers_per_node_needs_an_address() -> None:
    with pytest.raises(UsageError, match=r"^--ray-workers-per-node: needs --ray-address$"):
        from_options({"ray_workers_per_node": "2"})


@pytest.mark.parametrize("given", ["0", "-1", "two", "2000"])
def test_bad_workers_per_node(given: str) -> None:
    with pytest.raises(UsageError, match=r"^--ray-workers-per-node: "):
        from_options({"ray_address": "auto", "ray_workers_per_node": given})


def test_off_by_default() -> None:
    options = from_options({})
    assert (None, 1) == (options.address, options.per_node)
