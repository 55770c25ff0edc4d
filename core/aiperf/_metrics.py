"""Metric definitions (see docs/metrics.md) and the built-in processor that computes them.

Notation for one request: ``start`` is when the request was handed to the socket,
``chunk_i`` the arrival of the i-th chunk that carried content, ``end`` the arrival of the last
content chunk (the whole body when not streaming).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

if TYPE_CHECKING:
    from aiperf._types import RequestRecord, RunContext, Tokenizer

NS_PER_MS = 1_000_000


@attrs.frozen
class MetricSpec:
    tag: str
    header: str
    #: unit shown to people (exports, console).
    unit: str
    #: base value * scale = display value.
    scale: float
    kind: Literal["request", "run"]
    streaming_only: bool = False
    #: when lower is better (for goodput SLOs: value must be <= the bound).
    lower_is_better: bool = True


_MS = 1 / NS_PER_MS

METRICS: dict[str, MetricSpec] = {
    m.tag: m
    for m in (
        MetricSpec("time_to_first_token", "Time to First Token", "ms", _MS, "request", True),
        MetricSpec("time_to_second_token", "Time to Second Token", "ms", _MS, "request", True),
        MetricSpec("request_latency", "Request Latency", "ms", _MS, "request"),
        MetricSpec("request_send_time", "Request Send Time", "ms", _MS, "request"),
        MetricSpec("inter_token_latency", "Inter Token Latency", "ms", _MS, "request", True),
        MetricSpec("inter_chunk_latency", "Inter Chunk Latency", "ms", _MS, "request", True),
        MetricSpec(
            "output_token_throughput_per_user", "Output Token Throughput Per User", "tokens/s",
            1.0, "request", True, lower_is_better=False,
        ),
        MetricSpec("input_sequence_length", "Input Sequence Length", "tokens", 1.0, "request"),
        MetricSpec("output_sequence_length", "Output Sequence Length", "tokens", 1.0, "request"),
        MetricSpec("reasoning_token_count", "Reasoning Token Count", "tokens", 1.0, "request"),
        MetricSpec("benchmark_duration", "Benchmark Duration", "s", 1e-9, "run"),
        MetricSpec("request_count", "Request Count", "requests", 1.0, "run"),
        MetricSpec("error_request_count", "Error Request Count", "requests", 1.0, "run"),
        MetricSpec("request_error_rate", "Request Error Rate", "%", 1.0, "run"),
        MetricSpec("request_throughput", "Request Throughput", "requests/s", 1.0, "run"),
        MetricSpec("output_token_throughput", "Output Token Throughput", "tokens/s", 1.0, "run"),
        MetricSpec("total_token_throughput", "Total Token Throughput", "tokens/s", 1.0, "run"),
        MetricSpec("goodput", "Goodput", "requests/s", 1.0, "run"),
        MetricSpec("total_input_tokens", "Total Input Tokens", "tokens", 1.0, "run"),
        MetricSpec("total_output_tokens", "Total Output Tokens", "tokens", 1.0, "run"),
    )
}

#: tokens reported by the server and by our tokenizer differ by more than this: say so.
TOKEN_DISAGREEMENT = 0.10


@attrs.define
class TimingProcessor:
    """The built-in record processor: TTFT, ITL, latency and token counts for one request."""

    name: str = "timing"
    order: int = 0
    #: requests whose server usage and tokenizer count disagreed by > 10 %.
    token_disagreements: int = 0

    def process(self, record: RequestRecord, values: dict[str, float], run: RunContext) -> None:
        tokenizer = run.tokenizer
        assert tokenizer is not None, "the run's tokenizer is set before any request"
        values["input_sequence_length"] = _input_tokens(record)
        chunks = record.chunk_ns
        end = chunks[-1] if chunks else record.end_ns
        if end is not None and record.start_ns:
            values["request_latency"] = end - record.start_ns
        if record.sent_end_ns and record.start_ns:
            values["request_send_time"] = record.sent_end_ns - record.start_ns
        if not record.ok:
            return
        osl = self._output_tokens(record, tokenizer)
        if osl is not None:
            values["output_sequence_length"] = osl
        if record.reasoning_text or (record.usage and record.usage.reasoning_tokens):
            values["reasoning_token_count"] = _reasoning_tokens(record, tokenizer)
        if not run.config.streaming or not chunks:
            return
        values["time_to_first_token"] = chunks[0] - record.start_ns
        if len(chunks) >= 2:
            values["time_to_second_token"] = chunks[1] - chunks[0]
        if osl is None or osl < 2 or len(chunks) < 2:
            return
        # ITL divides by tokens, not chunks: a chunk carrying k tokens must not make the
        # server look k times slower per token. Tokens that arrived with the first chunk
        # are not part of the decode interval.
        first = tokenizer.count(record.first_chunk_text) if record.first_chunk_text else 1
        first = min(max(first, 1), int(osl) - 1)
        itl = (chunks[-1] - chunks[0]) / (osl - first)
        values["inter_token_latency"] = itl
        if itl > 0:
            values["output_token_throughput_per_user"] = 1e9 / itl

    def _output_tokens(self, record: RequestRecord, tokenizer: Tokenizer) -> float | None:
        server = record.usage.completion_tokens if record.usage else None
        text = record.output_text + record.reasoning_text
        if server is not None:
            if text and server > 0:
                ours = tokenizer.count(text)
                if abs(ours - server) / server > TOKEN_DISAGREEMENT:
                    self.token_disagreements += 1
            return float(server)
        if not text:
            return 0.0
        return float(tokenizer.count(text))


def _reasoning_tokens(record: RequestRecord, tokenizer: Tokenizer) -> float:
    if record.usage and record.usage.reasoning_tokens is not None:
        return float(record.usage.reasoning_tokens)
    return float(tokenizer.count(record.reasoning_text))


def _input_tokens(record: RequestRecord) -> float:
    if record.usage and record.usage.prompt_tokens is not None:
        return float(record.usage.prompt_tokens)
    return float(record.input_tokens or 0)


def inter_chunk_gaps(record: RequestRecord) -> tuple[int, ...]:
    chunks = record.chunk_ns
    return tuple(b - a for a, b in zip(chunks, chunks[1:]))
