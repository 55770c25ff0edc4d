"""The formats ``--input-file`` reads, and how the one a file is in is chosen.

``--custom-dataset-type`` names the format; without it, the first line decides: a ``"type"``
field naming a format, else the first format (in registration order) that has one of its
marking fields on that line (``input_length`` or ``hash_ids``: ``mooncake_trace``; ``text``,
``texts``, ``prompt``, ``messages``: ``single_turn``). ``random_pool`` has the fields of
``single_turn`` and is never guessed. When a later line does not fit the guess, its one-line
error says what the guess was based on.

Formats live in a registry: :func:`register_format` adds one (a :class:`FileFormat`: how one
line becomes a :class:`Row`, and how the kept rows become prompts). The built-in formats are
registered at the end of this module and in :mod:`aiperf._trace`.

Files are read one line at a time, each line at most :data:`MAX_LINE_BYTES`; the times of a
timed format go through a :class:`aiperf._schedule.Timeline`, which stops the reading at the
end of the ``--fixed-schedule-end-offset`` window. At most :data:`MAX_ROWS` lines are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from aiperf._config import MAX_NUM_PROMPTS, MAX_PROMPT_POOL_TOKENS
from aiperf._datasets import _entry_from, _json_type, _MediaFiles, _rng, decode_line, entry_prompts
from aiperf._schedule import Timeline, times
from aiperf._types import DatasetType, Prompt, Tokenizer, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig

#: the longest line read (a base64 image inline can be long); a longer one is an error.
MAX_LINE_BYTES = 64 * 1024 * 1024
#: lines kept from one file (each becomes a prompt held in memory before the run).
MAX_ROWS = MAX_NUM_PROMPTS
#: prompt tokens the kept lines of a trace may make, in all.
MAX_TRACE_TOKENS = MAX_PROMPT_POOL_TOKENS

_BOM = b"\xef\xbb\xbf"
_STREAM_POOL_DRAWS = 4


@attrs.frozen(kw_only=True)
class Row:
    """One kept line: where it was, its time, and what the format made of it."""

    line: int
    timestamp: float | None = None
    delay: float | None = None
    value: Any = None


@attrs.define(kw_only=True)
class FileContext:
    """What a format's functions get: the file, the run's config and tokenizer."""

    path: Path
    config: ProfileConfig
    tokenizer: Tokenizer
    #: how errors name the file: ``--input-file traces/day1.jsonl``.
    label: str
    media: _MediaFiles
    #: prompt tokens the kept lines will make (a format that knows adds to it).
    tokens: int = 0

    def where(self, line: int) -> str:
        return f"{self.label}: line {line}:"


@attrs.frozen(kw_only=True)
class FileFormat:
    """One ``--custom-dataset-type``."""

    name: str
    description: str
    #: ``parse(ctx, where, line, obj)``: one line (a JSON object) as a :class:`Row`; raise
    #: :class:`UsageError` starting with ``where`` for what is wrong.
    parse: Callable[[FileContext, str, int, dict[str, Any]], Row]
    #: ``build(ctx, rows)``: the prompts of the kept rows. A timed format returns exactly one
    #: prompt per row, in order (the schedule places them).
    build: Callable[[FileContext, list[Row]], list[Prompt]]
    #: fields whose presence on the first line says a file is in this format (empty: the
    #: format is never guessed).
    marks: tuple[str, ...] = ()
    #: whether lines carry times (``timestamp``/``delay``) for a fixed schedule.
    timed: bool = True


_FORMATS: dict[str, FileFormat] = {}


def register_format(fmt: FileFormat) -> None:
    """Add a format (``--custom-dataset-type NAME``); a name already taken is an error."""
    if fmt.name in _FORMATS and _FORMATS[fmt.name] is not fmt:
        raise ValueError(f"input file format {fmt.name!r} is registered twice")
    _FORMATS[fmt.name] = fmt


def formats() -> dict[str, FileFormat]:
    """Every registered format by name (the built-in ones included)."""
    _load_builtin()
    return dict(_FORMATS)


def _load_builtin() -> None:
    import aiperf._trace  # noqa: F401 - registers mooncake_trace


# -- reading ----------------------------------------------------------------------------------------


def iter_lines(handle: IO[bytes], label: str) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)`` of every non-blank line, never more than
    :data:`MAX_LINE_BYTES` of one line in memory."""
    number = 0
    while True:
        try:
            raw = handle.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"{label}: cannot read it: {exc.strerror or exc}") from None
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise UsageError(
                f"{label}: line {number}: longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB; "
                "expected one JSON object per line (JSONL)"
            )
        if number == 1:
            raw = raw.removeprefix(_BOM)
        if raw.strip():
            yield number, raw


def open_input(path: Path | None, label: str) -> IO[bytes]:
    if path is None:
        raise UsageError("--input-file: needed by --dataset input_file (a JSONL file of prompts)")
    if path.is_dir():
        raise UsageError(f"--input-file: {path} is a directory; expected a JSONL file")
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"--input-file: no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"--input-file: cannot read {path}: {exc.strerror or exc}") from None


def choose(name: str | None, where: str, first: dict[str, Any] | None) -> tuple[FileFormat, str | None]:
    """The format of a file: the one named, else the first line's guess; and, for a guess,
    what it was based on (for the errors of later lines)."""
    known = formats()
    if name is not None:
        fmt = known.get(name)
        if fmt is None:
            raise UsageError(
                f"--custom-dataset-type: unknown type {name!r}; use one of "
                f"{', '.join(sorted([*known, 'multi_turn']))}"
            )
        return fmt, None
    if first is None:
        return known["single_turn"], None
    declared = first.get("type")
    if isinstance(declared, str) and declared in known:
        return known[declared], f'its first line has "type": "{declared}"'
    for fmt in known.values():
        for key in fmt.marks:
            if key in first:
                return fmt, f'its first line has "{key}"'
    if "turns" in first:
        # Read as sessions before any prompt file is (see _conversations): reached only when
        # another format was asked for in a way this guess cannot see.
        raise UsageError(
            f'{where} "turns" marks a multi_turn file (sessions); name it with '
            "--custom-dataset-type multi_turn"
        )
    fields = sorted({key for fmt in known.values() for key in fmt.marks})
    raise UsageError(
        f"{where} no field says which format this is (expected one of "
        f"{', '.join(repr(k) for k in fields)}); name it with --custom-dataset-type"
    )


def read_rows(ctx: FileContext, handle: IO[bytes], name: str | None) -> tuple[FileFormat, list[Row], Timeline]:
    """Stream the file: choose its format, parse each line, keep the ones the schedule keeps."""
    lines = iter_lines(handle, ctx.label)
    first = next(lines, None)
    first_obj = decode_line(ctx.where(first[0]), first[1]) if first is not None else None
    fmt, guessed = choose(name, ctx.where(first[0]) if first else f"{ctx.label}:", first_obj)
    timeline = Timeline.of(ctx.config, ctx.label, timed_format=fmt.timed, format_name=fmt.name)
    rows: list[Row] = []
    if first is None:
        return fmt, rows, timeline

    def decoded() -> Iterator[tuple[int, dict[str, Any]]]:
        assert first is not None and first_obj is not None
        yield first[0], first_obj
        for number, raw in lines:
            yield number, decode_line(ctx.where(number), raw)

    for number, obj in decoded():
        where = ctx.where(number)
        try:
            row = fmt.parse(ctx, where, number, obj)
        except UsageError as exc:
            if guessed is None:
                raise
            raise UsageError(
                f"{exc} (read as {fmt.name} because {guessed}; name the format with "
                "--custom-dataset-type)"
            ) from None
        keep = timeline.admit(number, row.timestamp, row.delay)
        if keep is None:
            break
        if not keep:
            continue
        if len(rows) >= MAX_ROWS:
            raise UsageError(
                f"{where} more than {MAX_ROWS:,} requests; replay part of the file "
                "(--fixed-schedule-start-offset/--fixed-schedule-end-offset) or split it"
            )
        rows.append(row)
    timeline.check_kept(len(rows))
    return fmt, rows, timeline


@attrs.frozen(kw_only=True)
class InputFile:
    """The ``input_file`` dataset: the prompts of ``--input-file`` in its format."""

    config: ProfileConfig
    tokenizer: Tokenizer

    @classmethod
    def from_config(cls, config: ProfileConfig, tokenizer: Tokenizer) -> InputFile:
        return cls(config=config, tokenizer=tokenizer)

    def load(self) -> list[Prompt]:
        path = self.config.input_file
        handle = open_input(path, "--input-file")
        assert path is not None
        ctx = FileContext(
            path=path,
            config=self.config,
            tokenizer=self.tokenizer,
            label=f"--input-file {path}",
            media=_MediaFiles(path.parent),
        )
        with handle:
            fmt, rows, timeline = read_rows(ctx, handle, self.config.custom_dataset_type)
        if not rows:
            raise UsageError(
                f"--input-file: {path} has no prompts; expected one JSON object per line"
            )
        return timeline.place(fmt.build(ctx, rows))


# -- single_turn and random_pool ----------------------------------------------------------------------

#: plural fields of the reference format, each the list form of the field aiperf reads.
_PLURALS = (("texts", "text"), ("images", "image"), ("audios", "audio"))
_NOT_SENT = ("video", "videos")


def _strings_of(where: str, key: str, value: Any) -> list[str]:
    """A ``texts`` value: strings, or ``{"name": ..., "contents": [strings]}`` objects."""
    if not isinstance(value, list) or not value:
        shown = "an empty array" if value == [] else _json_type(value)
        raise UsageError(f'{where} "{key}" must be a non-empty array, got {shown}')
    out: list[str] = []
    for item in value:
        if isinstance(item, dict):
            contents = item.get("contents")
            if not isinstance(contents, list) or not all(isinstance(c, str) for c in contents):
                raise UsageError(f'{where} "{key}": an object in it needs "contents", an array of strings')
            out.extend(contents)
        elif isinstance(item, str):
            out.append(item)
        else:
            raise UsageError(f'{where} "{key}" must hold strings, got {_json_type(item)}')
    return out


def _normalized(where: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A single_turn line with its plural fields folded into the ones aiperf reads."""
    for key in _NOT_SENT:
        if key in obj:
            raise UsageError(f'{where} "{key}": aiperf sends no video; drop the field')
    out = dict(obj)
    for plural, single in _PLURALS:
        if plural not in obj:
            continue
        if single in obj:
            raise UsageError(f'{where} give one of "{single}", "{plural}", not both')
        value = out.pop(plural)
        if single == "text":
            out["text"] = "\n".join(_strings_of(where, plural, value))
        else:
            out[single] = value if isinstance(value, list) else [value]
    return out


def _extra(where: str, obj: dict[str, Any]) -> dict[str, Any]:
    value = obj.get("extra")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f'{where} "extra" must be an object of request fields, got {_json_type(value)}')
    return value


def _check_type(where: str, obj: dict[str, Any], name: str) -> None:
    declared = obj.get("type")
    if declared is not None and declared != name:
        raise UsageError(f'{where} "type" is {declared!r}, but the file is read as {name}')


def _parse_single_turn(ctx: FileContext, where: str, line: int, obj: dict[str, Any]) -> Row:
    _check_type(where, obj, "single_turn")
    timestamp, delay = times(where, obj)
    entry = _entry_from(where, _normalized(where, obj), ctx.media)
    return Row(line=line, timestamp=timestamp, delay=delay, value=(entry, _extra(where, obj)))


def _parse_pool(ctx: FileContext, where: str, line: int, obj: dict[str, Any]) -> Row:
    _check_type(where, obj, "random_pool")
    for key in ("timestamp", "delay"):
        if key in obj:
            raise UsageError(
                f'{where} "{key}": random_pool draws its requests at random, so times mean '
                "nothing here; use single_turn to replay lines at their times"
            )
    entry = _entry_from(where, _normalized(where, obj), ctx.media)
    return Row(line=line, value=(entry, _extra(where, obj)))


def _build_single_turn(ctx: FileContext, rows: list[Row]) -> list[Prompt]:
    config = ctx.config
    prompts = entry_prompts(
        [row.value[0] for row in rows],
        ctx.tokenizer,
        config.random_seed,
        config.output_tokens_mean,
        config.output_tokens_stddev,
    )
    return [
        attrs.evolve(prompt, extra=dict(row.value[1])) if row.value[1] else prompt
        for prompt, row in zip(prompts, rows)
    ]


def pool_draws(config: ProfileConfig) -> int:
    """How many requests a random_pool run draws: ``--num-prompts``, or as many as the run
    sends when that is more (so that the draws never repeat in a cycle)."""
    count = config.effective_request_count
    needed = count + config.warmup_request_count if count is not None else 0
    return max(config.num_prompts, needed)


def _build_pool(ctx: FileContext, rows: list[Row]) -> list[Prompt]:
    pool = _build_single_turn(ctx, rows)
    rng = _rng(ctx.config.random_seed, _STREAM_POOL_DRAWS)
    picks: Sequence[int] = rng.integers(0, len(pool), size=pool_draws(ctx.config)).tolist()
    return [pool[i] for i in picks]


SINGLE_TURN = FileFormat(
    name="single_turn",
    description='one request per line: "text"/"texts" or "messages", optional "image", "audio", '
    '"output_length", "timestamp" or "delay" (ms), "extra"',
    parse=_parse_single_turn,
    build=_build_single_turn,
    marks=("text", "texts", "prompt", "messages"),
)
RANDOM_POOL = FileFormat(
    name="random_pool",
    description="lines like single_turn's, drawn at random with replacement (--random-seed)",
    parse=_parse_pool,
    build=_build_pool,
    timed=False,
)


INPUT_FILE = DatasetType(
    name="input_file",
    create=InputFile.from_config,
    description="prompts from --input-file: single_turn, random_pool or mooncake_trace lines",
)


register_format(SINGLE_TURN)
register_format(RANDOM_POOL)

__all__ = [
    "FileContext",
    "FileFormat",
    "INPUT_FILE",
    "InputFile",
    "Row",
    "formats",
    "register_format",
]
