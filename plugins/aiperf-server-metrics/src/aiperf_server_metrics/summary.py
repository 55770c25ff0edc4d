"""What the servers reported over exactly the measured phase: statistics per series, the
common names as a table, and the server's TTFT beside the client's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aiperf_server_metrics.stats import bucket_stats, counter_increase, gauge_stats
from aiperf_server_metrics.store import (
    EndpointStore,
    HistogramSeries,
    ScalarSeries,
)

if TYPE_CHECKING:
    from aiperf import RunResult

SECTION = "server_metrics"
COMPARISON_SECTION = "server_vs_client"
#: (common name of the server's histogram, aiperf's metric tag) compared in the summary.
COMPARED = (("server_ttft", "time_to_first_token"),)
#: shown in ms on the console: the histograms are in seconds.
_MS = 1000.0


def scalar_summary(
    series: ScalarSeries,
    start_ns: float,
    end_ns: float,
    counted: tuple[float, float] | None = None,
    baseline_ns: int | None = None,
    phase_s: float | None = None,
) -> dict[str, Any]:
    """Gauge statistics over ``start_ns..end_ns``; a counter's increase over ``counted``
    (the same window when not given). ``phase_s``: the scrapes of ``counted`` bracket the
    measured phase with nothing in flight outside it, so the whole increase happened in the
    phase's ``phase_s`` seconds: the rate is over those, not over the scrapes' span."""
    t, v = series.times(), series.values()
    if series.kind == "counter":
        lo, hi = counted or (start_ns, end_ns)
        t, v = _from_baseline(t, v, baseline_ns)
        increase = counter_increase(t, v, lo, hi)
        if increase is None:
            return {"total": None, "rate": None}
        return {
            "total": increase.increase,
            "rate": increase.increase / phase_s if phase_s else increase.rate,
            "covered_s": increase.covered_s,
            "resets": increase.resets,
        }
    inside = (t >= start_ns) & (t <= end_ns)
    return gauge_stats(v[inside])


def histogram_summary(
    series: HistogramSeries, start_ns: float, end_ns: float, baseline_ns: int | None = None
) -> dict[str, Any]:
    """Each bucket's increase over ``start_ns..end_ns`` (as a counter), then its statistics."""
    counts = []
    for index in range(len(series.bounds)):
        t, column = _from_baseline(series.times(), series.column(index), baseline_ns)
        increase = counter_increase(t, column, start_ns, end_ns)
        if increase is None:
            return {"count": None}
        counts.append(increase.increase)
    t, sums = _from_baseline(
        series.times(), np.frombuffer(series.sums, dtype=np.float64), baseline_ns
    )
    total = counter_increase(t, sums, start_ns, end_ns)
    out: dict[str, Any] = dict(
        bucket_stats(series.bounds, counts, None if total is None else total.increase)
    )
    out["buckets"] = {_bound(b): c for b, c in zip(series.bounds, counts)}
    return out


def series_entries(
    stores: Sequence[EndpointStore], start_ns: float, end_ns: float
) -> list[dict[str, Any]]:
    """One entry per kept series of every endpoint, in scrape order."""
    entries: list[dict[str, Any]] = []
    for store in stores:
        counted = store.counted_window(start_ns, end_ns)
        baseline = store.baseline_ns
        phase_s = (end_ns - start_ns) / 1e9 if store.brackets(start_ns, end_ns) else None
        for scalar in store.scalars.values():
            entries.append({
                **_identity(store.source, scalar.name, scalar.kind, scalar),
                "statistics": scalar_summary(scalar, start_ns, end_ns, counted, baseline, phase_s),
            })  # fmt: skip
        for histogram in store.histograms.values():
            entries.append({
                **_identity(store.source, histogram.name, "histogram", histogram),
                "bounds": [_bound(b) for b in histogram.bounds],
                "statistics": histogram_summary(histogram, *counted, baseline),
            })  # fmt: skip
    return entries


def derived_entries(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prefix-cache hit rate from its counters, where the engine exports no gauge."""
    has_gauge = {e["source"] for e in entries if e.get("common") == "prefix_cache_hit_rate"}
    out = []
    for entry in entries:
        if entry.get("common") != "prefix_cache_hits_total" or entry["source"] in has_gauge:
            continue
        queries = next(
            (
                e for e in entries
                if e.get("common") == "prefix_cache_queries_total"
                and e["source"] == entry["source"] and e["labels"] == entry["labels"]
            ),
            None,
        )  # fmt: skip
        if queries is None:
            continue
        hits = entry["statistics"].get("total")
        asked = queries["statistics"].get("total")
        if hits is None or not asked:
            continue
        out.append({
            "source": entry["source"], "name": "prefix_cache_hit_rate",
            "common": "prefix_cache_hit_rate", "engine": entry.get("engine"),
            "type": "derived", "unit": "ratio", "labels": entry["labels"],
            "statistics": {"value": hits / asked},
        })  # fmt: skip
    return out


def common_rows(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The console table: one row per common-named series."""
    rows = []
    for entry in entries:
        common = entry.get("common")
        if common is None:
            continue
        stats = entry["statistics"]
        kind = entry["type"]
        scale = _MS if kind == "histogram" and entry["unit"] == "s" else 1.0
        unit = "ms" if scale == _MS else entry["unit"]
        row = {
            "Server Metric": common + _label_suffix(entry["labels"]),
            "Unit": unit if kind != "counter" else f"{unit}/s",
            "avg": "", "min": "", "max": "", "p50": "", "p99": "", "total": "",
        }  # fmt: skip
        if kind == "counter":
            row["avg"] = _fmt(stats.get("rate"))
            row["total"] = _fmt(stats.get("total"))
        elif kind == "derived":
            row["avg"] = _fmt(stats.get("value"))
        else:
            for key in ("avg", "min", "max", "p50", "p99"):
                value = stats.get(key)
                row[key] = _fmt(None if value is None else value * scale)
            if kind == "histogram":
                row["total"] = _fmt(stats.get("count"))
        rows.append(row)
    return rows


def comparison(entries: Sequence[dict[str, Any]], result: RunResult) -> dict[str, Any]:
    """The server's own TTFT beside aiperf's: what lies between them is the network, the HTTP
    stack and any queue in front of the engine."""
    out: dict[str, Any] = {}
    for common, tag in COMPARED:
        server = _busiest(entries, common)
        client = result.metrics.get(tag)
        if server is None or client is None:
            continue
        stats = server["statistics"]
        item: dict[str, Any] = {"unit": "ms", "server_source": server["source"]}
        for q in ("p50", "p99"):
            client_ms = client.percentiles.get(q)
            server_s = stats.get(q)
            server_ms = None if server_s is None else server_s * _MS
            item[f"client_{q}"] = client_ms
            item[f"server_{q}"] = server_ms
            item[f"difference_{q}"] = (
                None if client_ms is None or server_ms is None else client_ms - server_ms
            )
        out[common] = item
    queue = _busiest(entries, "server_queue_time")
    if queue is not None:
        stats = queue["statistics"]
        out["server_queue_time"] = {
            "unit": "ms",
            "server_source": queue["source"],
            **{
                f"server_{q}": None if stats.get(q) is None else stats[q] * _MS
                for q in ("p50", "p99")
            },
        }
    return out


def comparison_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    names = {"server_ttft": "Time to First Token", "server_queue_time": "Server Queue Time"}
    for key, item in data.items():
        rows.append({
            "Metric (ms)": names.get(key, key),
            "aiperf p50": _fmt(item.get("client_p50")),
            "server p50": _fmt(item.get("server_p50")),
            "difference p50": _fmt(item.get("difference_p50")),
            "aiperf p99": _fmt(item.get("client_p99")),
            "server p99": _fmt(item.get("server_p99")),
            "difference p99": _fmt(item.get("difference_p99")),
        })  # fmt: skip
    return rows


def _busiest(entries: Sequence[dict[str, Any]], common: str) -> dict[str, Any] | None:
    """Of several series with one common name, the one that saw the most observations."""
    candidates = [
        e for e in entries
        if e.get("common") == common and (e["statistics"].get("count") or 0) > 0
    ]  # fmt: skip
    return max(candidates, key=lambda e: e["statistics"]["count"], default=None)


def _from_baseline(
    t: np.ndarray, values: np.ndarray, baseline_ns: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """A counter first seen after the baseline scrape did not exist then: it was zero, and
    all it shows was gained in the measured phase (servers create labelled series lazily)."""
    if baseline_ns is None or not t.size or t[0] <= baseline_ns:
        return t, values
    return np.concatenate(([baseline_ns], t)), np.concatenate(([0.0], values))


def _identity(
    source: str, name: str, kind: str, series: ScalarSeries | HistogramSeries
) -> dict[str, Any]:
    return {
        "source": source,
        "name": name,
        "common": series.common,
        "engine": series.engine,
        "type": kind,
        "unit": series.unit,
        "labels": dict(series.labels),
    }


def _bound(bound: float) -> float | str:
    return "+Inf" if bound == float("inf") else bound


def _label_suffix(labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k not in ("model_name", "model")}
    if not shown:
        return ""
    return "{" + ",".join(f"{k}={v}" for k, v in shown.items()) + "}"


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 1000 or value == int(value):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
