"""Trace replay fidelity: a 10,000-line trace sent at its recorded times, checked at the server.

    nox -s replay                                   # writes bench/replay_results.json
    nox -s replay -- --lines 2000 --output /tmp/r.json
    python bench/replay.py --help                   # the same, with aiperf installed

The trace is a Mooncake trace made here (seeded): arrivals of a Poisson process whose rate
swings between ``--base-rate`` and ``--peak-rate`` requests per second, timestamps in whole
milliseconds as real traces have them (so several requests often share one), prompts of
shared and private hash blocks. ``aiperf profile`` replays it against the built-in mock
server on 127.0.0.1, which stamps each request's first byte with the kernel's receive time.
Then:

- the schedule lag aiperf exports (first byte sent minus scheduled time; p50, p99, max) is
  compared with the lag at the server (kernel arrival time minus scheduled time);
- the requests must have reached the server in file order (the prompt lengths identify the
  lines), and aiperf's own send times must be in file order;
- the goal is a lag p99 of at most 2 ms (``aiperf._schedule.LAG_P99_BOUND_MS``).

The figures, the machine and its load go to ``--output`` (JSON). The exit code is 0 when the
run and the checks of order and agreement held (the lag goal met or not), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
GUARD_S = 900


def make_trace(lines: int, base_rate: float, peak_rate: float, period_s: float, seed: int) -> list[dict[str, Any]]:
    """``lines`` Mooncake lines; the rate follows base + (peak - base) * sin^2(pi t / period)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    t = 0.0
    roots = 8  # shared "system prompt" blocks, as production traces have
    for i in range(lines):
        rate = base_rate + (peak_rate - base_rate) * math.sin(math.pi * t / period_s) ** 2
        t += rng.expovariate(rate)
        blocks = rng.randint(2, 4)
        private = [100_000 + i * 8 + k for k in range(blocks - 1)]
        out.append({
            "timestamp": int(t * 1000),
            "input_length": 64 * (blocks - 1) + 1 + (i % 63),
            "output_length": 4,
            "hash_ids": [i % roots, *private],
        })  # fmt: skip
    return out


def peak_rates(stamps_ms: list[int]) -> dict[str, float]:
    stamps = np.asarray(stamps_ms, dtype=np.float64)
    out = {}
    for window in (1.0, 0.1):
        counts = np.bincount(((stamps - stamps.min()) / 1e3 / window).astype(np.int64))
        out[f"peak_req_per_s_{window:g}s_windows"] = float(counts.max() / window)
    out["mean_req_per_s"] = len(stamps) / ((stamps.max() - stamps.min()) / 1e3)
    same_ms = len(stamps) - len(np.unique(stamps))
    out["requests_sharing_a_millisecond"] = int(same_ms)
    return out


def stats(values: np.ndarray) -> dict[str, float]:
    return {
        "p50": float(np.percentile(values, 50)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
        "avg": float(values.mean()),
    }


def timer_floor(count: int = 3000, period_s: float = 0.002) -> dict[str, float]:
    """How late a bare trio timer wakes on this machine now (sleeps to absolute deadlines,
    nothing else running): the floor under any schedule's lag here."""
    import trio

    late: list[float] = []

    async def probe() -> None:
        start = trio.current_time()
        for k in range(1, count + 1):
            deadline = start + k * period_s
            await trio.sleep_until(deadline)
            late.append((trio.current_time() - deadline) * 1e3)

    trio.run(probe)
    return stats(np.array(late))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from aiperf._schedule import LAG_P99_BOUND_MS
    from aiperf.testing import MockServer

    lines = make_trace(args.lines, args.base_rate, args.peak_rate, args.period, args.seed)
    work = Path(tempfile.mkdtemp(prefix="aiperf-replay-"))
    trace = work / "trace.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    floor = timer_floor() if args.floor else None
    load_before = os.getloadavg()
    with MockServer(ttft_ms=args.ttft_ms, prefix_block_size=16) as server:
        command = [
            sys.executable, "-m", "aiperf", "profile", "--url", server.url, "-m", "mock-model",
            "--streaming", "--input-file", str(trace), "--isl-block-size", "64",
            "--artifact-dir", str(work / "run"), "--no-progress", "--no-gpu-telemetry",
            "--no-server-metrics", "--random-seed", str(args.seed),
        ]  # fmt: skip
        started = time.monotonic()
        process = subprocess.run(command, capture_output=True, text=True, timeout=GUARD_S, check=False)
        wall = time.monotonic() - started
        snapshot = server.stats(raw=True)
    seen = sorted(snapshot["raw"]["requests"], key=lambda r: (r["received_at"], r["id"]))
    load_after = os.getloadavg()
    if process.returncode != 0:
        raise SystemExit(f"aiperf profile failed ({process.returncode}), run in {work}:\n{process.stderr[-3000:]}")
    summary = json.loads((work / "run" / "profile_export_aiperf.json").read_text())
    records = sorted(
        (json.loads(text) for text in (work / "run" / "profile_export.jsonl").read_text().splitlines() if text),
        key=lambda r: r["request_index"],
    )
    shutil.rmtree(work, ignore_errors=True)
    section = summary["fixed_schedule"]
    intended = [r["intended_start_time_ns"] for r in records]
    exported = np.array([r["send_lag_ms"] for r in records])
    at_server = np.array([r["received_at"] * 1e3 - ns / 1e6 for r, ns in zip(seen, intended)])
    gap = exported - at_server
    starts = [r["start_time_ns"] for r in records]
    wanted = [ln["input_length"] for ln in lines]
    arrived = [r["prompt_tokens"] for r in seen]
    mismatched = [i for i, (a, b) in enumerate(zip(wanted, arrived)) if a != b]
    # where the server's arrival order differs from the file's: how far apart the arrivals
    # (kernel stamps) and aiperf's sends were there
    mismatches = [
        {
            "position": i,
            "arrival_gap_us": round((seen[i]["received_at"] - seen[i - 1]["received_at"]) * 1e6, 1) if i else None,
            "send_gap_us": round((records[i]["start_time_ns"] - records[i - 1]["start_time_ns"]) / 1e3, 1) if i else None,
        }
        for i in mismatched[:10]
    ]
    checks = {
        "every request answered": len(records) == len(seen) == len(lines)
        and all(r["error"] is None for r in records),
        "server received them in file order": not mismatched,
        "aiperf sent them in file order": starts == sorted(starts) and section["order_preserved"],
        "exported lag p50/p99/max within 1 ms of the server's": all(
            abs(section["lag_ms"][k] - stats(at_server)[k]) <= 1.0 for k in ("p50", "p99", "max")
        ),
    }
    goal = section["lag_ms"]["p99"] <= LAG_P99_BOUND_MS
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "nice": os.nice(0) if hasattr(os, "nice") else None,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
        },
        "trace": {"lines": len(lines), "seed": args.seed, **peak_rates([ln["timestamp"] for ln in lines])},
        "run_wall_s": round(wall, 1),
        "timer_floor_ms": floor,
        "lag_ms_exported": section["lag_ms"],
        "lag_ms_at_server": stats(at_server),
        "exported_minus_server_ms": {**stats(gap), "min": float(gap.min())},
        "goal": {"lag_p99_ms_at_most": LAG_P99_BOUND_MS, "met": goal},
        "checks": checks,
        "order_mismatches_at_server": {"count": len(mismatched), "first": mismatches},
        "server_prefix_cache": snapshot["prefix_cache"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/replay.py", description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--base-rate", type=float, default=150.0, help="req/s between the peaks (default 150)")
    parser.add_argument("--peak-rate", type=float, default=650.0, help="req/s at the peaks (default 650)")
    parser.add_argument("--period", type=float, default=8.0, help="seconds from one peak to the next (default 8)")
    parser.add_argument("--ttft-ms", type=float, default=2.0, help="the mock server's time to first token")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false",
        help="skip measuring a bare timer's lateness first (6 s)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "replay_results.json")
    args = parser.parse_args(argv)
    result = run(args)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    lag, server, floor = result["lag_ms_exported"], result["lag_ms_at_server"], result["timer_floor_ms"]
    trace = result["trace"]
    lines = [
        f"{trace['lines']} requests, peak {trace['peak_req_per_s_1s_windows']:.0f} req/s (1 s windows), "
        f"{trace['peak_req_per_s_0.1s_windows']:.0f} req/s (100 ms windows)",
        f"schedule lag exported:  p50 {lag['p50']:.3f}  p99 {lag['p99']:.3f}  max {lag['max']:.3f} ms",
        f"schedule lag at server: p50 {server['p50']:.3f}  p99 {server['p99']:.3f}  max {server['max']:.3f} ms",
    ]
    if floor is not None:
        lines.append(
            f"a bare trio timer here: p50 {floor['p50']:.3f}  p99 {floor['p99']:.3f}  max {floor['max']:.3f} ms late"
        )
    lines.append(
        f"goal p99 <= {result['goal']['lag_p99_ms_at_most']:g} ms: {'met' if result['goal']['met'] else 'NOT met'}; "
        f"load average {result['machine']['load_average_before']} -> {result['machine']['load_average_after']}"
    )
    print("\n".join(lines))
    for name, ok in result["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(f"wrote {args.output}")
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
