"""What running the load as Ray actors costs against local worker processes, same load, same
machine: request throughput, TTFT p50 against the mock server's own truth, and the wall time
of the whole ``aiperf profile`` command (start-up included).

    python bench/ray_overhead.py                      # needs aiperf-ray installed (nox -s ray's venv)
    python bench/ray_overhead.py --rounds 5 --count 2000 --concurrency 16

A Ray cluster of a head (no CPU) and two one-CPU nodes is started on this machine and shut
down at the end; each round runs ``--workers 2`` and then ``--ray-address`` with two actors,
one per node, against the same mock server. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiperf.testing import MockServer


def run(url: str, out: Path, extra: list[str], count: int, concurrency: int) -> tuple[float, dict[str, Any]]:
    argv = [
        sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model", "--streaming",
        "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "32",
        "--concurrency", str(concurrency), "--request-count", str(count),
        "--artifact-dir", str(out), "--no-progress", "--random-seed", "1", *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"aiperf failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, json.loads((out / "profile_export_aiperf.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ttft-ms", type=float, default=20.0)
    parser.add_argument("--itl-ms", type=float, default=2.0)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    store = 80 * 1024 * 1024
    cluster = Cluster(
        initialize_head=True, connect=False,
        head_node_args={"num_cpus": 0, "object_store_memory": store, "include_dashboard": False},
    )  # fmt: skip
    rows: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        modes = {"local": ["--workers", "2"], "ray": ["--ray-address", cluster.address]}
        with MockServer(ttft_ms=args.ttft_ms, itl_ms=args.itl_ms) as server, tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                for mode, extra in modes.items():
                    server.reset_stats()
                    wall, summary = run(server.url, Path(tmp) / f"{mode}{round_}", extra, args.count, args.concurrency)
                    truth = server.stats()
                    metrics = summary["metrics"]
                    rows[mode].append({
                        "wall_s": wall,
                        "requests_per_s": metrics["request_throughput"]["avg"],
                        "ttft_p50_ms": metrics["time_to_first_token"]["p50"],
                        "ttft_p50_error_ms": metrics["time_to_first_token"]["p50"] - truth["ttft_ms"]["p50"],
                        "ttft_p99_error_ms": metrics["time_to_first_token"]["p99"] - truth["ttft_ms"]["p99"],
                    })  # fmt: skip
    finally:
        cluster.shutdown()
    report: dict[str, Any] = {
        "load": {"concurrency": args.concurrency, "requests": args.count, "rounds": args.rounds,
                 "ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms},
        "median": {mode: {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
                   for mode, runs in rows.items()},
        "runs": rows,
    }  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
