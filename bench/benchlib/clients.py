"""Other benchmarking clients, run under the same capture as aiperf and read back.

The wire scenario grades every client the same way: the capture says what each one sent
and when the server's tokens arrived, and each client's own per-request records say what
it reported. Each client here knows three things: the command line that sends the wire
scenario's load (a fixed concurrency, a fixed number of streaming requests, 128 tokens in
and 16 out), the environment it needs, and how to read back each request's start time and
TTFT. They are installed by the user in environments of their own (each pulls in
``transformers`` and more) and handed to ``bench/run.py`` by path.

Their start times come in their own clocks; :func:`ClientRecord` holds them as wall-clock
epoch ns, the clock of the capture and of aiperf's records, so the wire's pairing
(:func:`benchlib.wire.match`) works for every client alike.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class Load:
    """The load every client is asked to send, and where it may write."""

    url: str
    model: str
    concurrency: int
    count: int
    input_tokens: int
    output_tokens: int
    #: a local Hugging Face tokenizer folder (the Hub is not reachable from the bench).
    tokenizer: Path
    #: an empty folder of this run's own.
    work: Path


@attrs.frozen(kw_only=True)
class ClientRecord:
    """One successful request as a client recorded it."""

    #: the client's start stamp, wall-clock epoch ns.
    start_ns: int
    #: the TTFT the client reported.
    ttft_ms: float

    def as_wire_record(self) -> dict[str, Any]:
        """The shape :func:`benchlib.wire.grade` reads aiperf's JSONL records in."""
        return {"start_time_ns": self.start_ns, "metrics": {"time_to_first_token": self.ttft_ms}}


def _monotonic_to_epoch_ns() -> int:
    """What to add to a ``time.perf_counter()`` (CLOCK_MONOTONIC) stamp, in ns, to get
    wall-clock ns: valid for stamps taken on this machine since it last booted."""
    return time.time_ns() - time.perf_counter_ns()


@attrs.frozen(kw_only=True)
class OtherClient:
    """A client known to the bench: a name, an executable and the two things it does."""

    #: short id used in figure ids (``wire_<key>_...``).
    key: str
    name: str
    executable: str
    #: the API it streams from (the mock server times chat and completions alike).
    api: str = "chat"

    def command(self, load: Load) -> list[str]:
        raise NotImplementedError

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def records(self, load: Load) -> list[ClientRecord]:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class InferencePerf(OtherClient):
    """kubernetes-sigs' inference-perf: a YAML config, per-request records in one JSON list.

    Its random prompts exist only for the completion API, so it streams from
    ``/v1/completions``. Its stamps are ``time.perf_counter()`` seconds; on Linux that clock
    is CLOCK_MONOTONIC, shared by every process on the machine, so they convert to the
    wall clock with an offset taken by the bench after the run.
    """

    key: str = "ip"
    name: str = "inference-perf"
    api: str = "completions"

    def command(self, load: Load) -> list[str]:
        def exact(n: int) -> dict[str, int]:
            return {"min": n, "max": n, "mean": n, "std_dev": 0, "total_count": load.count}

        spec = {
            "api": {"type": "completion", "streaming": True},
            "data": {"type": "random", "input_distribution": exact(load.input_tokens), "output_distribution": exact(load.output_tokens)},
            "load": {"type": "concurrent", "stages": [{"num_requests": load.count, "concurrency_level": load.concurrency}]},
            "server": {"type": "vllm", "model_name": load.model, "base_url": load.url, "ignore_eos": True},
            "tokenizer": {"pretrained_model_name_or_path": str(load.tokenizer)},
            "storage": {"local_storage": {"path": str(load.work / "out")}},
            "report": {"request_lifecycle": {"per_request": True}},
        }  # fmt: skip
        config = load.work / "config.yml"
        config.write_text(json.dumps(spec))  # JSON is YAML
        return [self.executable, "-c", str(config)]

    def records(self, load: Load) -> list[ClientRecord]:
        path = load.work / "out" / "per_request_lifecycle_metrics.json"
        return inference_perf_records(json.loads(path.read_text()), _monotonic_to_epoch_ns())


def inference_perf_records(
    items: Iterable[Mapping[str, Any]], offset_ns: int
) -> list[ClientRecord]:
    """inference-perf's per-request entries: TTFT is its first content chunk's stamp minus
    the request's start (its own definition), both ``perf_counter`` seconds."""
    out = []
    for item in items:
        if item.get("error"):
            continue
        metrics = (item.get("info") or {}).get("response_metrics") or {}
        times = metrics.get("output_token_times") or metrics.get("chunk_times") or []
        start = item.get("start_time")
        if not times or start is None:
            continue
        out.append(
            ClientRecord(
                start_ns=round(float(start) * 1e9) + offset_ns,
                ttft_ms=(float(times[0]) - float(start)) * 1e3,
            )
        )
    return out


@attrs.frozen(kw_only=True)
class NvidiaAIPerf(OtherClient):
    """NVIDIA's AIPerf (GenAI-Perf's successor, the PyPI package also named ``aiperf``).

    It reads the tokenizer folder only when neither ``HF_HUB_OFFLINE`` nor
    ``TRANSFORMERS_OFFLINE`` is set (with them it takes the path for a Hub name), so they
    are removed; it reaches no network with a local folder. Server metrics and GPU
    telemetry are switched off: they would add requests to the port under capture.
    """

    key: str = "nv"
    name: str = "NVIDIA AIPerf"

    def command(self, load: Load) -> list[str]:
        return [
            self.executable, "profile",
            "--model", load.model, "--url", load.url, "--endpoint-type", "chat", "--streaming",
            "--concurrency", str(load.concurrency), "--request-count", str(load.count),
            "--isl", str(load.input_tokens), "--isl-stddev", "0",
            "--osl", str(load.output_tokens), "--osl-stddev", "0",
            "--extra-inputs", f"max_tokens:{load.output_tokens}", "--extra-inputs", "ignore_eos:true",
            "--tokenizer", str(load.tokenizer), "--random-seed", "0", "--ui-type", "none",
            "--request-timeout-seconds", "120", "--no-server-metrics", "--no-gpu-telemetry",
            "--artifact-dir", str(load.work / "out"),
        ]  # fmt: skip

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return {
            k: v for k, v in base.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
        }

    def records(self, load: Load) -> list[ClientRecord]:
        lines = (load.work / "out" / "profile_export.jsonl").read_text().splitlines()
        return nvidia_aiperf_records(json.loads(line) for line in lines if line.strip())


def nvidia_aiperf_records(items: Iterable[Mapping[str, Any]]) -> list[ClientRecord]:
    """Its JSONL records: ``metadata.request_start_ns`` is wall-clock ns, TTFT a
    ``{"value", "unit"}`` metric; warm-up, failed and cancelled requests are left out."""
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3, "sec": 1e3}
    out = []
    for item in items:
        meta = item.get("metadata") or {}
        if (
            meta.get("benchmark_phase", "profiling") != "profiling"
            or meta.get("was_cancelled")
            or item.get("error")
        ):
            continue
        ttft = (item.get("metrics") or {}).get("time_to_first_token") or {}
        start = meta.get("request_start_ns")
        if ttft.get("value") is None or start is None:
            continue
        out.append(
            ClientRecord(
                start_ns=int(start), ttft_ms=float(ttft["value"]) * scale[ttft.get("unit", "ms")]
            )
        )
    return out


def hf_tokenizer(folder: Path, words: int = 8000) -> Path:
    """A small word-level Hugging Face tokenizer folder, made here, for clients that load one.

    Every other client counts prompt tokens with a ``transformers`` tokenizer, by default
    the model's from the Hugging Face Hub. The bench needs no model's vocabulary, only
    prompts of a known length: a fixed vocabulary of made-up words (seeded), split on
    whitespace, is enough, and it loads offline with ``tokenizers`` alone.
    """
    if (folder / "tokenizer.json").exists():
        return folder
    rng = random.Random(7)
    made: set[str] = set()
    while len(made) < words:
        made.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 8))))
    vocab = {"[UNK]": 0}
    for token in [*".,;:!?'\"()-", *sorted(made)]:
        vocab[token] = len(vocab)
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
        "normalizer": {"type": "Lowercase"}, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": 1_000_000,
                "unk_token": "[UNK]",
            }
        )
    )
    (folder / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "vocab_size": len(vocab), "bos_token_id": 0, "eos_token_id": 0})
    )
    return folder


@attrs.frozen(kw_only=True)
class GuideLLM(OtherClient):
    """vLLM's GuideLLM: prompts from a JSON-lines file, one JSON report with every request.

    Its synthetic prompts are sized with the tokenizer's own vocabulary and a word-level
    tokenizer makes them far shorter than asked, so the bench writes the prompts itself
    (words of the tokenizer's vocabulary, one token each) with the token counts alongside.
    Two worker processes, not its default ten, on a small machine: ten starve the server it
    measures. ``validate_backend=false`` keeps its health checks off the port under capture.
    Its start stamps are ``time.time()`` seconds.
    """

    key: str = "gl"
    name: str = "GuideLLM"
    workers: int = 2

    def command(self, load: Load) -> list[str]:
        prompts = load.work / "prompts.jsonl"
        vocab = json.loads((load.tokenizer / "tokenizer.json").read_text())["model"]["vocab"]
        words = sorted(w for w in vocab if w.isalpha())
        rng = random.Random(0)
        with prompts.open("w") as out:
            for _ in range(load.count):
                text = " ".join(rng.choice(words) for _ in range(load.input_tokens))
                row = {
                    "prompt": text,
                    "prompt_tokens_count": load.input_tokens,
                    "output_tokens_count": load.output_tokens,
                }
                out.write(json.dumps(row) + "\n")
        backend = f"kind=openai_http,target={load.url},model={load.model},request_format=/v1/chat/completions,stream=true,validate_backend=false"
        return [
            self.executable, "run", "--backend", backend,
            "--tokenizer", f"kind=huggingface_auto,model={load.tokenizer}",
            "--data", f"kind=json_file,path={prompts}",
            "--profile", f"kind=concurrent,streams={load.concurrency}",
            "--constraint", f"kind=max_requests,count={load.count}",
            "--metrics", "kind=generative,sample_size=0",
            "--output", f"kind=json,path={load.work / 'out.json'}", "--disable-console",
        ]  # fmt: skip

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**super().environment(base), "GUIDELLM__MAX_WORKER_PROCESSES": str(self.workers)}

    def records(self, load: Load) -> list[ClientRecord]:
        return guidellm_records(json.loads((load.work / "out.json").read_text()))


def guidellm_records(report: Mapping[str, Any]) -> list[ClientRecord]:
    """The successful requests of every benchmark in its report: ``request_start_time`` is
    wall-clock seconds, ``time_to_first_token_ms`` its TTFT."""
    out = []
    for benchmark in report.get("benchmarks") or []:
        for item in (benchmark.get("requests") or {}).get("successful") or []:
            start, ttft = item.get("request_start_time"), item.get("time_to_first_token_ms")
            if start is None or ttft is None:
                continue
            out.append(ClientRecord(start_ns=round(float(start) * 1e9), ttft_ms=float(ttft)))
    return out


#: every client the bench knows, by the ``bench/run.py`` flag that names its executable.
CLIENTS: dict[str, type[OtherClient]] = {
    "inference_perf": InferencePerf,
    "guidellm": GuideLLM,
    "nvidia_aiperf": NvidiaAIPerf,
}
