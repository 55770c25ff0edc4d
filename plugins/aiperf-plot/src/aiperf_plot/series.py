"""Time series and distributions computed from a run's requests (numpy, no matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from aiperf_plot.rundir import Request

NS_PER_S = 1e9
BIN_S = 1.0
#: a last bin shorter than this joins the one before it: a rate over a sliver of a second
#: would draw a spike that is only rounding.
MIN_LAST_BIN_S = 0.5


@attrs.frozen(kw_only=True)
class Binned:
    """Per-bin values over ``edges`` (seconds since the run's first request)."""

    edges: np.ndarray
    values: np.ndarray

    @property
    def widths(self) -> np.ndarray:
        return np.diff(self.edges)


def seconds_since(t0_ns: int, wall_ns: Sequence[int] | np.ndarray) -> np.ndarray:
    return (np.asarray(wall_ns, dtype=np.float64) - t0_ns) / NS_PER_S


def bin_edges(end_s: float, width: float = BIN_S) -> np.ndarray:
    """Edges ``0, 1, 2, ...`` covering ``[0, end_s]``; a short remainder joins the last bin."""
    full = max(1, int(np.floor(end_s / width)))
    edges = np.arange(full + 1, dtype=np.float64) * width
    if end_s - edges[-1] >= MIN_LAST_BIN_S * width:
        edges = np.append(edges, end_s)
    else:
        edges[-1] = max(edges[-1], end_s)
    return edges


def token_arrivals(requests: Sequence[Request], t0_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """When output tokens arrived (s since t0) and how many at each time.

    A streamed response's tokens are spread evenly over its chunks (the chunk times are
    rebuilt from TTFT and the inter-chunk gaps); a response without chunk timing counts all
    its tokens at its end.
    """
    times: list[float] = []
    weights: list[float] = []
    for request in requests:
        tokens = request.value("output_sequence_length")
        if not request.ok or not tokens:
            continue
        start_s = (request.start_ns - t0_ns) / NS_PER_S
        ttft = request.value("time_to_first_token")
        if ttft is not None:
            gaps_ms = request.values("inter_chunk_latency")
            chunk_ms = ttft + np.concatenate(([0.0], np.cumsum(gaps_ms)))
            times.extend(start_s + chunk_ms / 1e3)
            weights.extend([tokens / len(chunk_ms)] * len(chunk_ms))
        elif request.end_ns is not None:
            times.append((request.end_ns - t0_ns) / NS_PER_S)
            weights.append(tokens)
    return np.asarray(times, dtype=np.float64), np.asarray(weights, dtype=np.float64)


def run_span_s(requests: Sequence[Request], t0_ns: int) -> float:
    """Seconds from the first request's start to the last request's end."""
    ends = [r.end_ns for r in requests if r.end_ns is not None]
    last = max(ends) if ends else max(r.start_ns for r in requests)
    return max((last - t0_ns) / NS_PER_S, 0.0)


def output_tokens_per_s(requests: Sequence[Request], t0_ns: int, edges: np.ndarray) -> Binned:
    times, weights = token_arrivals(requests, t0_ns)
    # Clip so that float rounding in rebuilt chunk times cannot push the last token out.
    times = np.clip(times, edges[0], edges[-1])
    tokens, _ = np.histogram(times, bins=edges, weights=weights)
    return Binned(edges=edges, values=tokens / np.diff(edges))


def requests_in_flight(requests: Sequence[Request], t0_ns: int, edges: np.ndarray) -> Binned:
    """Mean number of requests in flight in each bin (failed requests held a slot too).

    The mean is exact: the integral of the in-flight count over a bin divided by its width,
    computed from sorted start and end times, so it costs O(n log n) for any number of bins.
    """
    spans = [(r.start_ns, r.end_ns) for r in requests if r.end_ns is not None]
    if not spans:
        return Binned(edges=edges, values=np.zeros(len(edges) - 1))
    starts = np.sort(seconds_since(t0_ns, [s for s, _ in spans]))
    ends = np.sort(seconds_since(t0_ns, [e for _, e in spans]))
    area = _time_integral(starts, edges) - _time_integral(ends, edges)
    return Binned(edges=edges, values=np.diff(area) / np.diff(edges))


def _time_integral(sorted_times: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``sum(max(0, t - x) for x in sorted_times)`` for each ``t`` in ``at``."""
    count = np.searchsorted(sorted_times, at, side="right")
    prefix = np.concatenate(([0.0], np.cumsum(sorted_times)))
    return count * at - prefix[count]


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """Linear interpolation between closest ranks, as the exports compute it."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def ecdf(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the share of requests (%) at or below each."""
    xs = np.sort(np.asarray(values, dtype=np.float64))
    return xs, np.arange(1, len(xs) + 1) / len(xs) * 100.0
