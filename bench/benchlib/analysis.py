"""Reading what a run left behind (the run directory) and what the mock server measured.

Every function here takes plain data (the parsed ``profile_export_aiperf.json``, the lines of
``profile_export.jsonl``, the ``/stats`` document), so it is tested without running anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

SUMMARY_FILE = "profile_export_aiperf.json"
RECORDS_FILE = "profile_export.jsonl"


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / SUMMARY_FILE).read_text())


def iter_records(run_dir: Path) -> Iterator[dict[str, Any]]:
    with (run_dir / RECORDS_FILE).open() as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def metric(summary: Mapping[str, Any], tag: str, stat: str = "avg") -> float:
    """One statistic of one metric from the summary; NaN when the run did not report it."""
    value = summary.get("metrics", {}).get(tag, {}).get(stat)
    return math.nan if value is None else float(value)


def send_lag(summary: Mapping[str, Any], stat: str) -> float:
    lag = (summary.get("client") or {}).get("send_lag") or {}
    value = lag.get(stat)
    return math.nan if value is None else float(value)


def truth(stats: Mapping[str, Any], key: str, stat: str) -> float:
    value = (stats.get(key) or {}).get(stat)
    return math.nan if value is None else float(value)


@attrs.frozen(kw_only=True)
class AccuracyErrors:
    """aiperf's figure minus the server's, in ms (positive: aiperf saw it later than it was)."""

    ttft_p50: float
    ttft_p99: float
    chunk_gap_p99: float
    itl_p50: float


def accuracy_errors(summary: Mapping[str, Any], stats: Mapping[str, Any]) -> AccuracyErrors:
    """Compare a streaming run's timing with the mock server's ``/stats?raw=1``.

    TTFT and per-chunk gaps compare distributions (percentile minus percentile). ITL compares
    like with like: the server's ITL of a request is (last content write − first content
    write) / (completion tokens − 1), exactly aiperf's definition applied to the server's own
    write times.
    """
    server_itl = server_itl_values(stats)
    return AccuracyErrors(
        ttft_p50=metric(summary, "time_to_first_token", "p50") - truth(stats, "ttft_ms", "p50"),
        ttft_p99=metric(summary, "time_to_first_token", "p99") - truth(stats, "ttft_ms", "p99"),
        chunk_gap_p99=metric(summary, "inter_chunk_latency", "p99")
        - truth(stats, "chunk_gap_ms", "p99"),
        itl_p50=metric(summary, "inter_token_latency", "p50") - percentile(server_itl, 50),
    )


def server_itl_values(stats: Mapping[str, Any]) -> list[float]:
    """Per-request ITL in ms from the server's raw records (completed streams, ≥ 2 tokens)."""
    out = []
    for request in (stats.get("raw") or {}).get("requests", ()):
        tokens = request.get("completion_tokens") or 0
        if (
            request.get("outcome") == "ok"
            and request.get("stream")
            and tokens >= 2
            and request.get("ttft_ms") is not None
            and request.get("latency_ms") is not None
        ):
            out.append((request["latency_ms"] - request["ttft_ms"]) / (tokens - 1))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, as aiperf and the server)."""
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@attrs.frozen(kw_only=True)
class RateFigures:
    requests: int
    #: (n − 1) / (last actual send − first intended send), requests/s: the load the client
    #: delivered over the schedule's own time frame.
    sent_rate: float
    #: (n − 1) / (last − first) over the intended send times: the rate of the schedule the
    #: load strategy drew.
    intended_rate: float


def send_rates(records: Iterable[Mapping[str, Any]]) -> RateFigures:
    """The rate at which requests actually left, and the rate the schedule asked for.

    Both count gaps between sends, (n − 1) over a span; n over the span would overstate by one
    request. The achieved rate is measured from the first *intended* send: a client that
    sent its first request late and then caught up in a burst has not sent faster than asked,
    and one that falls further and further behind shows a late last send. Warm-up requests
    are left out. Without intended times (closed loop) the actual first send is used.
    """
    starts: list[int] = []
    intended: list[int] = []
    for record in records:
        if record.get("phase", "profile") != "profile":
            continue
        starts.append(int(record["start_time_ns"]))
        if record.get("intended_start_time_ns") is not None:
            intended.append(int(record["intended_start_time_ns"]))
    if len(starts) < 2:
        return RateFigures(requests=len(starts), sent_rate=math.nan, intended_rate=math.nan)
    origin = min(intended) if len(intended) == len(starts) else min(starts)
    return RateFigures(
        requests=len(starts),
        sent_rate=_rate(len(starts), max(starts) - origin),
        intended_rate=_rate(len(intended), max(intended) - min(intended)) if intended else math.nan,
    )


def _rate(count: int, span_ns: int) -> float:
    if count < 2 or span_ns <= 0:
        return math.nan
    return (count - 1) / (span_ns / 1e9)


def relative_error_pct(measured: float, expected: float) -> float:
    if not expected or math.isnan(measured):
        return math.nan
    return 100.0 * (measured - expected) / expected


def poisson_rate_sigma_pct(requests: int) -> float:
    """The relative standard deviation of a Poisson schedule's own mean rate over n arrivals.

    A Poisson schedule of n requests has n − 1 exponential gaps; their mean is off from 1/rate
    by about 1/sqrt(n − 1) relative, before the client sends anything. A 1 % goal on a Poisson
    schedule is therefore only meaningful against the schedule it drew (the intended times),
    or with about 10 000 requests and more.
    """
    return math.nan if requests < 2 else 100.0 / math.sqrt(requests - 1)


@attrs.frozen(kw_only=True)
class MemoryTrend:
    #: RSS (MiB) after warm-up: the median over the first half of the measured samples...
    early_mib: float
    #: ...and over the last tenth.
    late_mib: float
    #: least-squares slope over everything after warm-up, MiB per second.
    slope_mib_per_s: float


def memory_trend(samples: Sequence[tuple[float, float]], warmup_s: float) -> MemoryTrend:
    """How RSS moves after warm-up, from (seconds, MiB) samples of one run."""
    after = [(t, m) for t, m in samples if t >= warmup_s]
    if len(after) < 4:
        return MemoryTrend(early_mib=math.nan, late_mib=math.nan, slope_mib_per_s=math.nan)
    times = np.asarray([t for t, _ in after])
    mib = np.asarray([m for _, m in after])
    slope = float(np.polyfit(times, mib, 1)[0])
    half = len(after) // 2
    tail = max(1, len(after) // 10)
    return MemoryTrend(
        early_mib=float(np.median(mib[:half])),
        late_mib=float(np.median(mib[-tail:])),
        slope_mib_per_s=slope,
    )


def steady_cpu_per_1k(
    samples: Sequence[tuple[float, float]], ends: Sequence[float], window: tuple[float, float]
) -> float:
    """CPU seconds per 1000 requests while the load ran, start-up and exports left out.

    ``samples`` are (seconds, cumulative CPU seconds) of the process tree, ``ends`` the
    completion times of the requests and ``window`` the load phase, all on the same clock.
    The CPU between the first and the last sample inside the window is divided by the
    requests that completed between those two samples.
    """
    inside = [(t, cpu) for t, cpu in samples if window[0] <= t <= window[1]]
    if len(inside) < 2:
        return math.nan
    (t_a, cpu_a), (t_b, cpu_b) = inside[0], inside[-1]
    done = sum(1 for end in ends if t_a < end <= t_b)
    return math.nan if done == 0 else (cpu_b - cpu_a) / done * 1000
