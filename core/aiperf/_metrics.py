"""Metric definitions (see docs/metrics.md) and the built-in processor that computes them.

Notation for one request: ``start`` is when the request was handed to the socket,
``chunk_i`` the arrival of the i-th chunk that carried content, ``end`` the arrival of the last
content chunk (the whole body when not streaming).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Literal

import attrs

from aiperf._types import TokenCounts, Usage

if TYPE_CHECKING:
    from aiperf._types import RequestRecord, RunContext, Tokenizer

NS_PER_MS = 1_000_000


#: how a plugin's run metric is made from the per-request values recorded under its tag:
#: their sum, mean, smallest, largest, or sum per second of the benchmark duration.
RUN_SUMMARIES = ("sum", "avg", "min", "max", "rate")


_TAG = re.compile(r"[a-z][a-z0-9_.]*")


def _check_tag(spec: MetricSpec, attribute: attrs.Attribute[Any], value: str) -> None:
    # The tag becomes a JSON key, a CSV cell, an MLflow metric key and part of an OTel name.
    if not isinstance(value, str) or not _TAG.fullmatch(value):
        raise ValueError(f"metric tag {value!r}: use lowercase letters, digits, '_' and '.'")


def _check_kind(spec: MetricSpec, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in ("request", "run"):
        raise ValueError(f"metric {spec.tag!r}: kind must be 'request' or 'run' (got {value!r})")


def _check_summary(spec: MetricSpec, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if spec.kind == "request" and value is not None:
        raise ValueError(
            f"metric {spec.tag!r}: a request metric is summarised as a distribution; "
            f"drop summary={value!r} or make it kind='run'"
        )
    if value is not None and value not in RUN_SUMMARIES:
        raise ValueError(
            f"metric {spec.tag!r}: summary must be one of {', '.join(RUN_SUMMARIES)} (got {value!r})"
        )


@attrs.frozen
class MetricSpec:
    """One metric: what it is called, in which unit it is shown, and how a run summarises it.

    The core's metrics and every plugin's are declared this way, through the
    ``aiperf_register_metrics`` hook; a record processor records the per-request values
    under ``tag`` (in base units), and every export (JSON, CSV, console, OTel, MLflow) shows
    the summary.
    """

    #: the name: the key in ``values``, in the exports and in telemetry.
    tag: str = attrs.field(validator=_check_tag)
    #: the label shown to people (console, CSV).
    header: str
    #: unit shown to people (exports, console).
    unit: str
    #: base value * scale = display value.
    scale: float = 1.0
    #: ``request``: a distribution over requests (avg, min, max, std, p1 ... p99);
    #: ``run``: one value per run.
    kind: Literal["request", "run"] = attrs.field(default="request", validator=_check_kind)
    streaming_only: bool = False
    #: when lower is better (for goodput SLOs: value must be <= the bound).
    lower_is_better: bool = True
    #: a run metric of a plugin: how its per-request values make the one value (one of
    #: :data:`RUN_SUMMARIES`). ``None`` for request metrics, and for the core's run metrics,
    #: which the core computes itself.
    summary: str | None = attrs.field(default=None, validator=_check_summary)


_MS = 1 / NS_PER_MS

METRICS: dict[str, MetricSpec] = {
    m.tag: m
    for m in (
        MetricSpec("time_to_first_token", "Time to First Token", "ms", _MS, "request", True),
        MetricSpec("time_to_second_token", "Time to Second Token", "ms", _MS, "request", True),
        MetricSpec(
            "time_to_first_output_token", "Time to First Output Token", "ms", _MS, "request", True
        ),
        MetricSpec(
            "time_to_first_reasoning_token", "Time to First Reasoning Token", "ms", _MS, "request",
            True,
        ),
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
        MetricSpec("num_images", "Number of Images", "images", 1.0, "request", lower_is_better=False),
        MetricSpec(
            "image_throughput", "Image Throughput", "images/s", 1.0, "request", lower_is_better=False
        ),
        MetricSpec("image_latency", "Image Latency", "ms", _MS, "request"),
        MetricSpec("output_image_bytes", "Output Image Bytes", "bytes", 1.0, "request"),
        MetricSpec("ranked_passages", "Ranked Passages", "passages", 1.0, "request", lower_is_better=False),
        MetricSpec(
            "passage_throughput", "Passage Throughput", "passages/s", 1.0, "request",
            lower_is_better=False,
        ),
        MetricSpec("input_image_count", "Input Image Count", "images", 1.0, "request"),
        MetricSpec("input_image_bytes", "Input Image Bytes", "bytes", 1.0, "request"),
        MetricSpec("input_audio_bytes", "Input Audio Bytes", "bytes", 1.0, "request"),
        MetricSpec("input_audio_seconds", "Input Audio Length", "s", 1.0, "request"),
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
        MetricSpec("total_reasoning_tokens", "Total Reasoning Tokens", "tokens", 1.0, "run"),
    )
}

#: total output tokens from the server and from the tokenizer differ by more than this: say so.
TOKEN_DISAGREEMENT = 0.10
#: mean output below this share of the ``max_tokens`` asked for: the server ignored the limit.
SHORT_OUTPUT = 0.5
#: no server counts more tokens than this for one request; a larger value is garbage.
USAGE_MAX = 10**9
#: visible completion tokens may exceed the bytes received by this much (an end-of-sequence or
#: other special token is counted by the server but sends no text).
USAGE_BYTE_SLACK = 16
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens")


def checked_usage(usage: Any, output_bytes: int) -> tuple[Usage | None, str | None]:
    """The server's ``usage`` if every field is a sane token count, else ``(None, reason)``.

    The fields come straight from the server's JSON: anything (a string, a list, a bool,
    NaN, 10**400) may be in them. A whole usage is dropped when one field is absurd, since a
    server that sends garbage in one count cannot be trusted for the others.
    """
    if usage is None:
        return None, None
    clean: dict[str, int | None] = {}
    for name in _USAGE_FIELDS:
        value = getattr(usage, name, None)
        problem = _usage_problem(value)
        if problem is not None:
            return None, f"usage.{name} {problem}"
        clean[name] = None if value is None else int(value)
    completion, reasoning = clean["completion_tokens"], clean["reasoning_tokens"]
    if completion is not None and reasoning is not None and reasoning > completion:
        return None, f"usage.reasoning_tokens ({reasoning}) exceeds completion_tokens ({completion})"
    if completion is not None:
        # Hidden reasoning is counted but not sent: only the visible part needs bytes.
        visible = completion - (reasoning or 0)
        if visible > output_bytes + USAGE_BYTE_SLACK:
            return None, (
                f"usage.completion_tokens ({completion}) is more than the {output_bytes} bytes "
                "of output received could carry"
            )
    return Usage(**clean), None


def _usage_problem(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is not a number (got {type(value).__name__})"
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return f"is not a whole number (got {value!r})"
    if value < 0:
        return f"is negative (got {int(value)})"
    if value > USAGE_MAX:
        return f"is absurdly large (over {USAGE_MAX})"
    return None


def count_tokens(record: RequestRecord, tokenizer: Tokenizer, use_server: bool) -> TokenCounts:
    """Both counts of one finished request, and the source its token metrics use.

    Every token-derived metric of a request (ISL, OSL, ITL, reasoning) uses one source: the
    client's tokenizer by default, the server's ``usage`` with ``--use-server-token-count``
    when it sent a sane one. Mixing them (the first chunk counted by one, the total by the
    other) once made ITL twice the truth.
    """
    text = record.output_text + record.reasoning_text
    server, ignored = checked_usage(record.usage, len(text.encode("utf-8", errors="replace")))
    client_output = tokenizer.count(text) if text else 0
    client_reasoning = tokenizer.count(record.reasoning_text) if record.reasoning_text else 0
    first = tokenizer.count(record.first_chunk_text) if record.first_chunk_text else 0
    # The server's count stands for this request only when it covers the output.
    server_usable = server is not None and (server.completion_tokens is not None or not text)
    return TokenCounts(
        source="server" if use_server and server_usable else "client",
        server=server,
        usage_ignored=ignored,
        client_input=record.input_tokens,
        client_output=client_output,
        client_reasoning=client_reasoning,
        client_first_chunk=first,
    )


@attrs.define
class TimingProcessor:
    """The built-in record processor: TTFT, ITL, latency and token counts for one request."""

    name: str = "timing"
    order: int = 0

    def process(self, record: RequestRecord, values: dict[str, float], run: RunContext) -> None:
        tokenizer = run.tokenizer
        assert tokenizer is not None, "the run's tokenizer is set before any request"
        values["input_sequence_length"] = float(record.input_tokens or 0)
        chunks = record.chunk_ns
        end = chunks[-1] if chunks else record.end_ns
        if end is not None and record.start_ns:
            values["request_latency"] = end - record.start_ns
        if record.sent_end_ns and record.start_ns:
            values["request_send_time"] = record.sent_end_ns - record.start_ns
        if record.values:
            values.update(record.values)
        if not record.ok:
            return
        if record.values:
            _per_item(values)
        use_server = bool(getattr(run.config, "use_server_token_count", False))
        counts = count_tokens(record, tokenizer, use_server)
        record.token_counts = counts
        server = counts.server if counts.source == "server" else None
        if server is not None and server.prompt_tokens is not None:
            values["input_sequence_length"] = float(server.prompt_tokens)
        if server is not None and server.completion_tokens is not None:
            osl = server.completion_tokens
        else:
            osl = counts.client_output or 0
        values["output_sequence_length"] = float(osl)
        if server is not None and server.reasoning_tokens is not None:
            values["reasoning_token_count"] = float(server.reasoning_tokens)
        elif record.reasoning_text:
            values["reasoning_token_count"] = float(counts.client_reasoning or 0)
        if not run.config.streaming or not chunks:
            return
        values["time_to_first_token"] = chunks[0] - record.start_ns
        if record.first_answer_chunk is not None:
            values["time_to_first_output_token"] = chunks[record.first_answer_chunk] - record.start_ns
        if record.first_reasoning_chunk is not None:
            values["time_to_first_reasoning_token"] = (
                chunks[record.first_reasoning_chunk] - record.start_ns
            )
        if len(chunks) >= 2:
            values["time_to_second_token"] = chunks[1] - chunks[0]
        if osl < 2 or len(chunks) < 2:
            return
        # ITL divides by tokens, not chunks: a chunk carrying k tokens must not make the
        # server look k times slower per token. Tokens that arrived with the first chunk are
        # not part of the decode interval; they are counted in the same units as ``osl``.
        first = _first_chunk_tokens(counts, osl, server is not None)
        itl = (chunks[-1] - chunks[0]) / (osl - first)
        values["inter_token_latency"] = itl
        if itl > 0:
            values["output_token_throughput_per_user"] = 1e9 / itl


def _per_item(values: dict[str, float]) -> None:
    """Rates of what a request returned besides tokens (images, ranked passages)."""
    latency = values.get("request_latency")
    if not latency:
        return
    images = values.get("num_images")
    if images:
        values["image_throughput"] = images * 1e9 / latency
        values["image_latency"] = latency / images
    passages = values.get("ranked_passages")
    if passages:
        values["passage_throughput"] = passages * 1e9 / latency


def _first_chunk_tokens(counts: TokenCounts, osl: int, server_units: bool) -> int:
    first = counts.client_first_chunk or 1
    if server_units and counts.client_output:
        # The server does not say how many of its tokens the first chunk held: take the
        # chunk's share of the client's count, in the server's units.
        first = round(osl * first / counts.client_output)
    return min(max(first, 1), osl - 1)


@attrs.define
class TokenTally:
    """Run-wide facts about token counts, for the notes at the end of a run."""

    requests: int = 0
    server_used: int = 0
    usage_ignored: int = 0
    first_ignored: str = ""
    #: requests with both counts: the two totals.
    compared: int = 0
    server_output: int = 0
    client_output: int = 0
    #: requests that asked for ``max_tokens``: tokens asked for and received.
    limited: int = 0
    asked: int = 0
    received: float = 0.0

    #: stream events of unknown types skipped, over all requests.
    ignored_events: int = 0
    ignored_requests: int = 0

    def add(self, record: RequestRecord, values: dict[str, float]) -> None:
        if record.ignored_events:
            self.ignored_events += record.ignored_events
            self.ignored_requests += 1
        counts = record.token_counts
        if counts is None:
            return
        self.requests += 1
        self.server_used += counts.source == "server"
        if counts.usage_ignored:
            self.usage_ignored += 1
            self.first_ignored = self.first_ignored or counts.usage_ignored
        server = counts.server
        if server is not None and server.completion_tokens is not None and counts.client_output:
            self.compared += 1
            self.server_output += server.completion_tokens
            self.client_output += counts.client_output
        if record.max_tokens:
            self.limited += 1
            self.asked += record.max_tokens
            self.received += values.get("output_sequence_length", 0.0)

    def notes(self, use_server: bool) -> list[str]:
        out: list[str] = []
        if self.ignored_events:
            out.append(
                f"skipped {self.ignored_events} stream events of types this endpoint does not "
                f"know, in {self.ignored_requests} requests (they carried no text aiperf counts)"
            )
        if self.usage_ignored:
            out.append(
                f"ignored the server's usage in {self.usage_ignored} of {self.requests} "
                f"requests as absurd (first: {self.first_ignored}); those use the tokenizer's counts"
            )
        if use_server and self.server_used < self.requests:
            out.append(
                f"--use-server-token-count: {self.requests - self.server_used} of {self.requests} "
                "requests had no usable server usage and were counted with the tokenizer"
            )
        if self.compared and self.server_output:
            gap = abs(self.server_output - self.client_output) / self.server_output
            if gap > TOKEN_DISAGREEMENT:
                used = "server's" if use_server else "tokenizer's"
                out.append(
                    f"output token counts differ by {gap:.0%}: the server counted "
                    f"{self.server_output}, the tokenizer {self.client_output} over {self.compared} "
                    f"requests; the summary uses the {used} (see --tokenizer, --use-server-token-count)"
                )
        if self.limited and self.asked:
            share = self.received / self.asked
            if share < SHORT_OUTPUT:
                out.append(
                    f"outputs averaged {self.received / self.limited:.1f} tokens, {share:.0%} of the "
                    f"{self.asked / self.limited:.1f} asked for with max_tokens: the server may "
                    "ignore it (try --extra-inputs ignore_eos:true min_tokens:N)"
                )
        return out


def inter_chunk_gaps(record: RequestRecord) -> tuple[int, ...]:
    chunks = record.chunk_ns
    return tuple(b - a for a, b in zip(chunks, chunks[1:]))
