"""Server metrics (aiperf-server-metrics) as live.server.* MLflow points."""

from __future__ import annotations

from aiperf import Phase, ServerMetricSample
from aiperf_mlflow.points import endpoint_part, server_point


def sample(
    name: str, labels: tuple[tuple[str, str], ...] = (), source: str = "http://server/metrics"
) -> ServerMetricSample:
    return ServerMetricSample(
        source=source, name=name, value=0.5, unit="ratio",
        wall_ns=2_000_000_123, phase=Phase.PROFILE, labels=labels,
    )  # fmt: skip


def test_server_point_key_value_and_time() -> None:
    """live.server.<name>; the model label is left out of the key, others are kept."""
    point = server_point(sample("kv_cache_usage", (("model_name", "m"),)), 3)
    assert ("live.server.kv_cache_usage", 0.5, 2000, 3) == tuple(point)


def test_server_point_labels_keep_series_apart() -> None:
    point = server_point(sample("server_ttft.p50", (("engine", "1"), ("model_name", "m/x"))), 0)
    assert "live.server.server_ttft.p50.engine_1" == point.key


def test_server_point_other_endpoint_named_by_host_and_port() -> None:
    """A second server's series carries its host and port, before its labels."""
    point = server_point(
        sample("requests_running", (("engine", "0"),), "http://node-2:8001/metrics"),
        0,
        qualify_source=True,
    )
    assert "live.server.requests_running.node-2_8001.engine_0" == point.key


def test_server_endpoint_part_never_holds_a_secret() -> None:
    """The endpoint in a key: host, port and a path other than /metrics; no query (a token
    may be there), no user or password."""
    assert "gw_8443_model-a_v1" == endpoint_part("https://gw:8443/model-a/v1/metrics?***")
    assert "10.0.0.2" == endpoint_part("http://10.0.0.2/metrics")
    key = endpoint_part("http://user:hunter2@node:9000/metrics?token=abc")
    assert "node_9000" == key
