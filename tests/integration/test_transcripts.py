"""``aiperf profile`` against recorded responses of real servers, replayed byte for byte.

Each file in ``tests/data/transcripts`` is one engine's answer (status line, headers, body) as
its source writes it; ``tests/data/transcripts/README.md`` says where each shape came from.
The replay server sends the body one SSE event at a time on a known schedule, so the test
knows, independently of aiperf, which events carry content, when each one left, what the
server's usage says and what text the answer holds. aiperf must agree: no errors, the output
token count of the server (or, with no usage, of the tokenizer on exactly the content text),
one chunk per content event and none for role-only, usage-only, comment or post-[DONE]
events, and TTFT/ITL that match the schedule. The bad shapes must fail with their own type.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from support.replay_server import ReplayServer, Transcript

pytestmark = pytest.mark.integration

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "transcripts"
GUARD_S = 120
COUNT = 3
#: the replay schedule: the first event this long after the request, then one every GAP_S.
FIRST_S = 0.12
GAP_S = 0.03
#: how much later than the server sent it an event may be read on a busy machine. Loose on
#: purpose: an event read early (before the server sent it) or the wrong event taken as the
#: first token is caught by the firm lower bounds, which need no slack beyond EARLY_S.
LATE_S = 0.3
EARLY_S = 0.002


# -- what the transcript says, read without aiperf ------------------------------------------------


@attrs.frozen
class Expected:
    """What a transcript holds, by a reading independent of aiperf's parser."""

    #: indexes (in send order) of the events that carry content text (answer or reasoning),
    #: before any [DONE].
    content_events: tuple[int, ...]
    text: str
    #: completion_tokens of the last usage object before [DONE], if any.
    completion_tokens: int | None
    #: indexes of the events that carry reasoning text, and that text.
    reasoning_events: tuple[int, ...] = ()
    reasoning: str = ""


def _payload(event: bytes) -> str | None:
    """The data of one SSE event, or None for a comment-only event."""
    text = event.decode("utf-8").removeprefix("\ufeff")
    data = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return "\n".join(data) if data else None


def _content(obj: dict[str, Any], field: str = "content") -> str:
    choices = obj.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    part = (choice.get("delta") or {}).get(field) or (choice.get("text") if field == "content" else "") or ""
    if not part and isinstance(choice.get("message"), dict):
        part = choice["message"].get(field) or ""
    return part


def _reasoning(obj: dict[str, Any]) -> str:
    """Reasoning text under either name servers give it."""
    return _content(obj, "reasoning_content") or _content(obj, "reasoning")


def expected(transcript: Transcript) -> Expected:
    if not transcript.header("content-type", "").startswith("text/event-stream"):
        obj = json.loads(transcript.body)
        usage = obj.get("usage") or {}
        return Expected((0,), _content(obj), usage.get("completion_tokens"))
    content: list[int] = []
    texts: list[str] = []
    thinking: list[int] = []
    thoughts: list[str] = []
    tokens = None
    for i, event in enumerate(transcript.events):
        data = _payload(event)
        if data is None:
            continue
        if data == "[DONE]":
            break
        obj = json.loads(data)
        part, thought = _content(obj), _reasoning(obj)
        if part or thought:
            content.append(i)
            texts.append(part)
        if thought:
            thinking.append(i)
            thoughts.append(thought)
        if isinstance(obj.get("usage"), dict):
            tokens = obj["usage"].get("completion_tokens")
    return Expected(tuple(content), "".join(texts), tokens, tuple(thinking), "".join(thoughts))


# -- running aiperf --------------------------------------------------------------------------------


@attrs.frozen
class Run:
    process: subprocess.CompletedProcess[str]
    run_dir: Path

    @property
    def output(self) -> str:
        return self.process.stdout + self.process.stderr

    def records(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "profile_export.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def _endpoint_type(transcript: Transcript) -> str:
    return "completions" if "completions" in transcript.name else "chat"


def profile(url: str, run_dir: Path, *extra: str, streaming: bool, endpoint_type: str = "chat",
            count: int = COUNT, concurrency: int = 1) -> Run:  # fmt: skip
    argv = [
        sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "tiny-llama",
        "--endpoint-type", endpoint_type, *(["--streaming"] if streaming else []),
        "--isl", "16", "--osl", "8", "--concurrency", str(concurrency),
        "--request-count", str(count), "--artifact-dir", str(run_dir), "--no-progress",
        "--random-seed", "1", *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    env.update({"PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    process = subprocess.run(argv, capture_output=True, text=True, timeout=GUARD_S, env=env, check=False)
    run = Run(process=process, run_dir=run_dir)
    assert "Traceback" not in run.output, run.output
    assert (run_dir / "profile_export.jsonl").is_file(), run.output
    return run


def load(name: str) -> Transcript:
    return Transcript.load(TRANSCRIPTS / f"{name}.http")


def builtin_count(text: str) -> int:
    from aiperf._tokenizer import load_tokenizer

    return load_tokenizer("builtin").count(text)


# -- good shapes: every family ------------------------------------------------------------------

STREAMS = sorted(
    p.stem for p in TRANSCRIPTS.glob("*.http")
    if not p.stem.startswith("bad-") and p.stem != "vllm-chat-stream-error"
    and Transcript.load(p).header("content-type", "").startswith("text/event-stream")
)  # fmt: skip
BODIES = ["llamacpp-chat-json", "openai-chat-json"]


def test_every_transcript_is_covered() -> None:
    names = {p.stem for p in TRANSCRIPTS.glob("*.http")}
    covered = set(STREAMS) | set(BODIES) | set(BAD) | {"vllm-chat-stream-error"}
    assert names == covered
    families = {name.split("-")[0] for name in names}
    assert {"openai", "vllm", "sglang", "tgi", "llamacpp", "ollama", "transformers"} <= families


def test_readme_names_every_transcript() -> None:
    readme = (TRANSCRIPTS / "README.md").read_text()
    for path in TRANSCRIPTS.glob("*.http"):
        assert f"`{path.name}`" in readme, path.name
        assert Transcript.load(path).comments, f"{path.name} says nowhere where it came from"


@pytest.mark.parametrize("name", STREAMS)
def test_stream_measured_as_sent(name: str, tmp_path: Path) -> None:
    transcript = load(name)
    truth = expected(transcript)
    assert truth.content_events, "a good transcript carries content"
    with ReplayServer(transcript, first_delay_s=FIRST_S, gap_s=GAP_S) as server:
        run = profile(server.url, tmp_path / "run", streaming=True,
                      endpoint_type=_endpoint_type(transcript))  # fmt: skip
        assert server.requests == COUNT
    records = run.records()
    assert len(records) == COUNT
    assert [r["error"] for r in records] == [None] * COUNT, run.output
    assert run.process.returncode == 0, run.output

    if truth.reasoning:
        # the tokenizer's count (the default source): a reasoning stream's usage also counts
        # the </think> token, which sends no text (test_reasoning_stream_counted_apart)
        osl = builtin_count(truth.text) + builtin_count(truth.reasoning)
    else:
        osl = truth.completion_tokens or builtin_count(truth.text)
    first, last = truth.content_events[0], truth.content_events[-1]
    # concurrency 1: the n-th request aiperf started is the n-th the server read
    records.sort(key=lambda r: r["start_time_ns"])
    for record, served in zip(records, server.timings, strict=True):
        metrics = record["metrics"]
        assert metrics["output_sequence_length"] == osl
        gaps = metrics.get("inter_chunk_latency", [])
        # one chunk per content event: role-only, usage-only, comments and text after
        # [DONE] are not chunks
        assert len(gaps) + 1 == len(truth.content_events), gaps
        # Against the schedule (never earlier) and against when the server really sent
        # the first content event (a loaded machine may send late; aiperf must see that).
        ttft = metrics["time_to_first_token"] / 1e3
        sent_ttft = (served.sent_ns[first] - served.received_ns) / 1e9
        assert ttft >= FIRST_S + first * GAP_S - EARLY_S, ttft
        assert sent_ttft - EARLY_S <= ttft <= sent_ttft + LATE_S, (ttft, sent_ttft)
        # a late first read shortens the span, a late last read lengthens it
        span = sum(gaps) / 1e3
        sent_span = (served.sent_ns[last] - served.sent_ns[first]) / 1e9
        assert abs(span - sent_span) <= LATE_S, (span, sent_span)
        # (zero when a starved client read every chunk at once: presence is what holds)
        assert "inter_token_latency" in metrics


def test_reasoning_stream_counted_apart(tmp_path: Path) -> None:
    """vLLM's reasoning-parser stream (delta.reasoning_content, then delta.content): every
    reasoning and answer event is a chunk; the first reasoning event is TTFT and time to first
    reasoning token, the first answer event time to first output token; the reasoning is
    counted by the tokenizer (the usage has no reasoning_tokens) and the output by the usage."""
    transcript = load("vllm-chat-stream-reasoning")
    truth = expected(transcript)
    assert truth.reasoning_events and truth.reasoning_events[0] == truth.content_events[0]
    answer = [i for i in truth.content_events if i not in truth.reasoning_events]
    with ReplayServer(transcript, first_delay_s=FIRST_S, gap_s=GAP_S) as server:
        run = profile(server.url, tmp_path / "run", "--use-server-token-count", streaming=True)
    records = sorted(run.records(), key=lambda r: r["start_time_ns"])
    assert [r["error"] for r in records] == [None] * COUNT, run.output
    reasoning_tokens = builtin_count(truth.reasoning)
    for record, served in zip(records, server.timings, strict=True):
        metrics = record["metrics"]
        assert truth.completion_tokens == metrics["output_sequence_length"]
        assert reasoning_tokens == metrics["reasoning_token_count"] == record["client_tokens"]["reasoning"]
        assert "server" == record["token_source"] and "reasoning_tokens" not in record["usage"]
        assert len(truth.content_events) == len(metrics["inter_chunk_latency"]) + 1
        assert metrics["time_to_first_reasoning_token"] == metrics["time_to_first_token"]
        # the first answer event, against when the server sent it (as for TTFT above)
        ttfo = metrics["time_to_first_output_token"] / 1e3
        sent = (served.sent_ns[answer[0]] - served.received_ns) / 1e9
        assert ttfo >= FIRST_S + answer[0] * GAP_S - EARLY_S, ttfo
        assert sent - EARLY_S <= ttfo <= sent + LATE_S, (ttfo, sent)


@pytest.mark.parametrize("name", BODIES)
def test_body_measured_as_sent(name: str, tmp_path: Path) -> None:
    transcript = load(name)
    truth = expected(transcript)
    with ReplayServer(transcript, first_delay_s=FIRST_S) as server:
        run = profile(server.url, tmp_path / "run", streaming=False)
    records = run.records()
    assert [r["error"] for r in records] == [None] * COUNT, run.output
    for record in records:
        metrics = record["metrics"]
        assert metrics["output_sequence_length"] == truth.completion_tokens
        assert metrics["request_latency"] / 1e3 >= FIRST_S - EARLY_S


def test_concurrent_streams_no_done(tmp_path: Path) -> None:
    """The engine with no [DONE] (transformers serve), four streams at once."""
    transcript = load("transformers-chat-stream")
    with ReplayServer(transcript, first_delay_s=FIRST_S, gap_s=GAP_S) as server:
        run = profile(server.url, tmp_path / "run", streaming=True, count=12, concurrency=4)
    records = run.records()
    assert len(records) == 12
    assert [r["error"] for r in records] == [None] * 12, run.output


# -- endings ------------------------------------------------------------------------------------


def test_done_ends_the_request_while_the_server_keeps_the_stream_open(tmp_path: Path) -> None:
    """After [DONE] the server holds the response open for 3 s: the next request must not wait."""
    transcript = load("vllm-chat-stream-usage")
    hold_s = 3.0
    with ReplayServer(transcript, first_delay_s=FIRST_S, gap_s=GAP_S, hold_open_s=hold_s) as server:
        run = profile(server.url, tmp_path / "run", streaming=True, count=3)
        received = [served.received_ns for served in server.timings]
    records = run.records()
    assert [r["error"] for r in records] == [None] * 3, run.output
    stream_s = FIRST_S + (len(transcript.events) - 1) * GAP_S
    # concurrency 1: each request is sent when the one before it is over
    for before, after in zip(received, received[1:]):
        assert (after - before) / 1e9 < stream_s + 1.0 < hold_s, (after - before) / 1e9


def test_idle_keep_alive_closes_cause_no_errors(tmp_path: Path) -> None:
    """A server that closes a connection idle for 0.2 s, one request every 0.25 s."""
    transcript = load("openai-chat-stream-usage")
    with ReplayServer(transcript, idle_close_s=0.2) as server:
        run = profile(
            server.url, tmp_path / "run", "--request-rate", "4", "--request-rate-mode",
            "constant", streaming=True, count=8,
        )  # fmt: skip
        connections = server.connections
    records = run.records()
    assert [r["error"] for r in records] == [None] * 8, run.output
    # the server really did close idle connections: more than one was needed
    assert connections > 1


# -- bad shapes: each its own error type --------------------------------------------------------

BAD = {
    "bad-no-done-no-finish": ("incomplete_stream", True),
    "bad-empty-stream": ("empty_response", True),
    "bad-204": ("no_content", True),
    "bad-302": ("redirect", True),
    "bad-200-json-error": ("server_error_body", False),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_shape_is_a_typed_error(name: str, tmp_path: Path) -> None:
    error_type, streaming = BAD[name]
    with ReplayServer(load(name), gap_s=0.005) as server:
        run = profile(server.url, tmp_path / "run", streaming=streaming, count=2)
    records = run.records()
    assert len(records) == 2
    assert [r["error"] and r["error"]["type"] for r in records] == [error_type] * 2, run.output
    assert run.process.returncode != 0


def test_json_error_body_to_a_streaming_request(tmp_path: Path) -> None:
    with ReplayServer(load("bad-200-json-error")) as server:
        run = profile(server.url, tmp_path / "run", streaming=True, count=2)
    types = [r["error"] and r["error"]["type"] for r in run.records()]
    assert types == ["server_error_body"] * 2, run.output


def test_error_event_inside_a_stream(tmp_path: Path) -> None:
    """vLLM sends an exception as a data: {"error": ...} event after HTTP 200, then [DONE]."""
    with ReplayServer(load("vllm-chat-stream-error"), gap_s=0.005) as server:
        run = profile(server.url, tmp_path / "run", streaming=True, count=2)
    records = run.records()
    assert [r["error"] and r["error"]["type"] for r in records] == ["server_error_body"] * 2
    assert "longer than the maximum model length" in records[0]["error"]["message"]
