"""Token counts: the server's usage and the tokenizer's kept side by side, one source per
request for every token-derived metric, absurd usage ignored with a counted note."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf._config import ProfileConfig
from aiperf._metrics import USAGE_MAX, TimingProcessor, TokenTally, checked_usage
from aiperf._types import Phase, RequestRecord, RunContext, Usage
from aiperf.testing import LoopbackServer, Received, Reply, make_run

NS = 1_000_000


class WordTokenizer:
    """Counts whitespace-separated words, each ``weight`` tokens (a tokenizer that disagrees
    with the server by a known factor)."""

    name = "words"

    def __init__(self, weight: int = 1) -> None:
        self.weight = weight

    def count(self, text: str) -> int:
        return len(text.split()) * self.weight


def run_context(tokenizer: Any, **config: Any) -> RunContext:
    return make_run(Path("."), config=ProfileConfig(model="m", streaming=True, **config), tokenizer=tokenizer)


def streamed(words: int, gap_ms: float, usage: Usage | None) -> RequestRecord:
    """One word per chunk, ``gap_ms`` apart, first chunk 50 ms after the start."""
    record = RequestRecord(index=0, phase=Phase.PROFILE, input_tokens=8, max_tokens=words)
    record.start_ns = 1_000 * NS
    record.chunk_ns = [record.start_ns + 50 * NS + int(i * gap_ms * NS) for i in range(words)]
    record.first_chunk_text = " w0"
    record.output_text = "".join(f" w{i}" for i in range(words))
    record.usage = usage
    return record


class TestCheckedUsage:
    @pytest.mark.parametrize(
        ("usage", "needle"),
        [
            (Usage(completion_tokens="5"), "not a number (got str)"),  # type: ignore[arg-type]
            (Usage(completion_tokens=[5]), "not a number (got list)"),  # type: ignore[arg-type]
            (Usage(completion_tokens=True), "not a number (got bool)"),
            (Usage(completion_tokens=float("nan")), "not a whole number"),  # type: ignore[arg-type]
            (Usage(completion_tokens=float("inf")), "not a whole number"),  # type: ignore[arg-type]
            (Usage(prompt_tokens=-3), "negative"),
            (Usage(prompt_tokens=10**400), "absurdly large"),
            (Usage(completion_tokens=USAGE_MAX + 1), "absurdly large"),
            (Usage(completion_tokens=500), "more than the 20 bytes"),
            (Usage(completion_tokens=5, reasoning_tokens=9), "exceeds completion_tokens"),
        ],
    )
    def test_checked_usage_rejects_absurd_values(self, usage: Usage, needle: str) -> None:
        """Garbage in any field drops the whole usage, with the reason."""
        clean, reason = checked_usage(usage, 20)
        assert clean is None
        assert reason is not None and needle in reason

    def test_checked_usage_keeps_sane_counts(self) -> None:
        """Whole-number floats become ints; hidden reasoning does not need bytes."""
        clean, reason = checked_usage(Usage(prompt_tokens=7.0, completion_tokens=300, reasoning_tokens=290), 40)  # type: ignore[arg-type]
        assert (Usage(prompt_tokens=7, completion_tokens=300, reasoning_tokens=290), None) == (clean, reason)


class TestOneSourcePerRequest:
    def test_itl_with_server_counts_is_in_server_units(self) -> None:
        """A tokenizer counting 2 per word must not bend ITL computed from the server's count."""
        record = streamed(11, 10.0, Usage(prompt_tokens=8, completion_tokens=11))
        values: dict[str, float] = {}
        TimingProcessor().process(record, values, run_context(WordTokenizer(2), use_server_token_count=True))
        assert "server" == record.token_counts.source
        assert 11 == values["output_sequence_length"]
        # 10 gaps of 10 ms over 10 tokens after the first: exactly 10 ms.
        assert 10.0 == pytest.approx(values["inter_token_latency"] / NS)

    def test_itl_with_client_counts_is_in_client_units(self) -> None:
        """By default the tokenizer counts everything, the first chunk included."""
        record = streamed(11, 10.0, Usage(prompt_tokens=99, completion_tokens=11))
        values: dict[str, float] = {}
        TimingProcessor().process(record, values, run_context(WordTokenizer(2)))
        counts = record.token_counts
        assert ("client", 22, 2) == (counts.source, counts.client_output, counts.client_first_chunk)
        assert 22 == values["output_sequence_length"]
        assert 8 == values["input_sequence_length"]
        assert 5.0 == pytest.approx(values["inter_token_latency"] / NS)

    def test_absurd_usage_never_enters_a_statistic(self) -> None:
        """--use-server-token-count with garbage usage falls back to the tokenizer."""
        record = streamed(11, 10.0, Usage(prompt_tokens=8, completion_tokens="11"))  # type: ignore[arg-type]
        values: dict[str, float] = {}
        TimingProcessor().process(record, values, run_context(WordTokenizer(1), use_server_token_count=True))
        assert "client" == record.token_counts.source
        assert "usage.completion_tokens is not a number (got str)" == record.token_counts.usage_ignored
        assert 11 == values["output_sequence_length"]
        assert all(isinstance(v, float | int) for v in values.values())


class TestTokenTally:
    def _tally(self, server: int, client_weight: int, words: int, asked: int) -> TokenTally:
        tally = TokenTally()
        for _ in range(3):
            record = streamed(words, 1.0, Usage(completion_tokens=server))
            record.max_tokens = asked
            values: dict[str, float] = {}
            TimingProcessor().process(record, values, run_context(WordTokenizer(client_weight)))
            tally.add(record, values)
        return tally

    def test_tally_notes_disagreement_over_ten_percent(self) -> None:
        """Server 10, tokenizer 20: one note naming both totals."""
        notes = self._tally(server=10, client_weight=2, words=10, asked=10).notes(use_server=False)
        assert 1 == len(notes), notes
        assert "the server counted 30, the tokenizer 60" in notes[0]

    def test_tally_silent_when_counts_agree(self) -> None:
        """Equal counts and full-length outputs: nothing to say."""
        assert [] == self._tally(server=10, client_weight=1, words=10, asked=10).notes(use_server=False)

    def test_tally_notes_output_far_shorter_than_asked(self) -> None:
        """4 tokens for max_tokens 100: the server ignored the limit."""
        notes = self._tally(server=4, client_weight=1, words=4, asked=100).notes(use_server=False)
        assert 1 == len(notes), notes
        assert "4% of the 100.0 asked for" in notes[0]


# -- end to end, against a server that sends the usage we choose ---------------------------------


class UsageServer(LoopbackServer):
    """Non-streaming chat answers of ``words`` words with ``usage`` as given (any JSON)."""

    def __init__(self, usages: list[Any], words: int = 6) -> None:
        super().__init__()
        self.usages = usages
        self.words = words
        self.served = 0

    def respond(self, request: Received) -> Reply:
        if request.method != "POST":
            return Reply(501, b"")
        with self.lock:
            usage = self.usages[self.served % len(self.usages)]
            self.served += 1
        text = " ".join(["the"] * self.words)
        message = {"role": "assistant", "content": text}
        data = {"id": "x", "model": "m", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        # allow_nan: NaN and Infinity go out as the bare words some servers send.
        return Reply(body=(json.dumps(data)[:-1] + ',"usage":' + usage + "}").encode())


@pytest.fixture
def usage_server() -> Iterator[UsageServer]:
    with UsageServer(usages=['{"prompt_tokens": 8, "completion_tokens": 6}']) as server:
        yield server


ABSURD = [
    '{"completion_tokens": "5"}',
    '{"completion_tokens": [5]}',
    '{"completion_tokens": 1' + "0" * 400 + "}",
    '{"completion_tokens": -4}',
    '{"completion_tokens": true}',
    '{"completion_tokens": 100000}',
]


class TestEndToEnd:
    def test_absurd_usage_is_ignored_counted_and_never_crashes(self, aiperf_cli, usage_server, tmp_path) -> None:
        """Every kind of garbage usage, between good ones: exit 0, counted, JSON-clean lines."""
        good = '{"prompt_tokens": 8, "completion_tokens": 6}'
        usage_server.usages = [good, *ABSURD]
        result = aiperf_cli(
            "profile", "--url", usage_server.url, "-m", "m", "--isl", "8", "--request-count", "16",
            "--use-server-token-count", "--artifact-dir", "run",
        )
        assert 0 == result.returncode, result.stderr
        lines = [json.loads(line) for line in (tmp_path / "run/profile_export.jsonl").read_text().splitlines()]
        assert 16 == len(lines)
        ignored = [line for line in lines if line["usage_ignored"]]
        # request i got usages[i % 7]: all but requests 0, 7 and 14 got a garbage one
        assert 13 == len(ignored)
        assert all(line["usage"] is None and line["token_source"] == "client" for line in ignored)
        assert all(line["metrics"]["output_sequence_length"] == 6 for line in lines)
        assert all(line["client_tokens"]["output"] == 6 for line in lines)
        summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
        assert 6 == summary["metrics"]["output_sequence_length"]["max"]
        assert any("ignored the server's usage in 13 of 16 requests" in n for n in summary["notes"])

    def test_disagreement_and_short_output_warned_at_the_end(self, aiperf_cli, usage_server, tmp_path) -> None:
        """Server says 3 tokens for 6 words, max_tokens 40: two notes, each one stderr line."""
        usage_server.usages = ['{"prompt_tokens": 8, "completion_tokens": 3}']
        result = aiperf_cli(
            "profile", "--url", usage_server.url, "-m", "m", "--isl", "8", "--osl", "40",
            "--request-count", "4", "--artifact-dir", "run",
        )
        assert 0 == result.returncode, result.stderr
        summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
        notes = summary["notes"]
        assert any("output token counts differ by 100%" in n for n in notes), notes
        assert any("the server may ignore it" in n for n in notes), notes
        warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING") and "token_counts" in line]
        assert 2 == len(warnings), result.stderr
        line = json.loads((tmp_path / "run/profile_export.jsonl").read_text().splitlines()[0])
        assert {"prompt_tokens": 8, "completion_tokens": 3} == line["usage"]
        assert {"input": 8, "output": 6, "reasoning": 0} == line["client_tokens"]
