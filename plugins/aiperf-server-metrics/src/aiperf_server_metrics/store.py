"""Every scrape of one endpoint, kept as columns per series, and what each scrape adds to
the live bus and the JSONL time series.

One :class:`EndpointStore` belongs to one endpoint and is only touched by that endpoint's
scrapes, one after another (from a worker thread), then read once the run is over.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from aiperf_server_metrics.engines import NameTable, table
from aiperf_server_metrics.parse import Histogram, Labels, Parsed, Scalar
from aiperf_server_metrics.stats import bucket_quantile

#: series kept per endpoint beyond the common ones: a body with 100,000 series would
#: otherwise cost gigabytes over a long run. The common names are always kept.
MAX_SERIES = 2000

#: marks of the scrapes that bracket the measured phase: its counters are measured between.
PROFILE_START = "profile_start"
PROFILE_END = "profile_end"

_UNIT_SUFFIXES = (
    ("_seconds", "s"),
    ("_seconds_total", "s"),
    ("_bytes", "By"),
    ("_bytes_total", "By"),
    ("_perc", "ratio"),
    ("_percent", "ratio"),
    ("_ratio", "ratio"),
)


def unit_of(name: str, unit: str, common_unit: str | None) -> str:
    if common_unit:
        return common_unit
    if unit:
        return unit
    for suffix, guess in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return guess
    return ""


def series_id(name: str, labels: Labels) -> str:
    """``name{a="1",b="2"}``, the way Prometheus writes a series."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{inner}}}"


@attrs.frozen(kw_only=True)
class LiveValue:
    """A value for the live bus: ``name`` is a common name, maybe with ``.rate``/``.p50``."""

    name: str
    value: float
    unit: str
    labels: Labels


@attrs.define(kw_only=True)
class ScalarSeries:
    name: str
    kind: str
    unit: str
    labels: Labels
    common: str | None
    engine: str | None
    t: array[int] = attrs.field(factory=lambda: array("q"))
    v: array[float] = attrs.field(factory=lambda: array("d"))

    def times(self) -> np.ndarray:
        return np.frombuffer(self.t, dtype=np.int64)

    def values(self) -> np.ndarray:
        return np.frombuffer(self.v, dtype=np.float64)


@attrs.define(kw_only=True)
class HistogramSeries:
    name: str
    unit: str
    labels: Labels
    bounds: tuple[float, ...]
    common: str | None
    engine: str | None
    t: array[int] = attrs.field(factory=lambda: array("q"))
    #: one column per bucket, cumulative counts as scraped.
    buckets: list[array[float]] = attrs.field(factory=list)
    sums: array[float] = attrs.field(factory=lambda: array("d"))
    counts: array[float] = attrs.field(factory=lambda: array("d"))

    def __attrs_post_init__(self) -> None:
        if not self.buckets:
            self.buckets = [array("d") for _ in self.bounds]

    def times(self) -> np.ndarray:
        return np.frombuffer(self.t, dtype=np.int64)

    def column(self, index: int) -> np.ndarray:
        return np.frombuffer(self.buckets[index], dtype=np.float64)

    def last_counts(self) -> tuple[float, ...] | None:
        if not self.t:
            return None
        return tuple(column[-1] for column in self.buckets)


@attrs.define(kw_only=True)
class EndpointStore:
    source: str
    names: NameTable = attrs.field(factory=table)
    scalars: dict[tuple[str, Labels], ScalarSeries] = attrs.field(factory=dict)
    histograms: dict[tuple[str, Labels], HistogramSeries] = attrs.field(factory=dict)
    max_series: int = MAX_SERIES
    #: the most series one answer held, and how many distinct ones were not kept.
    largest_answer: int = 0
    refused: set[tuple[str, Labels]] = attrs.field(factory=set)
    engines: set[str] = attrs.field(factory=set)
    scrapes: int = 0
    #: wall times of the scrapes taken as the measured phase started and ended.
    baseline_ns: int | None = None
    final_ns: int | None = None

    @property
    def kept(self) -> int:
        return len(self.scalars) + len(self.histograms)

    def counted_window(self, start_ns: float, end_ns: float) -> tuple[float, float]:
        """Where counters and histograms are measured: from the baseline scrape to the final
        one, which hold their values at the phase's edges; the phase's own bounds (values
        interpolated between scrapes) where either scrape failed."""
        return (
            start_ns if self.baseline_ns is None else self.baseline_ns,
            end_ns if self.final_ns is None else self.final_ns,
        )

    def brackets(self, start_ns: float, end_ns: float) -> bool:
        """The baseline scrape came before the phase ``start_ns..end_ns`` and the final one
        after it (the core takes them with nothing in flight): every increase between them
        is the phase's own."""
        return (
            end_ns > start_ns
            and self.baseline_ns is not None
            and self.final_ns is not None
            and self.baseline_ns <= start_ns
            and self.final_ns >= end_ns
        )

    def ingest(
        self, parsed: Parsed, wall_ns: int, phase: str | None, mark: str | None = None
    ) -> tuple[list[LiveValue], str]:
        """Add one scrape; returns its live values and its JSONL line. ``mark``: this scrape
        brackets the measured phase (``PROFILE_START`` / ``PROFILE_END``)."""
        self.scrapes += 1
        if mark == PROFILE_START:
            self.baseline_ns = wall_ns
        elif mark == PROFILE_END:
            self.final_ns = wall_ns
        self.largest_answer = max(self.largest_answer, parsed.series)
        live: list[LiveValue] = []
        values: dict[str, float] = {}
        deltas: dict[str, dict[str, Any]] = {}
        common: list[dict[str, Any]] = []
        for scalar in parsed.scalars:
            series = self._scalar(scalar)
            if series is None:
                continue
            previous = (series.t[-1], series.v[-1]) if series.t else None
            series.t.append(wall_ns)
            series.v.append(scalar.value)
            values[series_id(series.name, series.labels)] = scalar.value
            if series.common is None:
                continue
            value = scalar.value
            if series.kind == "counter":
                rate = _rate(previous, wall_ns, scalar.value)
                if rate is not None:
                    live.append(LiveValue(
                        name=f"{series.common}.rate", value=rate,
                        unit=f"{series.unit}/s", labels=series.labels,
                    ))  # fmt: skip
            else:
                live.append(LiveValue(
                    name=series.common, value=value, unit=series.unit, labels=series.labels
                ))  # fmt: skip
            common.append({"name": series.common, "labels": dict(series.labels), "value": value})
        for histogram in parsed.histograms:
            series = self._histogram(histogram)
            if series is None:
                continue
            before = series.last_counts()
            series.t.append(wall_ns)
            for column, count in zip(series.buckets, histogram.counts):
                column.append(count)
            series.sums.append(np.nan if histogram.sum is None else histogram.sum)
            series.counts.append(np.nan if histogram.count is None else histogram.count)
            delta = _interval_delta(before, histogram.counts)
            entry: dict[str, Any] = {"count": delta[-1] if delta else 0.0}
            if delta and delta[-1] > 0:
                for q in (50, 90, 99):
                    entry[f"p{q}"] = bucket_quantile(q / 100.0, series.bounds, delta)
            deltas[series_id(series.name, series.labels)] = entry
            if series.common is not None and delta and delta[-1] > 0:
                for q in ("p50", "p99"):
                    if entry.get(q) is not None:
                        live.append(LiveValue(
                            name=f"{series.common}.{q}", value=entry[q],
                            unit=series.unit, labels=series.labels,
                        ))  # fmt: skip
                common.append({"name": series.common, "labels": dict(series.labels), **entry})
        line = {
            "wall_ns": wall_ns,
            "phase": phase,
            "mark": mark,
            "source": self.source,
            "common": common,
            "values": values,
            "histograms": deltas,
        }
        return live, json.dumps(line, separators=(",", ":")) + "\n"

    def _admit(self, key: tuple[str, Labels], common: str | None) -> bool:
        if common is not None or self.kept < self.max_series:
            return True
        self.refused.add(key)
        return False

    def _scalar(self, scalar: Scalar) -> ScalarSeries | None:
        key = (scalar.name, scalar.labels)
        series = self.scalars.get(key)
        if series is not None:
            return series
        entry = self.names.lookup(scalar.name)
        if entry is not None and self.names.commons[entry.common].kind == "histogram":
            entry = None  # a histogram's _count/_sum under its family name: not the histogram
        common = entry.common if entry else None
        if not self._admit(key, common):
            return None
        if entry is not None:
            self.engines.add(entry.engine)
        common_unit = self.names.commons[common].unit if common else None
        series = self.scalars[key] = ScalarSeries(
            name=scalar.name,
            kind=scalar.kind,
            unit=unit_of(scalar.name, scalar.unit, common_unit),
            labels=scalar.labels,
            common=common,
            engine=entry.engine if entry else None,
        )
        return series

    def _histogram(self, histogram: Histogram) -> HistogramSeries | None:
        key = (histogram.name, histogram.labels)
        series = self.histograms.get(key)
        if series is not None:
            # Buckets that changed under the same name (a server restarted with another
            # layout) cannot be compared with the earlier ones: the answer is skipped.
            return series if series.bounds == histogram.bounds else None
        entry = self.names.lookup(histogram.name)
        common = entry.common if entry else None
        if not self._admit(key, common):
            return None
        if entry is not None:
            self.engines.add(entry.engine)
        common_unit = self.names.commons[common].unit if common else None
        series = self.histograms[key] = HistogramSeries(
            name=histogram.name,
            unit=unit_of(histogram.name, histogram.unit, common_unit),
            labels=histogram.labels,
            bounds=histogram.bounds,
            common=common,
            engine=entry.engine if entry else None,
        )
        return series

    def common_series(self) -> Iterable[ScalarSeries | HistogramSeries]:
        for scalar in self.scalars.values():
            if scalar.common is not None:
                yield scalar
        for histogram in self.histograms.values():
            if histogram.common is not None:
                yield histogram


def _rate(previous: tuple[int, float] | None, wall_ns: int, value: float) -> float | None:
    if previous is None:
        return None
    t0, v0 = previous
    dt = (wall_ns - t0) / 1e9
    if dt <= 0:
        return None
    # A drop is a reset: the counter restarted from zero and now shows what it gained since.
    step = value - v0 if value >= v0 else value
    return step / dt


def _interval_delta(before: tuple[float, ...] | None, now: tuple[float, ...]) -> tuple[float, ...]:
    """Bucket counts observed since the previous scrape (all of them after a reset)."""
    if before is None:
        return ()
    if len(before) != len(now) or (now and before and now[-1] < before[-1]):
        return tuple(now)
    return tuple(max(b - a, 0.0) for a, b in zip(before, now))
