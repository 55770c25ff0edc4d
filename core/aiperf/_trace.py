"""Traces: the ``mooncake_trace`` format, and ``aiperf analyze-trace``.

A Mooncake trace line describes a request without its text::

    {"timestamp": 105, "input_length": 1800, "output_length": 26, "hash_ids": [0, 3, 4, 5]}

``timestamp`` is ms from the trace's start, ``input_length`` and ``output_length`` are token
counts, and ``hash_ids`` name the prompt's blocks of ``--isl-block-size`` tokens (512, the
Mooncake traces' own): two requests whose ``hash_ids`` start alike shared that prefix in
production. :class:`BlockPrompts` makes prompts with the same structure: block ``h`` is the
same run of one-token words wherever ``h`` appears, and distinct ids are distinct text from
their first word, so a server's prefix cache hits exactly where production's did. The last
block holds what is left (``input_length - (len(hash_ids) - 1) * block size`` tokens, 1 to a
block). ``text_input`` (the prompt itself) or ``messages`` (chat messages) may stand in for
``input_length``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import structlog

from aiperf._datasets import WordPool, _json_type, _messages, _output_lengths
from aiperf._formats import (
    MAX_TRACE_TOKENS,
    FileContext,
    FileFormat,
    Row,
    _check_type,
    _extra,
    iter_lines,
    register_format,
)
from aiperf._schedule import times
from aiperf._tokenizer import count_many
from aiperf._types import Prompt, Tokenizer, UsageError

log = structlog.get_logger()

DEFAULT_BLOCK_SIZE = 512
#: prompts counted with the tokenizer to check that the synthesized lengths are exact; when
#: they all are, the rest is trusted (each pool word is one token, measured).
_SPOT_CHECKS = 8
_STREAM_BLOCKS = 5
_INPUT_MODES = ("input_length", "text_input", "messages")
#: fields of other trace variants that aiperf does not replay (yet).
_UNSUPPORTED = {
    "payload": "raw request payloads are not replayed; give input_length, text_input or messages",
    "session_id": "sessions (multi-turn traces) are not replayed by mooncake_trace; drop "
    "session_id to send every line as its own request",
}


@attrs.frozen(kw_only=True)
class TraceLine:
    input_length: int | None = None
    hash_ids: tuple[int, ...] | None = None
    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    counted: tuple[str, ...] = ()
    output_length: int | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)


def _positive_int(where: str, obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        shown = json.dumps(value) if number else _json_type(value)
        raise UsageError(f'{where} "{key}" must be a positive integer, got {shown}')
    return value


def check_blocks(where: str, input_length: int, hash_ids: Sequence[int], block_size: int) -> None:
    """The last block of ``hash_ids`` must hold 1 to ``block_size`` tokens."""
    last = input_length - (len(hash_ids) - 1) * block_size
    if not 0 < last <= block_size:
        raise UsageError(
            f'{where} "hash_ids": {len(hash_ids)} blocks of {block_size} tokens '
            f'(--isl-block-size) cannot make "input_length" {input_length}: the last block '
            f"would hold {last} tokens (1 to {block_size})"
        )


def _hash_ids(where: str, obj: dict[str, Any]) -> tuple[int, ...] | None:
    value = obj.get("hash_ids")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        shown = "an empty array" if value == [] else _json_type(value)
        raise UsageError(f'{where} "hash_ids" must be a non-empty array of integers, got {shown}')
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise UsageError(f'{where} "hash_ids" must hold integers, got {_json_type(item)}')
    return tuple(value)


def parse_line(ctx: FileContext, where: str, line: int, obj: dict[str, Any]) -> Row:
    _check_type(where, obj, "mooncake_trace")
    for key, why in _UNSUPPORTED.items():
        if obj.get(key) is not None:
            raise UsageError(f'{where} "{key}": {why}')
    modes = [key for key in _INPUT_MODES if obj.get(key) is not None]
    if not modes:
        raise UsageError(f'{where} "input_length": missing (or give "text_input" or "messages")')
    if len(modes) > 1:
        raise UsageError(f"{where} give one of {', '.join(repr(m) for m in modes)}, not several")
    timestamp, delay = times(where, obj)
    output_length = _positive_int(where, obj, "output_length")
    hash_ids = _hash_ids(where, obj)
    extra = dict(_extra(where, obj))
    if hash_ids is not None and modes[0] != "input_length":
        raise UsageError(f'{where} "hash_ids": only with "input_length" (they describe its blocks)')
    if obj.get("tools") is not None:
        if modes[0] != "messages":
            raise UsageError(f'{where} "tools": only with "messages"')
        if not isinstance(obj["tools"], list) or not obj["tools"]:
            raise UsageError(f'{where} "tools" must be a non-empty array of tool definitions')
        extra.setdefault("tools", obj["tools"])
    if modes[0] == "input_length":
        length = _positive_int(where, obj, "input_length")
        assert length is not None
        if hash_ids is not None:
            check_blocks(where, length, hash_ids, ctx.config.isl_block_size)
        ctx.tokens += length
        if ctx.tokens > MAX_TRACE_TOKENS:
            raise UsageError(
                f'{where} "input_length": the lines so far make more than {MAX_TRACE_TOKENS:,} '
                "prompt tokens, more than aiperf holds in memory before a run; replay a window "
                "(--fixed-schedule-start-offset/--fixed-schedule-end-offset) or split the file"
            )
        value = TraceLine(input_length=length, hash_ids=hash_ids, output_length=output_length, extra=extra)
    elif modes[0] == "text_input":
        text = obj["text_input"]
        if not isinstance(text, str) or not text:
            shown = "an empty string" if text == "" else _json_type(text)
            raise UsageError(f'{where} "text_input" must be a non-empty string, got {shown}')
        value = TraceLine(text=text, counted=(text,), output_length=output_length, extra=extra)
    else:
        messages, texts = _messages(where, obj["messages"])
        value = TraceLine(
            text="\n".join(texts), messages=messages, counted=texts,
            output_length=output_length, extra=extra,
        )  # fmt: skip
    return Row(line=line, timestamp=timestamp, delay=delay, value=value)


class BlockPrompts:
    """Prompt text from hash blocks: equal ids give equal text, distinct ids distinct text.

    Every block is a run of pool words (one token each, with their leading space), so blocks
    join without changing each other's tokens. The ``j``-th distinct block starts with the
    words ``j mod W`` and ``j div W`` of the pool (``W`` words): no two blocks share their first
    two words while there are fewer than ``W**2`` blocks. The rest of a block is drawn from
    a generator seeded with ``(seed, j)``: the same file and seed give the same text.
    """

    def __init__(self, tokenizer: Tokenizer, block_size: int, seed: int | None) -> None:
        self.pool = WordPool.for_tokenizer(tokenizer)
        self.block_size = block_size
        self.seed = (seed or 0) & (2**64 - 1)
        self.ordinals: dict[int, int] = {}
        self.next_ordinal = 0
        self._words = functools.lru_cache(maxsize=4096)(self._block_words)

    def _block_words(self, ordinal: int) -> list[str]:
        words = self.pool.words
        n = len(words)
        head = [words[ordinal % n], words[(ordinal // n) % n]]
        rest = np.random.default_rng([self.seed, _STREAM_BLOCKS, ordinal]).integers(
            0, n, size=max(0, self.block_size - 2)
        )
        return (head + [words[i] for i in rest.tolist()])[: self.block_size]

    def _ordinal(self, hash_id: int | None) -> int:
        if hash_id is not None and hash_id in self.ordinals:
            return self.ordinals[hash_id]
        ordinal = self.next_ordinal
        self.next_ordinal += 1
        if hash_id is not None:
            self.ordinals[hash_id] = ordinal
        return ordinal

    def prompt(self, input_length: int, hash_ids: Sequence[int] | None) -> str:
        size = self.block_size
        ids: Sequence[int | None] = (
            hash_ids if hash_ids else [None] * max(1, math.ceil(input_length / size))
        )
        last = input_length - (len(ids) - 1) * size
        parts = [self._words(self._ordinal(h)) for h in ids]
        parts[-1] = parts[-1][:last]
        return "".join(word for part in parts for word in part)


def build(ctx: FileContext, rows: list[Row]) -> list[Prompt]:
    config = ctx.config
    lines: list[TraceLine] = [row.value for row in rows]
    synth = BlockPrompts(ctx.tokenizer, config.isl_block_size, config.random_seed)
    texts = [
        line.text if line.text is not None else synth.prompt(line.input_length or 1, line.hash_ids)
        for line in lines
    ]
    counts = _count(ctx.tokenizer, lines, texts)
    defaults = _output_lengths(
        config.random_seed, len(lines), config.output_tokens_mean, config.output_tokens_stddev
    )
    return [
        Prompt(
            text=text,
            input_tokens=count,
            max_tokens=line.output_length if line.output_length is not None else default,
            messages=line.messages,
            extra=line.extra,
        )
        for line, text, count, default in zip(lines, texts, counts, defaults)
    ]


def _count(tokenizer: Tokenizer, lines: list[TraceLine], texts: list[str]) -> list[int]:
    """Token counts: the lines' own texts counted; synthesized prompts checked on a sample and
    trusted when the sample is exact (counting millions of tokens costs seconds)."""
    counts = [line.input_length or 0 for line in lines]
    given = [i for i, line in enumerate(lines) if line.input_length is None]
    pieces = [piece for i in given for piece in lines[i].counted]
    piece_counts = iter(count_many(tokenizer, pieces))
    for i in given:
        counts[i] = sum(next(piece_counts) for _ in lines[i].counted)
    made = [i for i, line in enumerate(lines) if line.input_length is not None]
    sample = made[:_SPOT_CHECKS]
    measured = count_many(tokenizer, [texts[i] for i in sample])
    if all(counts[i] == m for i, m in zip(sample, measured)):
        return counts
    for i, m in zip(made, count_many(tokenizer, [texts[i] for i in made])):
        counts[i] = m
    off = sum(1 for i in made if counts[i] != lines[i].input_length)
    if off:
        log.warning(
            "trace_prompts_inexact", tokenizer=tokenizer.name, prompts=off, of=len(made),
            note="the tokenizer splits the pool's words differently; ISL is what it counts",
        )  # fmt: skip
    return counts


MOONCAKE_TRACE = FileFormat(
    name="mooncake_trace",
    description='"timestamp" (ms), "input_length", "output_length", "hash_ids" (blocks of '
    "--isl-block-size tokens); text_input or messages instead of input_length",
    parse=parse_line,
    build=build,
    marks=("input_length", "hash_ids", "text_input"),
)
register_format(MOONCAKE_TRACE)


# -- aiperf analyze-trace ---------------------------------------------------------------------------

DEFAULT_CACHE_BLOCKS = (16, 64, 256, 512)


def _summary(values: Sequence[float] | np.ndarray[Any, Any]) -> dict[str, float | int | None]:
    if not len(values):
        return {"count": 0}
    data = np.asarray(values, dtype=np.float64)
    return {
        "count": int(data.size),
        "avg": float(data.mean()),
        "min": float(data.min()),
        "p50": float(np.percentile(data, 50)),
        "p90": float(np.percentile(data, 90)),
        "p99": float(np.percentile(data, 99)),
        "max": float(data.max()),
    }


@attrs.define
class TraceStats:
    """What ``analyze-trace`` learns from one pass over a trace, line by line."""

    block_size: int
    cache_blocks: tuple[int, ...]
    window_s: float
    requests: int = 0
    isl: array[int] = attrs.field(factory=lambda: array("q"))
    osl: array[int] = attrs.field(factory=lambda: array("q"))
    times_ms: array[float] = attrs.field(factory=lambda: array("d"))
    hash_blocks: int = 0
    hash_hits: int = 0
    distinct_ids: set[int] = attrs.field(factory=set)
    seen_prefixes: set[int] = attrs.field(factory=set)
    cached: dict[int, int] = attrs.field(factory=dict)
    tokens_with_ids: int = 0

    def add(self, where: str, obj: dict[str, Any], tokenizer: Tokenizer | None) -> None:
        length = obj.get("input_length")
        if length is None and isinstance(obj.get("text_input"), str):
            length = (tokenizer.count(obj["text_input"]) if tokenizer else None)
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            shown = json.dumps(length) if isinstance(length, int | float) else _json_type(length)
            raise UsageError(f'{where} "input_length" must be a positive integer, got {shown}')
        self.requests += 1
        self.isl.append(length)
        out = obj.get("output_length")
        if isinstance(out, int) and not isinstance(out, bool) and out >= 0:
            self.osl.append(out)
        timestamp, _ = times(where, obj)
        if timestamp is not None:
            self.times_ms.append(timestamp)
        ids = _hash_ids(where, obj)
        if ids:
            check_blocks(where, length, ids, self.block_size)
            self._prefix(length, ids)

    def _prefix(self, length: int, ids: Sequence[int]) -> None:
        # The longest run of leading blocks whose whole prefix was seen before: what an
        # infinite prefix cache would hold for this prompt.
        key = 0
        matched_blocks = 0
        still = True
        for hash_id in ids:
            key = hash((key, hash_id))
            if still and key in self.seen_prefixes:
                matched_blocks += 1
            else:
                still = False
                self.seen_prefixes.add(key)
            self.distinct_ids.add(hash_id)
        self.hash_blocks += len(ids)
        self.hash_hits += matched_blocks
        self.tokens_with_ids += length
        matched = min(length, matched_blocks * self.block_size)
        for size in self.cache_blocks:
            self.cached[size] = self.cached.get(size, 0) + (matched // size) * size

    def result(self, path: Path) -> dict[str, Any]:
        data: dict[str, Any] = {"file": str(path), "requests": self.requests, "block_size": self.block_size}
        stamps = np.frombuffer(self.times_ms, dtype=np.float64) if self.times_ms else np.array([])
        if stamps.size:
            start, end = float(stamps.min()), float(stamps.max())
            duration = (end - start) / 1e3
            window = self.window_s
            buckets = np.floor((stamps - start) / 1e3 / window).astype(np.int64)
            counts = np.bincount(buckets)
            rates = counts / window
            peak = int(np.argmax(counts))
            data["timestamps"] = {"count": int(stamps.size), "first_ms": start, "last_ms": end}
            data["duration_s"] = duration
            data["rate"] = {
                "window_s": window,
                "mean_req_per_s": self.requests / duration if duration > 0 else None,
                "peak_req_per_s": float(rates[peak]),
                "peak_at_s": peak * window,
                "windows": [
                    {"start_s": i * window, "requests": int(c), "req_per_s": float(c / window)}
                    for i, c in enumerate(counts)
                ],
            }
            data["rate"].update({f"p{q}_req_per_s": float(np.percentile(rates, q)) for q in (50, 90, 99)})
        data["isl"] = _summary(np.frombuffer(self.isl, dtype=np.int64))
        data["osl"] = _summary(np.frombuffer(self.osl, dtype=np.int64))
        if self.hash_blocks:
            data["prefix_reuse"] = {
                "assumes": "an unbounded prefix cache: a prompt reuses its longest prefix of "
                "hash blocks seen before, in whole cache blocks",
                "hash_blocks": self.hash_blocks,
                "distinct_hash_ids": len(self.distinct_ids),
                "block_hit_ratio": self.hash_hits / self.hash_blocks,
                "cache_hit_ratio": {
                    str(size): self.cached[size] / self.tokens_with_ids for size in self.cache_blocks
                },
            }
        return data


def analyze(path: Path, *, block_size: int = DEFAULT_BLOCK_SIZE, window_s: float = 1.0,
            cache_blocks: Sequence[int] = DEFAULT_CACHE_BLOCKS) -> dict[str, Any]:  # fmt: skip
    """The figures of a trace file, read one line at a time."""
    from aiperf._datasets import decode_line
    from aiperf._formats import open_input

    label = f"analyze-trace {path}"
    stats = TraceStats(block_size=block_size, cache_blocks=tuple(sorted(set(cache_blocks))), window_s=window_s)
    tokenizer: Tokenizer | None = None
    with open_input(path, label) as handle:
        for number, raw in iter_lines(handle, label):
            where = f"{label}: line {number}:"
            obj = decode_line(where, raw)
            if tokenizer is None and "text_input" in obj:
                from aiperf._tokenizer import load_tokenizer

                tokenizer = load_tokenizer("builtin")
            stats.add(where, obj, tokenizer)
    if not stats.requests:
        raise UsageError(f"{label}: the file has no requests; expected one JSON object per line")
    return stats.result(path)


def render(data: dict[str, Any]) -> str:
    from aiperf._exporters import _fmt, _grid

    lines = [f"Trace {data['file']}: {data['requests']} requests"]
    if "duration_s" in data:
        rate = data["rate"]
        lines.append(
            f"Duration {data['duration_s']:.3f} s; rate {_fmt(rate['mean_req_per_s'])} req/s on "
            f"average, peak {_fmt(rate['peak_req_per_s'])} req/s at {rate['peak_at_s']:g} s "
            f"({rate['window_s']:g} s windows)"
        )
    rows = [["", "avg", "min", "p50", "p90", "p99", "max", "count"]]
    for key, title in (("isl", "ISL (tokens)"), ("osl", "OSL (tokens)")):
        s = data[key]
        rows.append([title, *(_fmt(s.get(c)) for c in ("avg", "min", "p50", "p90", "p99", "max")), str(s["count"])])
    if "rate" in data:
        r = data["rate"]
        rows.append([
            f"rate (req/s per {r['window_s']:g} s)", _fmt(r["mean_req_per_s"]), "",
            _fmt(r["p50_req_per_s"]), _fmt(r["p90_req_per_s"]), _fmt(r["p99_req_per_s"]),
            _fmt(r["peak_req_per_s"]), str(len(r["windows"])),
        ])  # fmt: skip
    lines += _grid(rows)
    reuse = data.get("prefix_reuse")
    if reuse:
        lines.append(
            f"Prefix reuse ({reuse['distinct_hash_ids']} distinct of {reuse['hash_blocks']} hash "
            f"blocks of {data['block_size']} tokens; block hit ratio {reuse['block_hit_ratio']:.3f}):"
        )
        hit = [["cache block (tokens)", "cache-hit ratio"]]
        hit += [[size, f"{ratio:.3f}"] for size, ratio in reuse["cache_hit_ratio"].items()]
        lines += _grid(hit)
    return "\n".join(lines)


def main(ns: argparse.Namespace) -> int:
    if ns.block_size <= 0:
        raise UsageError(f"--isl-block-size: must be > 0 (got {ns.block_size})")
    if not (ns.window > 0 and math.isfinite(ns.window)):
        raise UsageError(f"--window: must be a number of seconds > 0 (got {ns.window})")
    try:
        sizes = [int(part) for part in str(ns.cache_block_sizes).split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--cache-block-sizes: expected numbers like 16,64,512 (got {ns.cache_block_sizes!r})") from None
    if not sizes or any(size <= 0 for size in sizes):
        raise UsageError(f"--cache-block-sizes: expected numbers > 0 (got {ns.cache_block_sizes!r})")
    data = analyze(ns.file, block_size=ns.block_size, window_s=ns.window, cache_blocks=sizes)
    text = json.dumps(data, indent=2)
    if ns.json is not None and str(ns.json) == "-":
        sys.stdout.write(text + "\n")
        return 0
    sys.stdout.write(render(data) + "\n")
    if ns.json is not None:
        try:
            ns.json.write_text(text + "\n")
        except OSError as exc:
            raise UsageError(f"--json: cannot write {ns.json}: {exc.strerror or exc}") from None
    return 0
