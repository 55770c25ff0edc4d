"""GPU samples from two hosts never share an MLflow key."""

from __future__ import annotations

from aiperf import HardwareSample
from aiperf_mlflow.points import hardware_points


def sample(host: str, index: int = 0) -> HardwareSample:
    return HardwareSample(
        source="dcgm", host=host, gpu_index=index, uuid=f"GPU-{host}-{index}", name="H100",
        wall_ns=1_000_000_000, phase=None, power_watts=300.0,
    )


def test_first_host_plain_other_hosts_named() -> None:
    """gpu0 of the first host is live.hw.power.gpu0; gpu0 of another host carries its name."""
    assert ["live.hw.power.gpu0"] == [p.key for p in hardware_points(sample("node-1"), 0)]
    named = hardware_points(sample("node-2:9400"), 0, qualify_host=True)
    assert ["live.hw.power.node-2_9400.gpu0"] == [p.key for p in named]
