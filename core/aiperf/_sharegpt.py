"""ShareGPT (``--public-dataset sharegpt``): real prompts with the lengths of real answers.

The file is ShareGPT's JSON: an array of ``{"id": ..., "conversations": [{"from": "human",
"value": ...}, {"from": "gpt", "value": ...}, ...]}``. Each conversation gives one request: its
first human message followed by a gpt answer (without ``from`` fields: its first two
messages); ``max_tokens`` is the answer's length in tokens (``--output-tokens-mean`` instead,
when given). As in the reference tool, a conversation is skipped when the prompt has fewer
than 4 or more than 1024 tokens, the answer fewer than 4 (unless ``--output-tokens-mean`` is
given), or both together more than 2048. Requests keep the file's order.

The array is read one conversation at a time, so a file of hundreds of megabytes never sits in
memory whole, and reading stops once the run has the prompts it will send. Without
``--input-file`` the file is downloaded once into the cache (``$XDG_CACHE_HOME/aiperf``);
where the network cannot reach it, one line says where to get it.
"""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
import structlog

from aiperf._datasets import _output_lengths
from aiperf._tokenizer import count_many
from aiperf._types import DatasetType, Prompt, Tokenizer, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig

log = structlog.get_logger()

URL = (
    "https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/main/"
    "ShareGPT_V3_unfiltered_cleaned_split.json"
)
FILENAME = "ShareGPT_V3_unfiltered_cleaned_split.json"
DOWNLOAD_TIMEOUT_S = 15.0
MIN_TOKENS = 4
MAX_PROMPT_TOKENS = 1024
MAX_TOTAL_TOKENS = 2048
#: the longest one conversation of the array may be.
MAX_ITEM_BYTES = 64 * 1024 * 1024
_CHUNK = 1 << 20
_BATCH = 512


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aiperf" / "datasets" / FILENAME


def iter_array(handle: IO[bytes], label: str) -> Iterator[tuple[int, Any]]:
    """``(position, item)`` of each item of a top-level JSON array, read in chunks."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buf = ""
    pos = 0
    eof = False
    index = 0
    started = False

    def more() -> bool:
        nonlocal buf, pos, eof
        chunk = handle.read(_CHUNK)
        if not chunk:
            eof = True
            utf8.decode(b"", final=True)
            return False
        buf = buf[pos:] + utf8.decode(chunk)
        pos = 0
        return True

    def skip(chars: str) -> None:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in chars:
                pos += 1
            if pos < len(buf) or eof or not more():
                return

    try:
        while True:
            skip(" \t\r\n\ufeff" if not started else " \t\r\n")
            if pos >= len(buf):
                raise UsageError(f"{label}: the JSON array ends early (no closing ])")
            if not started:
                if buf[pos] != "[":
                    raise UsageError(f"{label}: expected ShareGPT's JSON, an array of conversations")
                started = True
                pos += 1
                skip(" \t\r\n")
                if pos < len(buf) and buf[pos] == "]":
                    return
                continue
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if len(buf) - pos > MAX_ITEM_BYTES:
                        raise UsageError(
                            f"{label}: conversation {index + 1} is not valid JSON ({exc.msg})"
                        ) from None
                    if eof or not more():
                        raise UsageError(
                            f"{label}: conversation {index + 1} is not valid JSON ({exc.msg})"
                        ) from None
            pos = end
            yield index, item
            index += 1
            skip(" \t\r\n")
            if pos >= len(buf):
                raise UsageError(f"{label}: the JSON array ends early (no closing ])")
            if buf[pos] == "]":
                return
            if buf[pos] != ",":
                raise UsageError(f"{label}: after conversation {index}: expected , or ]")
            pos += 1
    except UnicodeDecodeError:
        raise UsageError(f"{label}: not valid UTF-8") from None


def first_exchange(item: Any) -> tuple[str, str] | None:
    """The conversation's first human message and the gpt answer after it, if any."""
    if not isinstance(item, dict):
        return None
    messages = [m for m in item.get("conversations") or [] if isinstance(m, dict)]
    if len(messages) < 2:
        return None
    if not any(m.get("from") in ("human", "gpt") for m in messages):
        prompt, answer = messages[0].get("value"), messages[1].get("value")
    else:
        roles = [m for m in messages if m.get("from") in ("human", "gpt")]
        for a, b in zip(roles, roles[1:]):
            if a.get("from") == "human" and b.get("from") == "gpt":
                prompt, answer = a.get("value"), b.get("value")
                break
        else:
            return None
    if not isinstance(prompt, str) or not isinstance(answer, str) or not prompt or not answer:
        return None
    return prompt, answer


@attrs.frozen(kw_only=True)
class ShareGPT:
    config: ProfileConfig
    tokenizer: Tokenizer

    @classmethod
    def from_config(cls, config: ProfileConfig, tokenizer: Tokenizer) -> ShareGPT:
        return cls(config=config, tokenizer=tokenizer)

    def path(self) -> Path:
        if self.config.input_file is not None:
            return self.config.input_file
        cached = cache_path()
        if cached.is_file():
            return cached
        return download(cached)

    def load(self) -> list[Prompt]:
        config = self.config
        path = self.path()
        label = f"--public-dataset sharegpt ({path})"
        if path.is_dir():
            raise UsageError(f"{label}: a directory; expected ShareGPT's JSON file")
        count = config.effective_request_count
        wanted = count + config.warmup_request_count if count is not None else None
        keep_short_answers = config.output_tokens_mean is not None
        kept: list[tuple[str, int, int]] = []
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise UsageError(f"{label}: cannot read it: {exc.strerror or exc}") from None
        seen = 0
        with handle:
            batch: list[tuple[str, str]] = []
            for _, item in iter_array(handle, label):
                seen += 1
                pair = first_exchange(item)
                if pair is not None:
                    batch.append(pair)
                if len(batch) >= _BATCH:
                    kept += self._filter(batch, keep_short_answers)
                    batch = []
                    if wanted is not None and len(kept) >= wanted:
                        break
            kept += self._filter(batch, keep_short_answers)
        if wanted is not None:
            kept = kept[:wanted]
        if not kept:
            raise UsageError(
                f"{label}: none of its {seen} conversations has a human prompt of {MIN_TOKENS} "
                f"to {MAX_PROMPT_TOKENS} tokens answered in at least {MIN_TOKENS}"
            )
        defaults = _output_lengths(
            config.random_seed, len(kept), config.output_tokens_mean, config.output_tokens_stddev
        )
        return [
            Prompt(text=text, input_tokens=isl, max_tokens=default if default is not None else osl)
            for (text, isl, osl), default in zip(kept, defaults)
        ]

    def _filter(self, pairs: list[tuple[str, str]], keep_short_answers: bool) -> list[tuple[str, int, int]]:
        if not pairs:
            return []
        counts = count_many(self.tokenizer, [text for pair in pairs for text in pair])
        out = []
        for i, (prompt, _answer) in enumerate(pairs):
            isl, osl = counts[2 * i], counts[2 * i + 1]
            if isl < MIN_TOKENS or isl > MAX_PROMPT_TOKENS or isl + osl > MAX_TOTAL_TOKENS:
                continue
            if osl < MIN_TOKENS and not keep_short_answers:
                continue
            out.append((prompt, isl, osl))
        return out


def download(target: Path) -> Path:
    """Fetch ShareGPT into ``target``, or one line saying where to get it."""
    log.info("downloading_dataset", dataset="sharegpt", url=URL, to=str(target))
    part: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(URL, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - a fixed https URL
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as out:
                part = Path(out.name)
                shutil.copyfileobj(response, out, _CHUNK)
        part.replace(target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        if part is not None:
            part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise UsageError(
            f"--public-dataset sharegpt: cannot download it ({reason}); get {FILENAME} from "
            f"{URL} and pass it with --input-file FILE"
        ) from None
    return target


SHAREGPT = DatasetType(
    name="sharegpt",
    create=ShareGPT.from_config,
    description="ShareGPT conversations (--public-dataset sharegpt [--input-file FILE])",
)
