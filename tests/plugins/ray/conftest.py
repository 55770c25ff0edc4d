"""The Ray plugin's tests need Ray and aiperf-ray installed (``nox -s ray``); the ``tests``
session installs neither, so there this directory is not collected at all (not skipped:
nothing here runs without Ray, and nothing pretends to pass)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


if not (_installed("ray") and _installed("aiperf_ray")):
    collect_ignore_glob = ["test_*.py"]

#: object store per node: small, the tests move little data.
STORE_BYTES = 80 * 1024 * 1024


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """A Ray cluster of three nodes on this machine: a head with no CPU (nothing is placed
    there) and two nodes of one CPU each, where the load actors go. Always shut down."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 0, "object_store_memory": STORE_BYTES, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=STORE_BYTES)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
