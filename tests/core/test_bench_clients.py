"""The other clients the wire scenario grades: their command lines and their records read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import wire
from benchlib.clients import (
    ClientRecord,
    GuideLLM,
    InferencePerf,
    Load,
    NvidiaAIPerf,
    guidellm_records,
    hf_tokenizer,
    inference_perf_records,
    nvidia_aiperf_records,
)

EPOCH_NS = 1_700_000_000 * 1_000_000_000
MS = 1_000_000


@pytest.fixture
def load(tmp_path: Path) -> Load:
    work = tmp_path / "work"
    work.mkdir()
    return Load(
        url="http://127.0.0.1:8123", model="mock-model", concurrency=16, count=5, input_tokens=128,
        output_tokens=16, tokenizer=hf_tokenizer(tmp_path / "tok", words=500), work=work,
    )  # fmt: skip


class TestRecords:
    def test_inference_perf_ttft_is_first_token_minus_start_in_epoch_ns(self) -> None:
        """perf_counter seconds become epoch ns by the offset; failed or token-less requests drop."""
        items = [
            {"start_time": 100.0, "end_time": 100.3, "info": {"response_metrics": {"output_token_times": [100.052, 100.062]}}},
            {"start_time": 101.0, "error": {"message": "boom"}, "info": {}},
            {"start_time": 102.0, "info": {"response_metrics": {"output_token_times": []}}},
        ]  # fmt: skip
        got = inference_perf_records(items, offset_ns=EPOCH_NS)
        assert 1 == len(got)
        assert EPOCH_NS + 100 * 10**9 == got[0].start_ns
        assert got[0].ttft_ms == pytest.approx(52.0)

    def test_nvidia_aiperf_keeps_profiling_successes_and_converts_units(self) -> None:
        """Warm-up, cancelled and failed records drop; a TTFT in ns becomes ms."""

        def record(phase: str = "profiling", ttft: dict | None = None, **extra) -> dict:
            meta = {
                "request_start_ns": EPOCH_NS,
                "benchmark_phase": phase,
                "was_cancelled": extra.pop("cancelled", False),
            }
            return {
                "metadata": meta,
                "metrics": {"time_to_first_token": ttft or {"value": 51.5, "unit": "ms"}},
                **extra,
            }

        items = [
            record(),
            record(ttft={"value": 48_000_000, "unit": "ns"}),
            record(phase="warmup"),
            record(cancelled=True),
            record(error={"code": 500}),
        ]
        got = nvidia_aiperf_records(items)
        assert [51.5, 48.0] == [r.ttft_ms for r in got]
        assert {EPOCH_NS} == {r.start_ns for r in got}

    def test_guidellm_reads_successful_requests_of_every_benchmark(self) -> None:
        """Wall-clock seconds become ns; errored and incomplete requests are not read."""
        report = {
            "benchmarks": [
                {"requests": {
                    "successful": [{"request_start_time": 1_700_000_000.25, "time_to_first_token_ms": 53.5},
                                   {"request_start_time": None, "time_to_first_token_ms": 50.0}],
                    "errored": [{"request_start_time": 1_700_000_001.0, "time_to_first_token_ms": 1.0}],
                }},
                {"requests": {"successful": [{"request_start_time": 1_700_000_002.0, "time_to_first_token_ms": 60.0}]}},
            ]
        }  # fmt: skip
        got = guidellm_records(report)
        assert [53.5, 60.0] == [r.ttft_ms for r in got]
        # a float of epoch seconds holds about a quarter of a microsecond: far below the
        # wire's pairing check (tens of microseconds)
        assert abs(EPOCH_NS + 250_000_000 - got[0].start_ns) < 1_000

    def test_records_pair_with_the_wire_and_grade_their_ttft(self) -> None:
        """Records pair with the wire's exchanges by start order; the error is theirs minus the wire's."""

        def exchange(first_ns: int, sequence: int) -> wire.Exchange:
            return wire.Exchange(
                connection=("127.0.0.1", 40000), sequence=sequence, request_line="POST /v1/completions HTTP/1.1",
                request_first_ns=first_ns, request_last_ns=first_ns, request_packets=1,
                response_first_ns=first_ns + 50 * MS, response_last_ns=first_ns + 200 * MS,
                content_ns=(first_ns + 50 * MS, first_ns + 60 * MS), status=200, complete=True,
            )  # fmt: skip

        found = [exchange(EPOCH_NS, 0), exchange(EPOCH_NS + 300 * MS, 1)]
        records = [
            ClientRecord(start_ns=EPOCH_NS + 300 * MS - 20_000, ttft_ms=52.0),
            ClientRecord(start_ns=EPOCH_NS - 10_000, ttft_ms=50.5),
        ]
        pairs = wire.match(found, [r.as_wire_record() for r in records])
        assert [10_000, 20_000] == [pair.offset_ns for pair in pairs]
        assert [50.5, 52.0] == [pair.record["metrics"]["time_to_first_token"] for pair in pairs]


class TestCommands:
    def test_inference_perf_config_sends_the_load_and_keeps_per_request_records(
        self, load: Load
    ) -> None:
        command = InferencePerf(executable="/x/inference-perf").command(load)
        assert ["/x/inference-perf", "-c"] == command[:2]
        spec = json.loads(Path(command[2]).read_text())
        assert {"num_requests": 5, "concurrency_level": 16} == spec["load"]["stages"][0]
        assert (
            128
            == spec["data"]["input_distribution"]["min"]
            == spec["data"]["input_distribution"]["max"]
        )
        assert spec["report"]["request_lifecycle"]["per_request"] is True
        assert str(load.tokenizer) == spec["tokenizer"]["pretrained_model_name_or_path"]

    def test_guidellm_prompts_are_exact_in_vocabulary_words(self, load: Load) -> None:
        """One prompt per request, each input_tokens words the tokenizer maps one to one."""
        command = GuideLLM(executable="/x/guidellm").command(load)
        assert "kind=concurrent,streams=16" in command
        assert "kind=max_requests,count=5" in command
        vocab = json.loads((load.tokenizer / "tokenizer.json").read_text())["model"]["vocab"]
        rows = [json.loads(line) for line in (load.work / "prompts.jsonl").read_text().splitlines()]
        assert 5 == len(rows)
        for row in rows:
            words = row["prompt"].split()
            assert 128 == len(words) == row["prompt_tokens_count"]
            assert all(word in vocab for word in words)
            assert 16 == row["output_tokens_count"]

    def test_guidellm_runs_two_workers_offline(self) -> None:
        env = GuideLLM(executable="g").environment({"PATH": "/bin"})
        assert "2" == env["GUIDELLM__MAX_WORKER_PROCESSES"]
        assert "1" == env["HF_HUB_OFFLINE"]

    def test_nvidia_aiperf_must_not_run_offline(self, load: Load) -> None:
        """With HF_HUB_OFFLINE it takes the tokenizer folder for a Hub name; it is removed."""
        client = NvidiaAIPerf(executable="/x/aiperf")
        env = client.environment(
            {"PATH": "/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        )
        assert {"PATH": "/bin"} == env
        command = client.command(load)
        assert command[command.index("--concurrency") + 1] == "16"
        assert command[command.index("--tokenizer") + 1] == str(load.tokenizer)
        assert "--no-server-metrics" in command


class TestTokenizer:
    def test_vocabulary_is_seeded_unique_and_reused(self, tmp_path: Path) -> None:
        first = json.loads((hf_tokenizer(tmp_path / "a", words=300) / "tokenizer.json").read_text())
        again = json.loads((hf_tokenizer(tmp_path / "b", words=300) / "tokenizer.json").read_text())
        vocab = first["model"]["vocab"]
        assert vocab == again["model"]["vocab"]
        assert sorted(vocab.values()) == list(range(len(vocab)))
        assert 300 == sum(1 for word in vocab if word.isalpha())
        assert "WordLevel" == first["model"]["type"]
        (tmp_path / "a" / "tokenizer.json").write_text("kept")
        assert "kept" == (hf_tokenizer(tmp_path / "a") / "tokenizer.json").read_text()
