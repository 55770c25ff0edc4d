"""Run and sweep directories for ``aiperf compare`` tests, written from synthetic per-request
samples shaped like the mock server's (a fixed delay plus scheduling jitter), and a helper to
build a sweep directory out of real run directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from support.cli_run import child_env

OUTPUT_TOKENS = 8


def synthetic_metrics(rng: np.random.Generator, n: int, *, ttft_ms: float = 50.0,
                      itl_ms: float = 2.0) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-request metrics (display units) of ``n`` streamed requests: TTFT and ITL are the
    server's delays plus right-skewed jitter; the other metrics follow from them."""
    ttft = ttft_ms + rng.gamma(2.0, 1.2, n)
    itl = itl_ms + rng.gamma(3.0, 0.05, n)
    second = itl + rng.gamma(2.0, 0.1, n)
    latency = ttft + (OUTPUT_TOKENS - 1) * itl + rng.normal(0.0, 0.3, n)
    return {
        "time_to_first_token": ttft,
        "time_to_second_token": second,
        "time_to_first_output_token": ttft,
        "request_latency": latency,
        "request_send_time": rng.gamma(2.0, 0.02, n),
        "inter_token_latency": itl,
        "output_token_throughput_per_user": 1000.0 / itl,
        "input_sequence_length": np.full(n, 16.0),
        "output_sequence_length": np.full(n, float(OUTPUT_TOKENS)),
    }


def write_run(run_dir: Path, metrics: Mapping[str, np.ndarray], *, failed: int = 0,
              warmup: int = 0, benchmark_id: str = "b0", concurrency: int = 4,
              shuffle: int | None = None) -> Path:  # fmt: skip
    """A run directory holding ``profile_export.jsonl`` (and a minimal summary) with one line per
    request; ``warmup`` extra warm-up lines and ``failed`` failed lines, which a comparison
    must leave out, carry absurd values. Requests start ``concurrency`` at a time, one
    request latency apart; ``shuffle``: the lines in an order shuffled with this seed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(metrics.values())))
    latency = metrics.get("request_latency", np.full(n, 100.0))
    step_ns = int(float(np.nanmean(latency)) * 1e6)
    lines = []
    for i in range(warmup):
        lines.append({"request_index": i, "phase": "warmup", "error": None,
                      "metrics": {k: 1e6 for k in metrics}})  # fmt: skip
    for i in range(n):
        values = {k: float(v[i]) for k, v in metrics.items() if not np.isnan(v[i])}
        values["inter_chunk_latency"] = [2.0] * (OUTPUT_TOKENS - 1)
        start = 1_700_000_000_000_000_000 + (i // concurrency) * step_ns
        end = start + int(float(latency[i]) * 1e6)
        lines.append({"request_index": warmup + i, "phase": "profile", "error": None,
                      "start_time_ns": start, "end_time_ns": end, "metrics": values})  # fmt: skip
    for i in range(failed):
        lines.append({"request_index": warmup + n + i, "phase": "profile",
                      "error": {"type": "500", "message": "HTTP 500"},
                      "metrics": {k: 1e6 for k in metrics}})  # fmt: skip
    if shuffle is not None:
        order = np.random.default_rng(shuffle).permutation(len(lines))
        lines = [lines[i] for i in order]
    (run_dir / "profile_export.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run_dir / "profile_export_aiperf.json").write_text(json.dumps({"benchmark_id": benchmark_id}))
    return run_dir


def write_sweep(sweep_dir: Path, points: Sequence[tuple[dict[str, Any], Path | None, str]]) -> Path:
    """A sweep directory: ``sweep_summary.json`` and each point's run directory, copied in
    (``None``: a point that failed before writing one)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (values, source, status) in enumerate(points):
        name = "_".join(f"{k}_{v}" for k, v in values.items())
        if source is not None:
            shutil.copytree(source, sweep_dir / name)
        entries.append({"index": index, "values": values, "run_dir": name, "status": status})
    (sweep_dir / "sweep_summary.json").write_text(json.dumps({"kind": "sweep", "points": entries}))
    return sweep_dir


def compare(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``aiperf compare ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "aiperf", "compare", *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, env=child_env(env), check=False,
    )  # fmt: skip


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single line a bad input gets (no traceback, nothing on stdout)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return lines[0]
