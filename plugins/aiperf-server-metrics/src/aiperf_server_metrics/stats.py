"""Statistics of scraped series over a time window: gauge statistics, counter increases with
resets, and quantiles estimated from histogram buckets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np

PERCENTILES = (50, 90, 99)


@attrs.frozen(kw_only=True)
class Increase:
    """How much a counter grew over a window."""

    increase: float
    #: seconds of the window the scrapes span (the increase is measured over these).
    covered_s: float
    resets: int = 0

    @property
    def rate(self) -> float | None:
        return self.increase / self.covered_s if self.covered_s > 0 else None


def counter_increase(
    t_ns: np.ndarray, values: np.ndarray, start_ns: float, end_ns: float
) -> Increase | None:
    """The growth of a counter between ``start_ns`` and ``end_ns``.

    A counter that goes down was reset (a server restart): it counts again from zero, so what
    it shows after the drop is what it gained since. Between scrapes the counter is taken to
    grow linearly, so a window edge between two scrapes gets its share of that step.
    """
    ok = np.isfinite(values)
    t, v = t_ns[ok].astype(np.float64), values[ok]
    if t.size < 2:
        return None
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    steps = np.diff(v)
    reset = steps < 0
    steps[reset] = v[1:][reset]
    cumulative = np.concatenate(([0.0], np.cumsum(steps)))
    lo, hi = max(start_ns, t[0]), min(end_ns, t[-1])
    if hi <= lo:
        return None
    increase = float(np.interp(hi, t, cumulative) - np.interp(lo, t, cumulative))
    resets = int(np.count_nonzero(reset & (t[1:] > lo) & (t[:-1] < hi)))
    return Increase(increase=increase, covered_s=(hi - lo) / 1e9, resets=resets)


def gauge_stats(values: np.ndarray) -> dict[str, float | int]:
    """count, avg, min, max, std and p50/p90/p99 of the finite values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"count": 0}
    out: dict[str, float | int] = {
        "count": int(v.size),
        "avg": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
        "std": float(v.std()),
    }
    for q in PERCENTILES:
        out[f"p{q}"] = float(np.percentile(v, q))
    return out


def bucket_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile (0..1) of observations in cumulative buckets, as Prometheus'
    ``histogram_quantile`` estimates it: linear within the bucket the rank falls in.

    The first bucket's lower edge is 0 (when its bound is positive); a rank in the ``+Inf``
    bucket gets the largest finite bound, the most the buckets can tell.
    """
    if not counts:
        return None
    total = counts[-1]
    if not total > 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank and count > previous_count:
            if math.isinf(bound):
                return previous_bound if previous_bound else None
            lower = previous_bound if previous_bound < bound else min(0.0, bound)
            share = (rank - previous_count) / (count - previous_count)
            return lower + (bound - lower) * share
        previous_bound, previous_count = bound, count
    return None


def bucket_stats(
    bounds: Sequence[float], counts: Sequence[float], total_sum: float | None
) -> dict[str, float | int | None]:
    """count, mean and p50/p90/p99 of a window's bucket counts (cumulative by bound)."""
    count = counts[-1] if counts else 0.0
    out: dict[str, float | int | None] = {"count": count}
    if count > 0 and total_sum is not None:
        out["avg"] = total_sum / count
    if total_sum is not None:
        out["sum"] = total_sum
    for q in PERCENTILES:
        out[f"p{q}"] = bucket_quantile(q / 100.0, bounds, counts)
    return out
