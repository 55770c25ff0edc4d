"""``GET /metrics`` of the mock server: its real state in vLLM's Prometheus names.

What it reports is what the server did: requests in flight as ``vllm:num_requests_running``
(the mock queues nothing, so ``vllm:num_requests_waiting`` stays 0), the time to first token
of every streamed answer (the same figure ``/stats`` keeps) as the
``vllm:time_to_first_token_seconds`` histogram, and token counters. Unlike ``/stats`` these
are cumulative since start, as Prometheus counters are: ``/stats/reset`` does not touch them.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiperf._mock.stats import RequestTrace, Stats

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
#: vLLM's bucket bounds for time to first token and end-to-end latency (seconds).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


class _Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": a value on a bound counts in it.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        out = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.sum!r}")
        out.append(f"{name}_count{{{labels}}} {running}")
        return out


class PromMetrics:
    """Cumulative counters and histograms, fed by every finished request."""

    def __init__(self, stats: Stats, model: str) -> None:
        self.stats = stats
        self.model = model.replace("\\", "\\\\").replace('"', '\\"')
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = 0
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.latency = _Histogram(LATENCY_BUCKETS)

    def observe(self, trace: RequestTrace) -> None:
        if trace.outcome != "ok":
            return
        self.success += 1
        self.prompt_tokens += trace.prompt_tokens
        self.generation_tokens += trace.completion_tokens
        ttft_ms = trace.ttft_ms()
        if ttft_ms is not None:
            self.ttft.observe(ttft_ms / 1e3)
        latency_ms = trace.latency_ms()
        if latency_ms is not None:
            self.latency.observe(latency_ms / 1e3)

    def render(self) -> bytes:
        labels = f'model_name="{self.model}"'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{labels}}} {self.stats.in_flight}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{labels}}} 0",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{labels}}} {self.prompt_tokens}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{labels}}} {self.generation_tokens}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            f"vllm:request_success_total{{{labels}}} {self.success}",
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            *self.ttft.lines("vllm:time_to_first_token_seconds", labels),
            "# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.",
            "# TYPE vllm:e2e_request_latency_seconds histogram",
            *self.latency.lines("vllm:e2e_request_latency_seconds", labels),
        ]
        return ("\n".join(lines) + "\n").encode()
