"""What the mock server measured about itself, served at ``GET /stats``."""

from __future__ import annotations

import itertools
import math
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

#: Percentiles in every summary; linear interpolation between closest ranks (numpy's default).
PERCENTILES = (50, 90, 99)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of already sorted values, interpolating linearly."""
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    frac = pos - low
    return ordered[low] + (ordered[high] - ordered[low]) * frac


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, avg, min, max and p50/p90/p99 of ``values`` (ms in, ms out)."""
    if not values:
        summary: dict[str, float | int | None] = {"count": 0, "avg": None, "min": None, "max": None}
        summary.update({f"p{q}": None for q in PERCENTILES})
        return summary
    ordered = sorted(values)
    summary = {
        "count": len(ordered),
        "avg": math.fsum(ordered) / len(ordered),
        "min": ordered[0],
        "max": ordered[-1],
    }
    summary.update({f"p{q}": percentile(ordered, q) for q in PERCENTILES})
    return summary


class RequestTrace:
    """One inference request as the server saw it; times are event-loop seconds."""

    __slots__ = (
        "body",
        "cached_tokens",
        "chunk_writes",
        "completion_tokens",
        "endpoint",
        "generation",
        "headers",
        "model",
        "outcome",
        "prompt_tokens",
        "reasoning_tokens",
        "reply",
        "rid",
        "status",
        "stream",
        "t_done",
        "t_received",
    )

    def __init__(
        self,
        *,
        rid: int,
        endpoint: str,
        model: str,
        stream: bool,
        t_received: float,
        generation: int,
    ) -> None:
        self.rid = rid
        self.endpoint = endpoint
        self.model = model
        self.stream = stream
        self.t_received = t_received
        self.generation = generation
        self.status = 200
        self.outcome = "ok"
        self.prompt_tokens = 0
        self.completion_tokens = 0
        #: the first this many output tokens went out as reasoning.
        self.reasoning_tokens = 0
        #: prompt tokens a prefix cache would hold from earlier prompts (see _mock/prefix.py).
        self.cached_tokens = 0
        #: when each content chunk was handed to the socket, in order.
        self.chunk_writes: list[float] = []
        #: when the last content (or the whole body) was handed to the socket.
        self.t_done: float | None = None
        #: with --record-header: the request's values of those headers (lower-case names).
        self.headers: dict[str, str] | None = None
        #: with --record-bodies: the request's JSON body and the answer's text.
        self.body: Any = None
        self.reply: str | None = None

    def ttft_ms(self) -> float | None:
        if not self.stream or not self.chunk_writes:
            return None
        return (self.chunk_writes[0] - self.t_received) * 1e3

    def gaps_ms(self) -> list[float]:
        writes = self.chunk_writes
        return [(b - a) * 1e3 for a, b in itertools.pairwise(writes)]

    def latency_ms(self) -> float | None:
        return None if self.t_done is None else (self.t_done - self.t_received) * 1e3

    def as_dict(self, started_at: float, loop_origin: float) -> dict[str, Any]:
        return {
            "id": self.rid,
            "endpoint": self.endpoint,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "outcome": self.outcome,
            "received_at": started_at + (self.t_received - loop_origin),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "prefix_cached_tokens": self.cached_tokens,
            "chunks": len(self.chunk_writes),
            "ttft_ms": self.ttft_ms(),
            "latency_ms": self.latency_ms(),
            "chunk_gaps_ms": self.gaps_ms(),
            **({"headers": self.headers} if self.headers is not None else {}),
            **({"body": self.body, "reply": self.reply} if self.body is not None else {}),
        }


class Stats:
    """Counters and timing samples since start or the last reset.

    Timing summaries cover requests that completed normally (no injected error or fault, no
    client disconnect); the per-request list under ``?raw=1`` covers every request. Samples
    live in compact arrays up to ``capacity`` per list; later ones are counted as dropped.
    """

    def __init__(self, *, capacity: int, loop_origin: float) -> None:
        self.capacity = capacity
        self.loop_origin = loop_origin
        self.started_at = time.time()
        self.generation = 0
        self.in_flight = 0
        #: called with every finished request, whatever the window (``/metrics`` counts all).
        self.on_finish: Callable[[RequestTrace], None] | None = None
        self.reset()

    def reset(self) -> None:
        # Requests still in flight belong to the old window: they finish under an old
        # generation number and are ignored, so counts and samples stay consistent.
        self.generation += 1
        self.window_started_at = time.time()
        self.total = 0
        self.ok = 0
        self.streaming = 0
        self.by_endpoint: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.client_disconnects = 0
        #: keep-alive connections closed by --idle-timeout.
        self.idle_closes = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.dropped = 0
        self.ttft = array("d")
        self.gaps = array("d")
        self.latency = array("d")
        self.traces: list[RequestTrace] = []

    def begin(self, trace: RequestTrace) -> None:
        self.in_flight += 1
        self.total += 1
        self.by_endpoint[trace.endpoint] = self.by_endpoint.get(trace.endpoint, 0) + 1
        if trace.stream:
            self.streaming += 1

    def finish(self, trace: RequestTrace) -> None:
        """Account a request whose response is over (``trace.outcome`` says how it ended)."""
        self.in_flight -= 1
        if self.on_finish is not None:
            self.on_finish(trace)
        if trace.generation != self.generation:
            return
        if len(self.traces) < self.capacity:
            self.traces.append(trace)
        outcome = trace.outcome
        if outcome == "error":
            key = str(trace.status)
            self.errors[key] = self.errors.get(key, 0) + 1
            return
        if outcome == "client_disconnect":
            self.client_disconnects += 1
            return
        if outcome != "ok":
            self.faults[outcome] = self.faults.get(outcome, 0) + 1
            return
        self.ok += 1
        self.prompt_tokens += trace.prompt_tokens
        self.completion_tokens += trace.completion_tokens
        self.cached_tokens += trace.cached_tokens
        self._add(self.latency, trace.latency_ms())
        self._add(self.ttft, trace.ttft_ms())
        writes = trace.chunk_writes
        for i in range(1, len(writes)):
            self._add(self.gaps, (writes[i] - writes[i - 1]) * 1e3)

    def _add(self, samples: array[float], value: float | None) -> None:
        if value is None:
            return
        if len(samples) < self.capacity:
            samples.append(value)
        else:
            self.dropped += 1

    def snapshot(self, *, raw: bool, config: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "started_at": self.started_at,
            "window_started_at": self.window_started_at,
            "config": config,
            "requests": {
                "total": self.total,
                "ok": self.ok,
                "in_flight": self.in_flight,
                "streaming": self.streaming,
                "by_endpoint": dict(self.by_endpoint),
                "errors": dict(self.errors),
                "faults": dict(self.faults),
                "client_disconnects": self.client_disconnects,
                "idle_closes": self.idle_closes,
            },
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "prefix_cache": {
                "cached_tokens": self.cached_tokens,
                "hit_ratio": self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None,
            },
            "ttft_ms": summarize(self.ttft),
            "chunk_gap_ms": summarize(self.gaps),
            "request_latency_ms": summarize(self.latency),
            "dropped_samples": self.dropped,
        }
        if raw:
            data["raw"] = {
                "ttft_ms": self.ttft.tolist(),
                "chunk_gap_ms": self.gaps.tolist(),
                "request_latency_ms": self.latency.tolist(),
                "requests": [t.as_dict(self.started_at, self.loop_origin) for t in self.traces],
            }
        return data
