"""Values for aiperf-mlflow's tests: a run, its events and its result, built from the public
attrs classes (no engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiperf import (
    HardwareSample,
    MetricStats,
    Phase,
    ProfileConfig,
    RequestDone,
    RequestMetrics,
    RequestRecord,
    RunContext,
    RunResult,
    RunStatus,
    testing,
)

#: planted in every secret slot of the test config; must never appear in MLflow or a file.
CANARY = "sk-canary-7f3a9c"
ANCHOR_WALL_NS = 1_700_000_000_000_000_000
ANCHOR_PERF_NS = 5_000_000_000


def make_config(**overrides: Any) -> ProfileConfig:
    values: dict[str, Any] = {
        "model": "my-model",
        "url": f"http://user:{CANARY}@127.0.0.1:8000",
        "api_key": CANARY,
        # A credential header besides the key (Authorization would clash with --api-key).
        "headers": (("X-Auth-Token", f"Bearer {CANARY}"), ("X-Trace", "visible")),
        "streaming": True,
        "concurrency": 4,
        "request_count": 64,
        "plugin_options": {},
    }
    values.update(overrides)
    return ProfileConfig(**values)


def make_run(run_dir: Path, config: ProfileConfig | None = None, **overrides: Any) -> RunContext:
    """The kit's run (address, port and load setting from the config), with the values these
    tests assert on."""
    values: dict[str, Any] = {
        "benchmark_id": "b0b0b0",
        "provider": "vllm",
        "anchor_wall_ns": ANCHOR_WALL_NS,
        "anchor_perf_ns": ANCHOR_PERF_NS,
        **overrides,
    }
    return testing.make_run(run_dir, config=config or make_config(), **values)


def request_done(
    index: int,
    *,
    phase: Phase = Phase.PROFILE,
    latency_ms: float = 100.0,
    ttft_ms: float | None = 20.0,
    gaps_ms: tuple[float, ...] = (5.0, 7.0),
    isl: float = 128,
    osl: float | None = 16,
    ok: bool = True,
) -> RequestDone:
    start = ANCHOR_PERF_NS + index * 1_000_000_000
    end = start + int(latency_ms * 1e6)
    values = {"request_latency": latency_ms * 1e6, "input_sequence_length": isl}
    if ttft_ms is not None:
        values["time_to_first_token"] = ttft_ms * 1e6
    if osl is not None:
        values["output_sequence_length"] = osl
    metrics = RequestMetrics(
        index=index,
        phase=phase,
        ok=ok,
        error=None,
        start_ns=start,
        end_ns=end,
        values=values,
        inter_chunk_latency_ns=tuple(int(g * 1e6) for g in gaps_ms),
    )
    return RequestDone(metrics=metrics, record=RequestRecord(index=index, phase=phase))


def gpu_sample(gpu: int = 0, **fields: float | None) -> HardwareSample:
    values: dict[str, Any] = {
        "gpu_utilization": 0.5,
        "memory_used_bytes": 1e9,
        "memory_total_bytes": 8e9,
        "power_watts": 250.0,
        "energy_joules": 1000.0,
        "temperature_celsius": 60.0,
        "sm_clock_mhz": 1500.0,
    }
    values.update(fields)
    return HardwareSample(
        source="test",
        host="host-a",
        gpu_index=gpu,
        uuid=f"GPU-{gpu}",
        name="Test GPU",
        wall_ns=ANCHOR_WALL_NS + 2_000_000_000,
        phase=Phase.PROFILE,
        **values,
    )


def make_result(status: RunStatus = RunStatus.FINISHED) -> RunResult:
    ttft = MetricStats(
        tag="time_to_first_token",
        header="Time to First Token",
        unit="ms",
        count=64,
        avg=20.5,
        min=19.0,
        max=25.0,
        std=1.0,
        percentiles={"p50": 20.0, "p99": 24.0},
    )
    throughput = MetricStats(
        tag="request_throughput", header="Request Throughput", unit="requests/s", count=1, avg=3.5
    )
    return RunResult(
        status=status,
        was_cancelled=status is RunStatus.KILLED,
        metrics={"time_to_first_token": ttft},
        run_metrics={"request_throughput": throughput},
        errors=(),
        start_wall_ns=ANCHOR_WALL_NS,
        end_wall_ns=ANCHOR_WALL_NS + 10_000_000_000,
    )
