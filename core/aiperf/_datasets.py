"""The built-in prompt sources: synthetic prompts of exact token counts, and a JSONL file.

Both are :class:`aiperf.DatasetType` values (:data:`SYNTHETIC`, :data:`INPUT_FILE`) that the
built-in plugin registers. Prompts are made before the clock starts; the run cycles through
the pool.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import mimetypes
import wave
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import structlog

from aiperf._tokenizer import builtin_words, count_many
from aiperf._types import DatasetType, Prompt, Tokenizer, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig

log = structlog.get_logger()

#: a prompt that misses its token count under a non-builtin tokenizer is re-measured and
#: patched at most this many times before the closest text is kept.
MAX_REPAIRS = 16

_LEAD_CANDIDATES = 256

# Independent random streams, so that e.g. --output-tokens-mean does not change the prompts.
_STREAM_INPUT_LENGTHS = 1
_STREAM_OUTPUT_LENGTHS = 2
_STREAM_WORDS = 3


def _rng(seed: int | None, stream: int) -> np.random.Generator:
    # SeedSequence wants non-negative entropy; two's complement keeps distinct seeds distinct.
    return np.random.default_rng([(seed or 0) & (2**64 - 1), stream])


def sample_lengths(rng: np.random.Generator, n: int, mean: float, stddev: float) -> list[int]:
    """``n`` draws of N(mean, stddev), rounded to integers, at least 1."""
    if stddev <= 0:
        return [max(1, round(mean))] * n
    draws = np.rint(rng.normal(mean, stddev, size=n)).astype(np.int64)
    return np.maximum(draws, 1).tolist()


# -- synthetic -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class WordPool:
    """Words that cost exactly one token each under one tokenizer.

    A prompt of ``n`` tokens is one ``lead`` word followed by ``n - 1`` ``words`` (each with
    its leading space). With a pre-tokenizer that splits at spaces (byte-level BPE such as the
    builtin, GPT-2, Llama 3, Qwen; Metaspace; WordPiece) the count is then exactly ``n``.
    """

    leads: tuple[str, ...]
    words: tuple[str, ...]
    #: where words cost more than one token (a byte-level vocabulary, say): pool indexes of
    #: the words by their cost, so the repair can swap a word for one a few tokens longer.
    by_cost: dict[int, tuple[int, ...]] = attrs.field(factory=dict)
    #: the cost of each word, by pool index (empty when every word costs one token).
    costs: tuple[int, ...] = ()

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> WordPool:
        """The pool of ``tokenizer``, measured once per tokenizer object."""
        try:
            pool = _pools.get(tokenizer)
        except TypeError:  # neither weakly referable nor hashable: measure every time
            return cls._measure(tokenizer)
        if pool is None:
            pool = _pools[tokenizer] = cls._measure(tokenizer)
        return pool

    @classmethod
    def _measure(cls, tokenizer: Tokenizer) -> WordPool:
        candidates = builtin_words()
        context = "The"
        base = tokenizer.count(context)
        spaced = [" " + word for word in candidates]
        # One encode settles the common case: each word costs at least one token, so a total
        # of one per word means every word costs exactly one.
        by_cost: dict[int, list[int]] = {}
        if tokenizer.count(context + "".join(spaced)) - base == len(spaced):
            words = tuple(spaced)
        else:
            # The cost of a word is measured after another word, where it will stand.
            costs = [cost - base for cost in count_many(tokenizer, [context + w for w in spaced])]
            words = tuple(w for w, cost in zip(spaced, costs) if cost == 1)
            if not words:
                words = tuple(spaced)
                for index, cost in enumerate(costs):
                    by_cost.setdefault(cost, []).append(index)
        # The most frequent words give leads enough; measuring them all costs start-up time.
        capitals = [word.capitalize() for word in candidates[:_LEAD_CANDIDATES]]
        leads = tuple(w for w, cost in zip(capitals, count_many(tokenizer, capitals)) if cost == 1)
        # A tokenizer that never gives a word one token: the repair loop does what it can.
        return cls(
            leads=leads or ("The",),
            words=words,
            by_cost={cost: tuple(indexes) for cost, indexes in by_cost.items()},
            costs=tuple(costs) if by_cost else (),
        )

    def swap_for(self, word: int, gap: int, rng: np.random.Generator) -> int | None:
        """A word costing ``gap`` tokens more than ``word`` (fewer when negative), if any."""
        if not self.costs:
            return None
        choices = self.by_cost.get(self.costs[word] + gap)
        return int(rng.choice(choices)) if choices else None


_pools: weakref.WeakKeyDictionary[Any, WordPool] = weakref.WeakKeyDictionary()


@attrs.frozen(kw_only=True)
class SyntheticDataset:
    """``num_prompts`` prompts of random words whose token counts follow N(mean, stddev).

    Under the builtin tokenizer every prompt has exactly its drawn count. No two prompts share
    their first two tokens (while ``num_prompts`` allows), so a server's prefix cache cannot
    serve one prompt from another. The same seed gives the same prompts.
    """

    tokenizer: Tokenizer
    num_prompts: int
    input_tokens_mean: int
    input_tokens_stddev: float = 0.0
    output_tokens_mean: int | None = None
    output_tokens_stddev: float = 0.0
    seed: int | None = 0

    @classmethod
    def from_config(cls, config: ProfileConfig, tokenizer: Tokenizer) -> SyntheticDataset:
        return cls(
            tokenizer=tokenizer,
            num_prompts=config.num_prompts,
            input_tokens_mean=config.synthetic_input_tokens_mean,
            input_tokens_stddev=config.synthetic_input_tokens_stddev,
            output_tokens_mean=config.output_tokens_mean,
            output_tokens_stddev=config.output_tokens_stddev,
            seed=config.random_seed,
        )

    def load(self) -> list[Prompt]:
        n = self.num_prompts
        targets = sample_lengths(
            _rng(self.seed, _STREAM_INPUT_LENGTHS),
            n,
            self.input_tokens_mean,
            self.input_tokens_stddev,
        )
        max_tokens = _output_lengths(
            self.seed, n, self.output_tokens_mean, self.output_tokens_stddev
        )
        pool = WordPool.for_tokenizer(self.tokenizer)
        rng = _rng(self.seed, _STREAM_WORDS)
        word_ids = _prompt_words(rng, targets, len(pool.leads), len(pool.words))
        texts = [_compose(pool, lead, ids) for lead, ids in word_ids]
        counts = count_many(self.tokenizer, texts)
        missed = 0
        for i, (target, count) in enumerate(zip(targets, counts)):
            if count != target:
                texts[i], counts[i] = self._repair(pool, rng, word_ids[i], target, count)
                missed += counts[i] != target
        if missed:
            log.warning(
                "synthetic_prompts_inexact", tokenizer=self.tokenizer.name, prompts=missed, of=n
            )
        return [
            Prompt(text=text, input_tokens=count, max_tokens=limit)
            for text, count, limit in zip(texts, counts, max_tokens)
        ]

    def _repair(
        self,
        pool: WordPool,
        rng: np.random.Generator,
        prompt: tuple[int, list[int]],
        target: int,
        count: int,
    ) -> tuple[str, int]:
        """Add, drop or swap words at the end until the tokenizer agrees; keep the closest."""
        lead, ids = prompt[0], list(prompt[1])
        best = (abs(count - target), _compose(pool, lead, ids), count)
        last_step = 0
        for _ in range(MAX_REPAIRS):
            gap = target - count
            if gap == 0:
                break
            swap = pool.swap_for(ids[-1], gap, rng) if ids else None
            if swap is not None:
                # Multi-token words: one swap of the last word closes a small gap exactly.
                ids[-1] = swap
                text = _compose(pool, lead, ids)
                count = self.tokenizer.count(text)
                if abs(count - target) < best[0]:
                    best = (abs(count - target), text, count)
                continue
            # Words may cost more (or less) than one token here: resize in proportion.
            per_word = max(count, 1) / (len(ids) + 1)
            step = round(gap / per_word) or (1 if gap > 0 else -1)
            step = max(step, 1 - len(ids))
            if step == 0 or step == -last_step:
                # Adding or dropping would swing back across the target: try another last word.
                if not ids:
                    break
                ids[-1] = int(rng.integers(0, len(pool.words)))
                step = 0
            elif step > 0:
                ids.extend(rng.integers(0, len(pool.words), size=step).tolist())
            else:
                del ids[step:]
            last_step = step
            text = _compose(pool, lead, ids)
            count = self.tokenizer.count(text)
            if abs(count - target) < best[0]:
                best = (abs(count - target), text, count)
        return best[1], best[2]


def _prompt_words(
    rng: np.random.Generator, targets: Sequence[int], leads: int, words: int
) -> list[tuple[int, list[int]]]:
    """For each prompt: its lead word and ``target - 1`` following words, as pool indexes."""
    n = len(targets)
    # Distinct (lead, first word) pairs, drawn without replacement while there are enough.
    pairs = leads * words
    keys = (
        rng.choice(pairs, size=n, replace=False) if n <= pairs else rng.integers(0, pairs, size=n)
    )
    tails = rng.integers(0, words, size=sum(max(0, t - 2) for t in targets)).tolist()
    out: list[tuple[int, list[int]]] = []
    position = 0
    for key, target in zip(keys.tolist(), targets):
        lead, first = divmod(key, words)
        rest = max(0, target - 2)
        ids = [first, *tails[position : position + rest]] if target >= 2 else []
        position += rest
        out.append((lead, ids))
    return out


def _compose(pool: WordPool, lead: int, ids: Sequence[int]) -> str:
    words = pool.words
    return pool.leads[lead] + "".join([words[i] for i in ids])


def _output_lengths(seed: int | None, n: int, mean: int | None, stddev: float) -> list[int | None]:
    if mean is None:
        return [None] * n
    return list(sample_lengths(_rng(seed, _STREAM_OUTPUT_LENGTHS), n, mean, stddev))


# -- JSONL input file ------------------------------------------------------------------------

_PROMPT_KEYS = ("text", "prompt", "messages")
_LIMIT_KEYS = ("max_tokens", "output_length")
_MEDIA_KEYS = ("image", "audio")


@attrs.frozen(kw_only=True)
class _Entry:
    text: str
    #: the pieces of text whose tokens are counted (one per chat message part).
    counted: tuple[str, ...]
    messages: tuple[dict[str, Any], ...] | None
    max_tokens: int | None
    images: tuple[str, ...] = ()
    audio: tuple[tuple[str, str], ...] = ()
    #: what the images and audio weigh (``input_image_bytes``, ...), as the synthetic ones.
    values: dict[str, float] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class InputFileDataset:
    """Prompts from a JSONL file, one JSON object per line (blank lines are skipped).

    Each object has ``text`` or ``prompt`` (a string) or ``messages`` (OpenAI chat messages),
    and optionally ``max_tokens`` or ``output_length`` (a positive integer). Lines without
    one take their ``max_tokens`` from ``--output-tokens-mean/-stddev`` when given. With
    ``text`` or ``prompt``, ``image`` and ``audio`` (a string or a list of strings) name local
    files (read now, sent as base64) or, for images, http(s) URLs passed through (see
    :class:`_MediaFiles`). Other keys are ignored.
    """

    path: Path | None
    tokenizer: Tokenizer
    output_tokens_mean: int | None = None
    output_tokens_stddev: float = 0.0
    seed: int | None = 0

    @classmethod
    def from_config(cls, config: ProfileConfig, tokenizer: Tokenizer) -> InputFileDataset:
        return cls(
            path=config.input_file,
            tokenizer=tokenizer,
            output_tokens_mean=config.output_tokens_mean,
            output_tokens_stddev=config.output_tokens_stddev,
            seed=config.random_seed,
        )

    def load(self) -> list[Prompt]:
        if self.path is None:
            raise UsageError(
                "--input-file: needed by --dataset input_file (a JSONL file of prompts)"
            )
        entries = list(_read_entries(self.path))
        if not entries:
            raise UsageError(
                f"--input-file: {self.path} has no prompts; expected one JSON object per line"
            )
        return entry_prompts(
            entries, self.tokenizer, self.seed, self.output_tokens_mean, self.output_tokens_stddev
        )


def entry_prompts(
    entries: Sequence[_Entry],
    tokenizer: Tokenizer,
    seed: int | None,
    output_tokens_mean: int | None,
    output_tokens_stddev: float,
) -> list[Prompt]:
    """Prompts of parsed input-file lines: tokens counted, ``max_tokens`` from the line or
    drawn from ``--output-tokens-mean/-stddev``."""
    pieces = [piece for entry in entries for piece in entry.counted]
    piece_counts = iter(count_many(tokenizer, pieces))
    defaults = _output_lengths(seed, len(entries), output_tokens_mean, output_tokens_stddev)
    prompts = []
    for entry, default in zip(entries, defaults):
        tokens = sum(next(piece_counts) for _ in entry.counted)
        prompts.append(
            Prompt(
                text=entry.text,
                input_tokens=tokens,
                max_tokens=entry.max_tokens if entry.max_tokens is not None else default,
                messages=entry.messages,
                images=entry.images,
                audio=entry.audio,
                input_values=dict(entry.values),
            )
        )
    return prompts


# -- images and audio named in the input file ---------------------------------------------------

#: leading bytes -> media type, for the image formats the chat, Responses and Messages APIs take.
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_AUDIO_SUFFIXES = {".wav": "wav", ".mp3": "mp3"}


def image_media_type(data: bytes, name: str) -> str | None:
    """The image's media type from its first bytes, else from its file name's extension."""
    for magic, media_type in _IMAGE_MAGIC:
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    guessed, _ = mimetypes.guess_type(name)
    return guessed if guessed is not None and guessed.startswith("image/") else None


def audio_format(data: bytes, name: str) -> str | None:
    """``wav`` or ``mp3`` (the chat API's ``input_audio`` formats) from the first bytes, else
    from the extension."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return _AUDIO_SUFFIXES.get(Path(name).suffix.lower())


def _wav_seconds(data: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(data)) as clip:
            rate = clip.getframerate()
            return clip.getnframes() / rate if rate else None
    except (wave.Error, EOFError):  # a WAV the module cannot read (compressed, say)
        return None


@attrs.frozen
class _Media:
    """One file's (or URL's) part of a payload: the URL or base64 data, and what it weighs."""

    sent: str
    size: int | None
    seconds: float | None = None
    fmt: str = ""


@attrs.define
class _MediaFiles:
    """Images and audio named in the input file, each file read once.

    A relative path is looked up from the current directory, then from the input file's
    folder. A local image becomes a ``data:`` URL (media type from its bytes, else its
    extension); an http(s) image URL or a ``data:`` URL is sent as it is. Audio must be a
    local WAV or MP3 file: the ``input_audio`` part carries base64 data, never a URL.
    """

    folder: Path
    _cache: dict[tuple[str, str], _Media] = attrs.field(factory=dict)

    def entry(self, where: str, obj: dict[str, Any]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], dict[str, float]]:
        images = [self._get(where, "image", ref) for ref in _strings(where, obj, "image")]
        clips = [self._get(where, "audio", ref) for ref in _strings(where, obj, "audio")]
        values: dict[str, float] = {}
        if images:
            values["input_image_count"] = float(len(images))
            known = [m.size for m in images if m.size is not None]
            if known:
                values["input_image_bytes"] = float(sum(known))
        if clips:
            values["input_audio_bytes"] = float(sum(m.size or 0 for m in clips))
            if all(m.seconds is not None for m in clips):
                values["input_audio_seconds"] = sum(m.seconds or 0.0 for m in clips)
        return tuple(m.sent for m in images), tuple((m.sent, m.fmt) for m in clips), values

    def _get(self, where: str, key: str, ref: str) -> _Media:
        media = self._cache.get((key, ref))
        if media is None:
            media = self._cache[(key, ref)] = self._load(where, key, ref)
        return media

    def _load(self, where: str, key: str, ref: str) -> _Media:
        lowered = ref[:8].lower()
        if lowered.startswith(("http://", "https://")):
            if key == "audio":
                raise UsageError(
                    f'{where} "audio": {ref} is a URL; input_audio carries the clip itself, '
                    "so give a local WAV or MP3 file"
                )
            return _Media(sent=ref, size=None)
        if lowered.startswith("data:"):
            return self._data_url(where, key, ref)
        data, name = self._read(where, key, ref)
        if key == "image":
            media_type = image_media_type(data, name)
            if media_type is None:
                raise UsageError(f'{where} "image": {ref} is not an image aiperf knows (PNG, JPEG, GIF or WebP)')
            return _Media(sent=f"data:{media_type};base64,{base64.b64encode(data).decode()}", size=len(data))
        fmt = audio_format(data, name)
        if fmt is None:
            raise UsageError(f'{where} "audio": {ref} is neither WAV nor MP3 (the formats input_audio takes)')
        seconds = _wav_seconds(data) if fmt == "wav" else None
        return _Media(sent=base64.b64encode(data).decode(), size=len(data), seconds=seconds, fmt=fmt)

    def _data_url(self, where: str, key: str, ref: str) -> _Media:
        if key == "audio":
            raise UsageError(f'{where} "audio": give a local WAV or MP3 file, not a data: URL')
        head, sep, payload = ref.partition(",")
        if not sep or not head.endswith(";base64"):
            raise UsageError(f'{where} "image": a data: URL must be base64 (data:image/png;base64,...)')
        try:
            size = len(base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise UsageError(f'{where} "image": the data: URL\'s base64 is not valid') from None
        return _Media(sent=ref, size=size)

    def _read(self, where: str, key: str, ref: str) -> tuple[bytes, str]:
        path = Path(ref).expanduser()
        candidates = [path] if path.is_absolute() else [path, self.folder / path]
        for candidate in candidates:
            if candidate.is_file():
                try:
                    return candidate.read_bytes(), candidate.name
                except OSError as exc:
                    raise UsageError(f'{where} "{key}": cannot read {candidate}: {exc.strerror or exc}') from None
            if candidate.is_dir():
                raise UsageError(f'{where} "{key}": {candidate} is a directory, not a file')
        looked = " or ".join(str(c) for c in dict.fromkeys(candidates))
        raise UsageError(f'{where} "{key}": no such file: {looked}')


def _strings(where: str, obj: dict[str, Any], key: str) -> list[str]:
    """A media field: a string or a non-empty list of non-empty strings."""
    if key not in obj:
        return []
    value = obj[key]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        shown = "an empty string or array" if value in ("", []) else _json_type(value)
        raise UsageError(f'{where} "{key}" must be a path or URL, or an array of them, got {shown}')
    return items


def _read_entries(path: Path) -> Iterator[_Entry]:
    if path.is_dir():
        raise UsageError(f"--input-file: {path} is a directory; expected a JSONL file")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"--input-file: no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"--input-file: cannot read {path}: {exc.strerror or exc}") from None
    media = _MediaFiles(path.parent)
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if raw.strip():
                    yield _parse_line(number, raw, media)
        except OSError as exc:
            raise UsageError(f"--input-file: cannot read {path}: {exc.strerror or exc}") from None


#: JSON nesting an input line may have: messages with content parts need a handful; far more
#: would only make every later ``json.dumps`` of the payload recurse that deep.
MAX_NESTING = 64


def _too_deep(obj: Any, limit: int) -> bool:
    """Iterative (a recursive walk would itself hit the recursion limit)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            if depth > limit:
                return True
            stack.extend((item, depth + 1) for item in value)
    return False


def _parse_line(
    number: int, raw: bytes, media: _MediaFiles | None = None, label: str = "--input-file"
) -> _Entry:
    where = f"{label}: line {number}:"
    return _entry_from(where, decode_line(where, raw), media)


def decode_line(where: str, raw: bytes) -> dict[str, Any]:
    """One JSONL line as a JSON object, or one line naming what is wrong (``where`` first)."""
    try:
        line = raw.decode("utf-8").rstrip()
    except UnicodeDecodeError:
        raise UsageError(f"{where} not valid UTF-8") from None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise UsageError(f"{where} nested too deeply (more than {MAX_NESTING} levels)") from None
    if _too_deep(obj, MAX_NESTING):
        raise UsageError(f"{where} nested too deeply (more than {MAX_NESTING} levels)")
    if not isinstance(obj, dict):
        raise UsageError(f"{where} expected a JSON object, got {_json_type(obj)}")
    return obj


def _entry_from(where: str, obj: dict[str, Any], media: _MediaFiles | None) -> _Entry:
    present = [key for key in _PROMPT_KEYS if key in obj]
    if not present:
        raise UsageError(f'{where} expected a "text", "prompt" or "messages" field')
    if len(present) > 1:
        raise UsageError(f"{where} give one of {_quoted(present)}, not several")
    key = present[0]
    max_tokens = _max_tokens(where, obj)
    given = [k for k in _MEDIA_KEYS if k in obj]
    if key == "messages":
        if given:
            raise UsageError(
                f'{where} {_quoted(given)}: only with "text" or "prompt"; with "messages", '
                "put images and audio in the messages' content parts"
            )
        messages, texts = _messages(where, obj["messages"])
        return _Entry(
            text="\n".join(texts),
            counted=texts,
            messages=messages,
            max_tokens=max_tokens,
        )
    text = obj[key]
    if not isinstance(text, str):
        raise UsageError(f'{where} "{key}" must be a string, got {_json_type(text)}')
    if not text:
        raise UsageError(f'{where} "{key}" is empty')
    if given:
        images, audio, values = (media or _MediaFiles(Path.cwd())).entry(where, obj)
        return _Entry(
            text=text, counted=(text,), messages=None, max_tokens=max_tokens,
            images=images, audio=audio, values=values,
        )  # fmt: skip
    return _Entry(text=text, counted=(text,), messages=None, max_tokens=max_tokens)


def _max_tokens(where: str, obj: dict[str, Any]) -> int | None:
    present = [key for key in _LIMIT_KEYS if key in obj]
    if len(present) > 1:
        raise UsageError(f"{where} give one of {_quoted(present)}, not both")
    if not present:
        return None
    value = obj[present[0]]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        shown = json.dumps(value) if number else _json_type(value)
        raise UsageError(f'{where} "{present[0]}" must be a positive integer, got {shown}')
    return value


def _messages(where: str, value: Any) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    if not isinstance(value, list) or not value:
        shown = "an empty array" if value == [] else _json_type(value)
        raise UsageError(
            f'{where} "messages" must be a non-empty array of chat messages, got {shown}'
        )
    texts: list[str] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise UsageError(f'{where} "messages"[{i}] must be an object with a "role" string')
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            # Multi-part content (text and images): only the text parts carry tokens we count.
            for part in content:
                if not isinstance(part, dict):
                    raise UsageError(f'{where} "messages"[{i}].content parts must be objects')
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
        elif content is not None:
            raise UsageError(
                f'{where} "messages"[{i}].content must be a string or an array of parts, '
                f"got {_json_type(content)}"
            )
    return tuple(value), tuple(texts)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _quoted(keys: Sequence[str]) -> str:
    return ", ".join(f'"{key}"' for key in keys)


# -- registration ----------------------------------------------------------------------------

SYNTHETIC = DatasetType(
    name="synthetic",
    create=SyntheticDataset.from_config,
    description="random prompts with exact token counts (--synthetic-input-tokens-mean/-stddev)",
)
INPUT_FILE = DatasetType(
    name="input_file",
    create=InputFileDataset.from_config,
    description="prompts from a JSONL file (--input-file)",
)
