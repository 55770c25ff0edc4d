"""Live events as MLflow metric points: ``live.*`` keys in seconds and tokens.

Pure functions of the events, no MLflow import: the sink calls them on the trio thread, and the
points go to MLflow later in batches, from a worker thread.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import urlsplit

from aiperf import HardwareSample, Phase, Progress, RequestDone, RunContext, ServerMetricSample

PREFIX = "live."
DURATION = "live.gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK = "live.gen_ai.client.operation.time_to_first_chunk"
TIME_PER_OUTPUT_CHUNK = "live.gen_ai.client.operation.time_per_output_chunk"
TOKEN_USAGE = "live.gen_ai.client.token.usage"
TOKEN_USAGE_INPUT = "live.gen_ai.client.token.usage.input"
TOKEN_USAGE_OUTPUT = "live.gen_ai.client.token.usage.output"
COMPLETED = "live.aiperf.requests.completed"
FAILED = "live.aiperf.requests.failed"
IN_FLIGHT = "live.aiperf.requests.in_flight"
LOOP_LAG = "live.aiperf.client.loop_lag"
SERVER_PREFIX = "live.server."

NS_PER_S = 1e9

#: HardwareSample field -> key (before ``.gpu<N>``); units as the hardware conventions say.
HARDWARE_KEYS = (
    ("gpu_utilization", "live.hw.gpu.utilization"),
    ("memory_used_bytes", "live.hw.gpu.memory.usage"),
    ("memory_total_bytes", "live.hw.gpu.memory.limit"),
    ("power_watts", "live.hw.power"),
    ("energy_joules", "live.hw.energy"),
    ("temperature_celsius", "live.hw.temperature"),
    ("sm_clock_mhz", "live.hw.gpu.clock.sm"),
)


class Point(NamedTuple):
    key: str
    value: float
    timestamp_ms: int
    step: int


def request_points(event: RequestDone, run: RunContext) -> list[Point]:
    """One point per key for a finished request of the measured phase; step is the request's
    index, the timestamp its end on the wall clock."""
    metrics = event.metrics
    if metrics.phase is not Phase.PROFILE:
        return []
    values = metrics.values
    when = run.to_wall_ns(metrics.end_ns) // 1_000_000
    step = metrics.index
    points = []

    def add(key: str, value: float | None) -> None:
        if value is not None:
            points.append(Point(key, float(value), when, step))

    latency = values.get("request_latency")
    add(DURATION, None if latency is None else latency / NS_PER_S)
    ttft = values.get("time_to_first_token")
    add(TIME_TO_FIRST_CHUNK, None if ttft is None else ttft / NS_PER_S)
    gaps = metrics.inter_chunk_latency_ns
    # One scalar per request: the mean gap between its chunks (the OTel histogram gets each gap).
    add(TIME_PER_OUTPUT_CHUNK, sum(gaps) / len(gaps) / NS_PER_S if gaps else None)
    isl = values.get("input_sequence_length")
    osl = values.get("output_sequence_length")
    if isl is not None or osl is not None:
        add(TOKEN_USAGE, (isl or 0.0) + (osl or 0.0))
    add(TOKEN_USAGE_INPUT, isl)
    add(TOKEN_USAGE_OUTPUT, osl)
    return points


def progress_points(event: Progress, wall_ms: int) -> list[Point]:
    if event.phase is not Phase.PROFILE:
        return []
    step = int(event.elapsed_s)
    points = [
        Point(COMPLETED, float(event.completed), wall_ms, step),
        Point(FAILED, float(event.failed), wall_ms, step),
        Point(IN_FLIGHT, float(event.in_flight), wall_ms, step),
    ]
    if event.loop_lag_ms is not None:
        points.append(Point(LOOP_LAG, event.loop_lag_ms / 1e3, wall_ms, step))
    return points


def hardware_points(sample: HardwareSample, step: int, *, qualify_host: bool = False) -> list[Point]:
    """``live.hw.power.gpu0`` and friends; ``step`` counts this GPU's samples.

    With GPUs on several hosts, every host after the first is named in the key
    (``live.hw.power.node-2.gpu0``), so two hosts' gpu0 never share a curve.
    """
    when = sample.wall_ns // 1_000_000
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", sample.host)
    suffix = f".{host}.gpu{sample.gpu_index}" if qualify_host else f".gpu{sample.gpu_index}"
    points = []
    for field, key in HARDWARE_KEYS:
        value = getattr(sample, field)
        if value is not None:
            points.append(Point(key + suffix, float(value), when, step))
    return points


def server_key(sample: ServerMetricSample, *, qualify_source: bool = False) -> str:
    """``live.server.requests_running``; a series with labels besides the model's gets them
    in its key (``live.server.requests_running.engine_1``), so two never share a curve.

    With several metrics endpoints, every endpoint after the first is named in the key by
    its host and port (``live.server.requests_running.node-2_8000``), as GPUs of other
    hosts are: two servers' series never share a curve either.
    """
    parts = [
        re.sub(r"[^A-Za-z0-9_.-]", "_", f"{k}_{v}")
        for k, v in sample.labels
        if k not in ("model", "model_name")
    ]
    where = [endpoint_part(sample.source)] if qualify_source else []
    return SERVER_PREFIX + ".".join([sample.name, *where, *parts])


def endpoint_part(source: str) -> str:
    """``node-2_8000`` for ``http://node-2:8000/metrics``: host, port, and the path where it
    is not plain ``/metrics`` (two servers behind one proxy). Never the userinfo or the query
    (either may hold a secret)."""
    parts = urlsplit(source)
    try:
        port = parts.port
    except ValueError:
        port = None
    where = (parts.hostname or "") + (f":{port}" if port is not None else "")
    path = parts.path.rstrip("/").removesuffix("/metrics")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", where + path)


def server_point(sample: ServerMetricSample, step: int, *, qualify_source: bool = False) -> Point:
    """One value a server reported on its metrics endpoint; ``step`` counts this key's values."""
    key = server_key(sample, qualify_source=qualify_source)
    return Point(key, float(sample.value), sample.wall_ns // 1_000_000, step)
