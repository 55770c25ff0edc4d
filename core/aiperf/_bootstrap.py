"""The statistics of ``aiperf compare``: differences of per-request statistics between two runs,
with bootstrap intervals that hold for a whole table at once.

Each run's requests are resampled with replacement, the two runs independently, and a
statistic (``avg``, ``p50``, ...) is computed on every resample; the resampled differences
``run - baseline`` give each row its interval. Percentiles use numpy's linear interpolation,
the same as the run's own summary.

- Within a run, the metrics every request has are resampled together, request by request, and
  in blocks of consecutive requests (``blocks``): requests that ran at the same time share
  their conditions, and one by one they would look like more evidence than they are.
- A table compares many metrics at several statistics; intervals at 99 % each would show a
  false difference somewhere in many tables. So one level is chosen for every row, such that
  in ``confidence`` of the resamples every row lies within its interval at once. How far out
  a resample lies is measured by its rank within its own row, so rows that move together
  (TTFT and request latency) count about once, and a row with a few wild resamples (a mean
  pulled by one outlier) does not widen the others.
- A row's interval is the percentile interval of its resamples at that level (right for
  discrete and skewed rows), widened where needed to the normal interval of the same level
  (right for smooth rows, and past the resamples' range, which percentiles cannot reach).

A percentile is compared only where each run has at least :data:`MIN_TAIL` requests beyond it
(p99 needs 500 requests): nearer the extremes the bootstrap has too few values to say anything
about how far the percentile could move.

Random draws come from a generator seeded by ``seed``: the same inputs give the same
intervals, and a metric's draws do not depend on which other metrics are in the table (its
level does).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from statistics import NormalDist

import attrs
import numpy as np

#: at most this many resampled values in memory at once, per run and metric.
CHUNK_VALUES = 2_000_000
DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.99
#: requests each run needs beyond a percentile (above p90, below p10) to compare it.
MIN_TAIL = 5
#: a statistic: ``avg``, or ``p`` and a percentile strictly between 0 and 100 (``p99.9``).
STAT = re.compile(r"^(avg|p(\d{1,2}(\.\d+)?))$")


def check_stat(name: str) -> str | None:
    """``None`` when ``name`` is a statistic this module computes; else what is wrong."""
    match = STAT.match(name)
    if match is None:
        return f"unknown statistic {name!r}; expected avg or pNN (p50, p90, p99, p99.9)"
    if match.group(2) is not None and not 0 < float(match.group(2)) < 100:
        return f"percentile {name!r} must be between p0 and p100, both excluded"
    return None


def min_requests(stat: str) -> int:
    """The fewest requests a run needs for ``stat`` to be compared (see :data:`MIN_TAIL`)."""
    if stat == "avg":
        return 2
    share = min(float(stat[1:]), 100 - float(stat[1:])) / 100
    return max(2, math.ceil(MIN_TAIL / share - 1e-9))


@attrs.frozen
class Estimate:
    """One statistic of one metric: both runs' values and their difference."""

    metric: str
    stat: str
    baseline: float
    run: float
    #: ``run - baseline`` and its interval.
    difference: float
    low: float
    high: float
    #: the difference and its interval as shares of the baseline's value; ``None`` when that
    #: value is 0.
    relative: float | None
    relative_low: float | None
    relative_high: float | None


@attrs.frozen
class Family:
    """Every row of one comparison, with the level their intervals were taken at."""

    estimates: tuple[Estimate, ...]
    confidence: float
    #: the two-sided level each row's interval is taken at (above ``confidence`` when the
    #: table has several rows that do not move together).
    row_level: float
    resamples: int
    seed: int


def _stat_values(matrix: np.ndarray, stats: Sequence[str]) -> np.ndarray:
    """Rows of ``matrix`` are samples; returns ``(len(stats), rows)``."""
    out = np.empty((len(stats), matrix.shape[0]))
    pct = [(i, float(s[1:])) for i, s in enumerate(stats) if s != "avg"]
    if pct:
        values = np.percentile(matrix, [q for _, q in pct], axis=1)
        for (i, _), row in zip(pct, values):
            out[i] = row
    for i, s in enumerate(stats):
        if s == "avg":
            out[i] = matrix.mean(axis=1)
    return out


def _resampled(
    columns: Mapping[str, np.ndarray],
    plan: Sequence[tuple[str, Sequence[str]]],
    resamples: int,
    seed: Sequence[int],
    block: int = 1,
) -> dict[str, np.ndarray]:
    """Each metric's statistics on each resample of the requests: ``(len(stats), resamples)``
    per metric. ``columns`` are aligned by request (NaN where a request lacks the metric);
    metrics every request has are resampled together, request by request, so that the
    resamples keep how the metrics move together; the others are resampled on their own."""
    out = {metric: np.empty((len(stats), resamples)) for metric, stats in plan}
    full = [(m, s) for m, s in plan if not np.isnan(columns[m]).any()]
    if full:
        n = columns[full[0][0]].size
        for start, index in _index_chunks(n, resamples, np.random.default_rng(seed), block):
            for metric, stats in full:
                out[metric][:, start : start + index.shape[0]] = _stat_values(
                    columns[metric][index], stats
                )
    for metric, stats in plan:
        values = columns[metric]
        if not np.isnan(values).any():
            continue
        values = values[~np.isnan(values)]
        own = np.random.default_rng([*seed, zlib.crc32(metric.encode())])
        for start, index in _index_chunks(values.size, resamples, own, block):
            out[metric][:, start : start + index.shape[0]] = _stat_values(values[index], stats)
    return out


def _index_chunks(
    n: int, resamples: int, rng: np.random.Generator, block: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """Index matrices of resamples, at most :data:`CHUNK_VALUES` entries each, ``resamples``
    rows in all. With ``block`` > 1, each resample is made of runs of ``block`` consecutive
    requests (from a random start, wrapping around at the end): requests that ran at the same
    time share their conditions, and keep sharing them in the resamples."""
    block = max(1, min(block, n))
    per_row = -(-n // block)
    chunk = max(1, min(resamples, CHUNK_VALUES // n))
    offsets = np.arange(block)
    done = 0
    while done < resamples:
        size = min(chunk, resamples - done)
        if block == 1:
            index = rng.integers(0, n, size=(size, n))
        else:
            starts = rng.integers(0, n, size=(size, per_row))
            index = ((starts[:, :, None] + offsets) % n).reshape(size, -1)[:, :n]
        yield done, index
        done += size


def compare_samples(
    baseline: Mapping[str, np.ndarray],
    run: Mapping[str, np.ndarray],
    plan: Sequence[tuple[str, Sequence[str]]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    blocks: tuple[int, int] = (1, 1),
) -> Family:
    """Compare ``run`` against ``baseline``: per-request values by metric (at least one value
    each), the statistics to compare for each metric in ``plan``."""
    rows: list[tuple[str, str, float, float, np.ndarray, np.ndarray]] = []
    a_columns = {m: np.asarray(baseline[m], dtype=np.float64) for m, _ in plan}
    b_columns = {m: np.asarray(run[m], dtype=np.float64) for m, _ in plan}
    a_boot = _resampled(a_columns, plan, resamples, (seed, 0), blocks[0])
    b_boot = _resampled(b_columns, plan, resamples, (seed, 1), blocks[1])
    for metric, stats in plan:
        a = a_columns[metric][~np.isnan(a_columns[metric])]
        b = b_columns[metric][~np.isnan(b_columns[metric])]
        a_hats = _stat_values(a[None, :], stats)[:, 0]
        b_hats = _stat_values(b[None, :], stats)[:, 0]
        for i, stat in enumerate(stats):
            rows.append(
                (metric, stat, float(a_hats[i]), float(b_hats[i]), a_boot[metric][i], b_boot[metric][i])
            )
    if not rows:
        return Family((), confidence, confidence, resamples, seed)
    hats = np.array([b_hat - a_hat for _, _, a_hat, b_hat, _, _ in rows])
    diffs = np.stack([b_star - a_star for *_, a_star, b_star in rows])
    lows, highs, level = _intervals(hats, diffs, confidence)
    estimates = []
    for (metric, stat, a_hat, b_hat, _, _), difference, low, high in zip(rows, hats, lows, highs):
        relative = relative_low = relative_high = None
        if a_hat != 0:
            scale = abs(a_hat)
            relative, relative_low, relative_high = difference / scale, low / scale, high / scale
        estimates.append(
            Estimate(
                metric=metric,
                stat=stat,
                baseline=a_hat,
                run=b_hat,
                difference=float(difference),
                low=float(low),
                high=float(high),
                relative=relative,
                relative_low=relative_low,
                relative_high=relative_high,
            )
        )
    return Family(tuple(estimates), confidence, level, resamples, seed)


def _intervals(
    hats: np.ndarray, diffs: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Simultaneous intervals for the rows ``hats`` with resampled values ``diffs``; and the
    two-sided level each row's interval is taken at."""
    lows, highs = hats.copy(), hats.copy()
    errors = diffs.std(axis=1)
    moving = errors > 0
    if not moving.any():
        return lows, highs, confidence
    # Per resample, how far out the row farthest out in its own bootstrap distribution is, by
    # rank: every row counts the same whatever its shape, and rows that move together (TTFT
    # and request latency) count about once. In ``confidence`` of the resamples every row is
    # within ``half`` of its middle rank; that is each row's level.
    extreme = np.abs(_mid_ranks(diffs[moving]) - 0.5).max(axis=0)
    width = diffs.shape[1]
    half = min(float(np.quantile(extreme, confidence, method="higher")), 0.5 - 0.25 / width)
    quantiles = np.quantile(diffs[moving], [0.5 - half, 0.5 + half], axis=1)
    # The percentile interval (right for discrete and skewed rows), widened where needed to
    # the normal one of the same level (right for smooth rows, and beyond the resamples'
    # range, which the percentiles cannot reach).
    critical = NormalDist().inv_cdf(0.5 + half)
    lows[moving] = np.minimum(quantiles[0], hats[moving] - critical * errors[moving])
    highs[moving] = np.maximum(quantiles[1], hats[moving] + critical * errors[moving])
    return lows, highs, 2 * half


def _mid_ranks(rows: np.ndarray) -> np.ndarray:
    """Each value's rank within its row as a share in (0, 1); ties share their middle rank."""
    out = np.empty_like(rows)
    width = rows.shape[1]
    for i, row in enumerate(rows):
        ordered = np.sort(row)
        left = np.searchsorted(ordered, row, side="left")
        right = np.searchsorted(ordered, row, side="right")
        out[i] = (left + right) / (2.0 * width)
    return out
