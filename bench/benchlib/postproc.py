"""Post-processing cost: feed N synthetic request records to aiperf's aggregator, time the summary.

    python postproc.py --records 1000000      # prints one JSON object

The records look like the instant-server capacity scenario's (16 output tokens, so 15
per-chunk gaps per request) with timing values spread like a real run's. Generating them is
not timed; ``ingest_s`` is the time spent in ``Aggregator.add`` (what a run pays per request
as it goes), ``summary_s`` the time of ``request_metrics()`` plus ``run_metrics()`` (what it
pays once at the end).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np

OUTPUT_TOKENS = 16
INPUT_TOKENS = 128
NS_PER_MS = 1_000_000
START_NS = 1_000_000_000
POOL = 100_000


def synthetic(count: int, seed: int = 0) -> list[Any]:
    """``count`` distinct successful streaming requests (aiperf.RequestMetrics)."""
    from aiperf import Phase, RequestMetrics

    rng = np.random.default_rng(seed)
    ttft = rng.gamma(20.0, 2.5, count) * NS_PER_MS
    gaps = (rng.gamma(50.0, 0.2, (count, OUTPUT_TOKENS - 1)) * NS_PER_MS).astype(np.int64)
    out = []
    for i in range(count):
        request_gaps = tuple(int(g) for g in gaps[i])
        decode = sum(request_gaps)
        ttft_ns = float(ttft[i])
        latency = ttft_ns + decode
        itl = decode / (OUTPUT_TOKENS - 1)
        begin = START_NS + i * 1_000_000
        out.append(
            RequestMetrics(
                index=i,
                phase=Phase.PROFILE,
                ok=True,
                error=None,
                start_ns=begin,
                end_ns=begin + int(latency),
                values={
                    "input_sequence_length": float(INPUT_TOKENS),
                    "request_latency": latency,
                    "output_sequence_length": float(OUTPUT_TOKENS),
                    "time_to_first_token": ttft_ns,
                    "time_to_second_token": float(request_gaps[0]),
                    "inter_token_latency": itl,
                    "output_token_throughput_per_user": 1e9 / itl,
                },
                inter_chunk_latency_ns=request_gaps,
            )
        )
    return out


def run(records: int, seed: int = 0) -> dict[str, float]:
    from aiperf._stats import Aggregator

    # Building a million attrs objects would take longer than what is measured; the
    # aggregator only reads them, so a pool of distinct ones is fed over and over.
    pool = synthetic(min(records, POOL), seed)
    aggregator = Aggregator()
    done = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while done < records:
        for item in pool[: records - done]:
            aggregator.add(item)
        done += min(len(pool), records - done)
    wall1, cpu1 = time.perf_counter(), time.process_time()
    per_request = aggregator.request_metrics()
    wall2 = time.perf_counter()
    per_run = aggregator.run_metrics()
    wall3, cpu3 = time.perf_counter(), time.process_time()
    if per_run["request_count"].avg != records:
        raise SystemExit(f"aggregator counted {per_run['request_count'].avg} of {records} records")
    if per_request["time_to_first_token"].count != records:
        raise SystemExit("aggregator lost per-request values")
    return {
        "records": records,
        "ingest_s": wall1 - wall0,
        "ingest_cpu_s": cpu1 - cpu0,
        "request_metrics_s": wall2 - wall1,
        "run_metrics_s": wall3 - wall2,
        "summary_s": wall3 - wall1,
        "summary_cpu_s": cpu3 - cpu1,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.records < 1:
        parser.error("--records: must be > 0")
    print(json.dumps(run(args.records, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
