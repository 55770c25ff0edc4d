"""Per-GPU statistics over the measured phase, the energy it took, and what that energy bought.

Samples are kept per GPU as columns of numbers (about 70 bytes a sample), so a day of
sampling eight GPUs twice a second stays in the tens of megabytes.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from aiperf import HardwareSample, ReportSection

from aiperf_gpu.readings import ENERGY, FIELD_NAMES, STAT_FIELDS

if TYPE_CHECKING:
    from aiperf import RunResult

SECTION = "gpu_telemetry"
ENERGY_SECTION = "gpu_energy"
PERCENTILES = (50, 99)


@attrs.define
class GpuSeries:
    """Every sample of one GPU from one source, as columns (NaN where a field was missing)."""

    source: str
    host: str
    gpu_index: int
    uuid: str
    name: str
    wall_ns: array[int] = attrs.field(factory=lambda: array("q"))
    columns: dict[str, array[float]] = attrs.field(
        factory=lambda: {field: array("d") for field in FIELD_NAMES}
    )

    @property
    def label(self) -> str:
        return f"{self.host} gpu{self.gpu_index}"

    def add(self, sample: HardwareSample) -> None:
        self.wall_ns.append(sample.wall_ns)
        for field in FIELD_NAMES:
            value = getattr(sample, field)
            self.columns[field].append(math.nan if value is None else float(value))

    def times(self) -> np.ndarray:
        return np.frombuffer(self.wall_ns, dtype=np.int64).astype(np.float64)

    def column(self, field: str) -> np.ndarray:
        return np.frombuffer(self.columns[field], dtype=np.float64)


@attrs.define
class TelemetryStore:
    series: dict[tuple[str, str, str], GpuSeries] = attrs.field(factory=dict)
    count: int = 0

    def add(self, sample: HardwareSample) -> None:
        key = (sample.source, sample.host, sample.uuid or str(sample.gpu_index))
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = GpuSeries(
                source=sample.source,
                host=sample.host,
                gpu_index=sample.gpu_index,
                uuid=sample.uuid,
                name=sample.name,
            )
        series.add(sample)
        self.count += 1


@attrs.frozen(kw_only=True)
class Energy:
    """Energy one GPU used over the measured phase."""

    joules: float
    #: ``counter`` (the GPU's energy counter) or ``power`` (power integrated over time).
    method: str
    #: share of the phase that samples covered; the rest is filled at the phase's average power.
    coverage: float
    counter_resets: int = 0


def counter_increase(
    t: np.ndarray, values: np.ndarray, start: float, end: float
) -> tuple[float, float, int] | None:
    """How much a counter grew between ``start`` and ``end``: ``(increase, covered, resets)``.

    A counter that goes down was reset (driver reload, GPU reset): it counts again from zero,
    so what it shows after the drop is what it gained since. Values between samples are
    interpolated linearly; ``covered`` is the part of the window the samples span.
    """
    ok = np.isfinite(values)
    t, values = t[ok], values[ok]
    if t.size < 2:
        return None
    order = np.argsort(t, kind="stable")
    t, values = t[order], values[order]
    steps = np.diff(values)
    reset = steps < 0
    steps[reset] = values[1:][reset]
    cumulative = np.concatenate(([0.0], np.cumsum(steps)))
    lo, hi = max(start, t[0]), min(end, t[-1])
    if hi <= lo:
        return None
    increase = float(np.interp(hi, t, cumulative) - np.interp(lo, t, cumulative))
    resets = int(np.count_nonzero(reset & (t[1:] > lo) & (t[:-1] < hi)))
    return increase, hi - lo, resets


def power_integral(
    t: np.ndarray, watts: np.ndarray, start: float, end: float
) -> tuple[float, float] | None:
    """Joules from power samples (trapezoids over ``[start, end]``): ``(joules, covered_ns)``."""
    ok = np.isfinite(watts)
    t, watts = t[ok], watts[ok]
    if t.size < 2:
        return None
    order = np.argsort(t, kind="stable")
    t, watts = t[order], watts[order]
    lo, hi = max(start, t[0]), min(end, t[-1])
    if hi <= lo:
        return None
    inside = (t > lo) & (t < hi)
    xs = np.concatenate(([lo], t[inside], [hi]))
    ys = np.interp(xs, t, watts)
    joules = float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs))) / 1e9
    return joules, hi - lo


def phase_energy(series: GpuSeries, start: float, end: float) -> Energy | None:
    """The GPU's energy over ``[start, end]`` (wall ns): its counter when it has one, else power.

    Sampling can begin a little after the phase does (NVML start-up); the uncovered part is
    filled at the average power of the covered part, and ``coverage`` says how much that was.
    """
    window = end - start
    if window <= 0:
        return None
    t = series.times()
    counted = counter_increase(t, series.column(ENERGY), start, end)
    if counted is not None:
        joules, covered, resets = counted
        method = "counter"
    else:
        integrated = power_integral(t, series.column("power_watts"), start, end)
        if integrated is None:
            return None
        (joules, covered), resets, method = integrated, 0, "power"
    coverage = min(1.0, covered / window)
    return Energy(joules=joules / coverage, method=method, coverage=coverage, counter_resets=resets)


def field_stats(values: np.ndarray, scale: float) -> dict[str, float | int | None]:
    values = values[np.isfinite(values)] * scale
    if values.size == 0:
        return {"avg": None, "min": None, "max": None, "p50": None, "p99": None, "count": 0}
    pct = np.percentile(values, PERCENTILES)
    return {
        "avg": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        **{f"p{p}": float(v) for p, v in zip(PERCENTILES, pct, strict=True)},
        "count": int(values.size),
    }


def output_tokens(result: RunResult) -> float | None:
    """Output tokens of the measured phase: the run metric, or throughput x duration."""
    total = result.value("total_output_tokens")
    if total is not None:
        return total
    throughput = result.value("output_token_throughput")
    duration = result.value("benchmark_duration")
    if throughput is None or duration is None:
        return None
    return throughput * duration


@attrs.frozen(kw_only=True)
class GpuSummary:
    series: GpuSeries
    #: ``host gpuN`` for the tables (with the source where two report the same index).
    label: str
    stats: dict[str, dict[str, Any]]
    energy: Energy | None
    samples: int


def summarize(store: TelemetryStore, start: float, end: float) -> list[GpuSummary]:
    ordered = sorted(store.series.values(), key=lambda s: (s.host, s.gpu_index, s.source))
    out = []
    for series, label in zip(ordered, _labels(ordered), strict=True):
        t = series.times()
        inside = (t >= start) & (t <= end)
        stats = {f.name: field_stats(series.column(f.name)[inside], f.scale) for f in STAT_FIELDS}
        out.append(
            GpuSummary(
                series=series,
                label=label,
                stats=stats,
                energy=phase_energy(series, start, end),
                samples=int(np.count_nonzero(inside)),
            )
        )
    return out


def counted_once(summaries: Sequence[GpuSummary]) -> list[GpuSummary]:
    """GPUs with an energy figure, each once: NVML and a DCGM exporter may see the same GPU."""
    seen: set[str] = set()
    out = []
    for summary in summaries:
        if summary.energy is None:
            continue
        uuid = summary.series.uuid
        if uuid and uuid in seen:
            continue
        seen.add(uuid)
        out.append(summary)
    return out


def build_sections(
    store: TelemetryStore,
    *,
    start_ns: int,
    end_ns: int,
    result: RunResult,
    sources: Sequence[str],
    interval_s: float,
    console: bool,
) -> list[ReportSection]:
    """The ``gpu_telemetry`` and ``gpu_energy`` sections of the exports (wall-clock window)."""
    summaries = summarize(store, float(start_ns), float(end_ns))
    if not summaries:
        return []
    gpus = []
    rows: list[dict[str, Any]] = []
    for summary in summaries:
        series = summary.series
        metrics = {}
        for field in STAT_FIELDS:
            stats = summary.stats[field.name]
            metrics[field.name] = {"unit": field.unit, "header": field.header, **stats}
            if stats["count"]:
                rows.append(
                    {
                        "GPU": summary.label,
                        "Metric": field.header,
                        "Unit": field.unit,
                        **{k: _round(stats[k]) for k in ("avg", "min", "max", "p50", "p99")},
                    }
                )
        gpus.append(
            {
                "source": series.source,
                "host": series.host,
                "gpu_index": series.gpu_index,
                "uuid": series.uuid,
                "name": series.name,
                "samples": summary.samples,
                "metrics": metrics,
                "energy": _energy_dict(summary.energy),
            }
        )
    telemetry = ReportSection(
        name=SECTION,
        title="GPU Telemetry (measured phase)",
        data={
            "window": {
                "start_time_ns": start_ns,
                "end_time_ns": end_ns,
                "duration_s": (end_ns - start_ns) / 1e9,
            },
            "interval_s": interval_s,
            "sources": list(sources),
            "samples": store.count,
            "gpus": gpus,
        },
        rows=tuple(rows),
        console=console,
    )
    return [telemetry, _energy_section(summaries, result, console)]


def _energy_section(
    summaries: Sequence[GpuSummary], result: RunResult, console: bool
) -> ReportSection:
    counted = counted_once(summaries)
    total = sum(s.energy.joules for s in counted if s.energy) if counted else None
    tokens = output_tokens(result)
    requests = result.value("request_count")
    per_token = tokens / total if tokens is not None and total else None
    per_request = total / requests if total is not None and requests else None
    rows: list[dict[str, Any]] = [
        {"Metric": f"Energy {s.label}", "Unit": "J", "Value": _round(s.energy.joules)}
        for s in counted
        if s.energy
    ]
    rows += [
        {"Metric": "Energy, all GPUs", "Unit": "J", "Value": _round(total)},
        {"Metric": "Output Tokens per Joule", "Unit": "tokens/J", "Value": _round(per_token)},
        {"Metric": "Energy per Request", "Unit": "J/request", "Value": _round(per_request)},
    ]
    return ReportSection(
        name=ENERGY_SECTION,
        title="GPU Energy (measured phase)",
        data={
            "energy": {"unit": "J", "value": total},
            "output_tokens_per_joule": {"unit": "tokens/J", "value": per_token},
            "energy_per_request": {"unit": "J/request", "value": per_request},
            "output_tokens": tokens,
            "request_count": requests,
            "gpus": [s.series.uuid or s.label for s in counted],
        },
        rows=tuple(rows),
        console=console,
    )


def _energy_dict(energy: Energy | None) -> dict[str, Any] | None:
    if energy is None:
        return None
    return {"unit": "J", **attrs.asdict(energy)}


def _labels(series: Sequence[GpuSeries]) -> list[str]:
    """``host gpuN``, with the source added where two sources report the same GPU index."""
    plain = [s.label for s in series]
    return [
        f"{label} ({s.source})" if plain.count(label) > 1 else label
        for s, label in zip(series, plain, strict=True)
    ]


def _round(value: float | None) -> float | str:
    """Six significant digits for the tables; an empty cell when there is no value."""
    if value is None:
        return ""
    return float(f"{value:.6g}")
