"""Statistics over the measured phase.

Per-request values are kept exactly (one float per request per metric) and summarised with
numpy: percentiles interpolate linearly between closest ranks, ``std`` is the population
standard deviation. Per-chunk gaps can number tens of millions in a long run, so past a cap
they are kept as a uniform reservoir sample: percentiles stay unbiased, memory stays bounded.
"""

from __future__ import annotations

import random
from array import array
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from aiperf._metrics import METRICS
from aiperf._types import ErrorSummary, MetricStats, Phase, RequestMetrics

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiperf._metrics import MetricSpec

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)
STD_KIND = "population"
#: per-chunk gaps kept exactly up to this many; a reservoir sample beyond.
CHUNK_GAP_CAP = 2_000_000


def describe(tag: str, header: str, unit: str, values: Any, scale: float = 1.0) -> MetricStats:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return MetricStats(tag=tag, header=header, unit=unit, count=0)
    if scale != 1.0:
        arr = arr * scale
    pct = np.percentile(arr, PERCENTILES)
    return MetricStats(
        tag=tag,
        header=header,
        unit=unit,
        count=int(arr.size),
        avg=float(arr.mean()),
        min=float(arr.min()),
        max=float(arr.max()),
        std=float(arr.std()),
        percentiles={f"p{p}": float(v) for p, v in zip(PERCENTILES, pct)},
    )


def single(tag: str, value: float, specs: dict[str, MetricSpec] = METRICS) -> MetricStats:
    spec = specs[tag]
    return MetricStats(tag=tag, header=spec.header, unit=spec.unit, count=1, avg=value)


def summarise_run(spec: MetricSpec, values: Any, seconds: float) -> float | None:
    """A plugin's run metric from its per-request values (base units), in display units."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return None
    if spec.summary == "rate":
        return float(arr.sum()) * spec.scale / seconds if seconds > 0 else None
    reduce: Any = {"sum": np.sum, "avg": np.mean, "min": np.min, "max": np.max}[spec.summary or ""]
    return float(reduce(arr)) * spec.scale


@attrs.define
class Reservoir:
    """Keeps every value up to ``cap``, then a uniform random sample of ``cap`` of them."""

    cap: int = CHUNK_GAP_CAP
    values: array[int] = attrs.field(factory=lambda: array("q"))
    seen: int = 0
    _rng: random.Random = attrs.field(factory=lambda: random.Random(0))

    def extend(self, items: Iterable[int]) -> None:
        for item in items:
            self.seen += 1
            if len(self.values) < self.cap:
                self.values.append(item)
            else:
                slot = self._rng.randrange(self.seen)
                if slot < self.cap:
                    self.values[slot] = item


@attrs.define
class Aggregator:
    """Collects the measured phase's per-request metrics as they finish."""

    goodput: dict[str, float] = attrs.field(factory=dict)
    #: the metrics to summarise: the core's, and those plugins registered (``run.metrics``).
    specs: dict[str, MetricSpec] = attrs.field(factory=lambda: dict(METRICS))
    values: dict[str, array[float]] = attrs.field(factory=lambda: defaultdict(lambda: array("d")))
    chunk_gaps: Reservoir = attrs.field(factory=Reservoir)
    send_lag_ns: array[float] = attrs.field(factory=lambda: array("d"))
    ok: int = 0
    failed: int = 0
    good: int = 0
    first_start_ns: int | None = None
    last_end_ns: int | None = None
    output_tokens: float = 0.0
    input_tokens: float = 0.0
    reasoning_tokens: float = 0.0
    errors: dict[str, list[Any]] = attrs.field(factory=dict)

    def add(self, m: RequestMetrics, send_lag_ns: int | None = None) -> None:
        if m.phase is not Phase.PROFILE:
            return
        if self.first_start_ns is None or m.start_ns < self.first_start_ns:
            self.first_start_ns = m.start_ns
        if self.last_end_ns is None or m.end_ns > self.last_end_ns:
            self.last_end_ns = m.end_ns
        if send_lag_ns is not None:
            self.send_lag_ns.append(send_lag_ns)
        if not m.ok:
            self.failed += 1
            assert m.error is not None
            entry = self.errors.setdefault(m.error.type, [0, m.error.message])
            entry[0] += 1
            return
        self.ok += 1
        for tag, value in m.values.items():
            self.values[tag].append(value)
        if m.inter_chunk_latency_ns:
            self.chunk_gaps.extend(m.inter_chunk_latency_ns)
        self.output_tokens += m.values.get("output_sequence_length", 0.0)
        self.reasoning_tokens += m.values.get("reasoning_token_count", 0.0)
        self.input_tokens += m.values.get("input_sequence_length", 0.0)
        if self.goodput and self._meets_slos(m.values):
            self.good += 1

    def _meets_slos(self, values: dict[str, float]) -> bool:
        for tag, bound in self.goodput.items():
            spec = self.specs.get(tag) or METRICS[tag]
            value = values.get(tag)
            if value is None:
                return False
            shown = value * spec.scale
            if spec.lower_is_better and shown > bound:
                return False
            if not spec.lower_is_better and shown < bound:
                return False
        return True

    # -- results ---------------------------------------------------------------------------

    def request_metrics(self) -> dict[str, MetricStats]:
        out: dict[str, MetricStats] = {}
        for tag, spec in self.specs.items():
            if spec.kind != "request":
                continue
            if tag == "inter_chunk_latency":
                data: Any = np.frombuffer(self.chunk_gaps.values, dtype=np.int64) if self.chunk_gaps.values else []
            else:
                data = np.frombuffer(self.values[tag], dtype=np.float64) if self.values.get(tag) else []
            if len(data) == 0:
                continue
            out[tag] = describe(tag, spec.header, spec.unit, data, spec.scale)
        return out

    def run_metrics(self) -> dict[str, MetricStats]:
        total = self.ok + self.failed
        out = {
            "request_count": single("request_count", float(self.ok)),
            "error_request_count": single("error_request_count", float(self.failed)),
            "request_error_rate": single(
                "request_error_rate", 100.0 * self.failed / total if total else 0.0
            ),
        }
        if self.first_start_ns is None or self.last_end_ns is None:
            return out
        duration_ns = self.last_end_ns - self.first_start_ns
        out["benchmark_duration"] = single("benchmark_duration", duration_ns / 1e9)
        if duration_ns > 0:
            seconds = duration_ns / 1e9
            out["request_throughput"] = single("request_throughput", self.ok / seconds)
            out["output_token_throughput"] = single(
                "output_token_throughput", self.output_tokens / seconds
            )
            out["total_token_throughput"] = single(
                "total_token_throughput", (self.input_tokens + self.output_tokens) / seconds
            )
            if self.goodput:
                out["goodput"] = single("goodput", self.good / seconds)
        out["total_output_tokens"] = single("total_output_tokens", self.output_tokens)
        out["total_input_tokens"] = single("total_input_tokens", self.input_tokens)
        if self.reasoning_tokens:
            out["total_reasoning_tokens"] = single("total_reasoning_tokens", self.reasoning_tokens)
        seconds = duration_ns / 1e9
        for tag, spec in self.specs.items():
            if spec.kind != "run" or spec.summary is None or tag in out or not self.values.get(tag):
                continue
            value = summarise_run(spec, np.frombuffer(self.values[tag], dtype=np.float64), seconds)
            if value is not None:
                out[tag] = single(tag, value, self.specs)
        return out

    def send_lag(self) -> MetricStats | None:
        if not self.send_lag_ns:
            return None
        return describe("send_lag", "Send Lag", "ms", np.frombuffer(self.send_lag_ns), 1e-6)

    def error_summary(self) -> tuple[ErrorSummary, ...]:
        items = sorted(self.errors.items(), key=lambda kv: -kv[1][0])
        return tuple(ErrorSummary(type=t, count=c, first_message=msg) for t, (c, msg) in items)
