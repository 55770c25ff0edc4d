"""Run directories written to the documented format (docs/run-directory.md), for unit tests
that must not depend on the engine. Tests against real runs live in test_plot_real_runs.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

T0_NS = 1_764_290_000_000_000_000
PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)


def _stats(values: list[float], unit: str) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    out: dict[str, Any] = {
        "unit": unit,
        "avg": float(arr.mean()),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "std": float(arr.std()),
    }
    out.update({f"p{q}": float(np.percentile(arr, q)) for q in PERCENTILES})
    out["count"] = int(arr.size)
    return out


def write_run(
    path: Path,
    *,
    concurrency: int = 4,
    requests: int = 40,
    streaming: bool = True,
    errors: int = 0,
    warmup: int = 2,
    gpus: int = 0,
    server: bool = False,
    goodput: dict[str, float] | None = None,
    seed: int = 0,
) -> Path:
    """A closed-loop run: ``concurrency`` slots send back to back; every chunk carries one
    token. Writes the jsonl, the summary and, with ``gpus``, GPU samples every 100 ms."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    slot_free = [T0_NS] * concurrency
    rows = []
    total = warmup + requests
    for index in range(total):
        slot = int(np.argmin(slot_free))
        start = slot_free[slot] + int(rng.integers(100_000, 2_000_000))
        phase = "warmup" if index < warmup else "profile"
        failed = index >= total - errors
        ttft_ms = float(rng.uniform(20, 60)) * (1 + concurrency / 8)
        osl = int(rng.integers(20, 40))
        gaps_ms = [float(g) for g in rng.uniform(5, 15, osl - 1) * (1 + concurrency / 16)]
        latency_ms = ttft_ms + sum(gaps_ms)
        if failed:
            latency_ms = float(rng.uniform(1, 5))
            metrics: dict[str, Any] = {"request_latency": latency_ms, "input_sequence_length": 128}
            error = {"type": "500", "message": "HTTP 500: injected"}
        else:
            itl = (latency_ms - ttft_ms) / (osl - 1)
            metrics = {
                "request_latency": latency_ms,
                "input_sequence_length": 128,
                "output_sequence_length": osl,
            }
            if streaming:
                metrics.update(
                    time_to_first_token=ttft_ms,
                    inter_token_latency=itl,
                    output_token_throughput_per_user=1e3 / itl,
                    inter_chunk_latency=gaps_ms,
                )
            error = None
        end = start + int(latency_ms * 1e6)
        slot_free[slot] = end
        rows.append(
            {
                "request_index": index,
                "phase": phase,
                "worker": slot,
                "start_time_ns": start,
                "end_time_ns": end,
                "intended_start_time_ns": None,
                "send_lag_ms": None,
                "status_code": 500 if failed else 200,
                "error": error,
                "response_model": "mock",
                "metrics": metrics,
            }
        )
    (path / "profile_export.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    measured = [r for r in rows if r["phase"] == "profile"]
    ok = [r for r in measured if r["error"] is None]
    duration_s = (
        max(r["end_time_ns"] for r in measured) - min(r["start_time_ns"] for r in measured)
    ) / 1e9
    summary_metrics: dict[str, Any] = {}
    for tag, unit in (
        ("time_to_first_token", "ms"),
        ("inter_token_latency", "ms"),
        ("request_latency", "ms"),
        ("output_token_throughput_per_user", "tokens/s"),
        ("output_sequence_length", "tokens"),
    ):
        # Per-request statistics cover successful requests only, as the core's do.
        values = [r["metrics"][tag] for r in ok if tag in r["metrics"]]
        if values:
            summary_metrics[tag] = _stats(values, unit)
    osl_sum = sum(r["metrics"]["output_sequence_length"] for r in ok)
    run_values = {
        "benchmark_duration": (duration_s, "s"),
        "request_throughput": (len(ok) / duration_s, "requests/s"),
        "output_token_throughput": (osl_sum / duration_s, "tokens/s"),
    }
    if goodput:
        good = [r for r in ok if all(r["metrics"].get(t, 0) <= v for t, v in goodput.items())]
        run_values["goodput"] = (len(good) / duration_s, "requests/s")
    for tag, (value, unit) in run_values.items():
        summary_metrics[tag] = {"unit": unit, "avg": value, "count": 1}
    load = f"concurrency{concurrency}"
    summary = {
        "schema_version": 1,
        "status": "FINISHED",
        "model": "mock",
        "endpoint_type": "chat",
        "load_setting": load,
        "metrics": summary_metrics,
        "input_config": {"model": "mock", "concurrency": concurrency, "goodput": goodput or {}},
    }
    (path / "profile_export_aiperf.json").write_text(json.dumps(summary))
    if gpus:
        first = min(r["start_time_ns"] for r in rows)
        last = max(r["end_time_ns"] for r in rows)
        samples = []
        for wall in range(first, last, 100_000_000):
            for gpu in range(gpus):
                samples.append(
                    {
                        "wall_ns": wall,
                        "gpu_index": gpu,
                        "uuid": f"GPU-{gpu:04d}",
                        "host": "node0",
                        "name": "Mock GPU",
                        "gpu_utilization": float(rng.uniform(0.5, 1.0)),
                        "power_watts": float(rng.uniform(200, 400)),
                        "memory_used_bytes": 4e10,
                        "phase": "profile",
                    }
                )
        (path / "gpu_telemetry_export.jsonl").write_text(
            "".join(json.dumps(s) + "\n" for s in samples)
        )
    if server:
        # What aiperf-server-metrics writes: one line per scrape, common names under "common".
        first = min(r["start_time_ns"] for r in rows)
        last = max(r["end_time_ns"] for r in rows)
        lines = []
        for wall in range(first, last, 500_000_000):
            common = [
                {"name": "kv_cache_usage", "labels": {"model_name": "mock"},
                 "value": float(rng.uniform(0.2, 0.8))},
                {"name": "requests_running", "labels": {"model_name": "mock"},
                 "value": float(concurrency)},
                {"name": "requests_waiting", "labels": {"model_name": "mock"}, "value": 0.0},
            ]  # fmt: skip
            lines.append({"wall_ns": wall, "phase": "profile", "source": "http://mock/metrics",
                          "common": common, "values": {}, "histograms": {}})  # fmt: skip
        (path / "server_metrics_export.jsonl").write_text(
            "".join(json.dumps(line) + "\n" for line in lines)
        )
    return path
