"""``--num-profile-runs``: each metric's mean over the trials, its confidence interval
(Student's t) and coefficient of variation, and a flag where the trials disagree too much.

Nothing here needs SciPy: the t distribution's CDF has a closed form for whole degrees of
freedom (a finite sum in the angle ``atan(t / sqrt(df))``), and its quantile is found by
bisection on that CDF.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: the statistics of each metric that are aggregated (a run metric has ``avg`` only).
STATS = ("avg", "p50", "p90", "p99")
#: a metric whose trials spread wider than this (standard deviation / mean) is flagged:
#: its mean says little about the next run.
CV_LIMIT = 0.10
DEFAULT_CONFIDENCE = 0.95

AGGREGATE_JSON = "profile_export_aiperf_aggregate.json"
AGGREGATE_CSV = "profile_export_aiperf_aggregate.csv"
CSV_COLUMNS = ("mean", "std", "ci_low", "ci_high", "cv", "min", "max", "n", "unstable")


def t_within(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (whole) degrees of freedom."""
    if df < 1:
        raise ValueError("df must be >= 1")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        # sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... up to cos^(df-2))
        term = total = 1.0
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        return min(1.0, sin * total)
    # 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ... up to cos^(df-3)))
    if df == 1:
        return 2 * theta / math.pi
    term = total = 1.0
    for k in range(1, (df - 1) // 2):
        term *= cos2 * (2 * k) / (2 * k + 1)
        total += term
    return min(1.0, 2 / math.pi * (theta + sin * math.sqrt(cos2) * total))


def t_quantile(confidence: float, df: int) -> float:
    """The ``t`` with P(|T| <= t) = ``confidence``: the half-width of a two-sided interval
    in standard errors (2.776 for 95 % and 4 degrees of freedom)."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    low, high = 0.0, 1.0
    while t_within(high, df) < confidence:
        low, high = high, high * 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_within(mid, df) < confidence:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


def summarize(values: Sequence[float], confidence: float) -> dict[str, Any]:
    """Mean, sample standard deviation, the interval, the coefficient of variation."""
    n = len(values)
    mean = sum(values) / n
    out: dict[str, Any] = {
        "mean": mean,
        "std": None,
        "ci_low": None,
        "ci_high": None,
        "cv": None,
        "min": min(values),
        "max": max(values),
        "n": n,
        "unstable": None,
        "values": list(values),
    }
    if n < 2:
        return out
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    out.update(std=std, ci_low=mean - half, ci_high=mean + half)
    if mean != 0:
        out["cv"] = std / abs(mean)
        out["unstable"] = out["cv"] > CV_LIMIT
    else:
        out["unstable"] = std > 0
    return out


def aggregate(
    trials: Sequence[Mapping[str, Mapping[str, Any]]],
    confidence: float,
    units: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """``trials``: each successful trial's ``metrics`` (``{tag: {"avg": .., "p50": ..}}``);
    ``units``: each tag's unit and header. Returns ``{tag: {"unit", "header", "avg": {...},
    "p50": {...}, ...}}`` for every statistic the trials measured."""
    tags: list[str] = []
    for metrics in trials:
        tags.extend(tag for tag in metrics if tag not in tags)
    out: dict[str, dict[str, Any]] = {}
    for tag in tags:
        unit, header = (units or {}).get(tag, (None, None))
        entry: dict[str, Any] = {"unit": unit, "header": header}
        for stat in STATS:
            values = [
                float(m[tag][stat])
                for m in trials
                if isinstance(m.get(tag), Mapping) and isinstance(m[tag].get(stat), (int, float))
            ]
            if values:
                entry[stat] = summarize(values, confidence)
        if any(stat in entry for stat in STATS):
            out[tag] = entry
    return out


def unstable_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``tag.stat`` of every statistic flagged unstable."""
    return [
        f"{tag}.{stat}"
        for tag, entry in metrics.items()
        for stat in STATS
        if isinstance(entry.get(stat), Mapping) and entry[stat].get("unstable")
    ]


def to_csv(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    fh = io.StringIO()
    out = csv.writer(fh)
    out.writerow(["Metric", "Unit", "Stat", *CSV_COLUMNS])
    for tag, entry in metrics.items():
        for stat in STATS:
            row = entry.get(stat)
            if not isinstance(row, Mapping):
                continue
            out.writerow([tag, entry.get("unit") or "", stat, *(_cell(row.get(c)) for c in CSV_COLUMNS)])
    return fh.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
