"""Flags that shape the workload beyond one prompt per request: conversations, arrival
patterns and ramps, client-side cancellation, shared prefixes.

They arrive in ``config.plugin_options`` (the built-in plugin adds them, as it adds the
endpoint types' flags) and are checked once here into a frozen value: a bad value, or a flag
that would change nothing, is one line naming the flag (exit 2) before the run.
"""

from __future__ import annotations

import argparse
import functools
import math
from typing import TYPE_CHECKING, Any

import attrs

from aiperf._types import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from aiperf._config import ProfileConfig

#: the file formats ``--custom-dataset-type`` names that this module knows.
MULTI_TURN = "multi_turn"
CUSTOM_TYPES = (MULTI_TURN,)
#: bounds that keep a synthetic conversation pool from eating memory before the first request.
MAX_CONVERSATIONS = 1_000_000
MAX_TURNS = 10_000
MAX_DELAY_MS = 24 * 3600 * 1000.0
MAX_RAMP_S = 7 * 24 * 3600.0
MAX_PREFIX_TOKENS = 1_000_000
MAX_PREFIXES = 100_000
MAX_SMOOTHNESS = 1_000.0
#: endpoint types whose requests carry a message list (the history of a conversation, a
#: system message); other text endpoints get the history as one text.
MESSAGE_TYPES = frozenset(("chat", "responses", "messages"))
#: endpoint types a shared system prompt can go to (as a system message, or before the prompt).
SYSTEM_TYPES = frozenset(("chat", "responses", "completions"))


def add_options(parser: argparse.ArgumentParser) -> None:
    conv = parser.add_argument_group("Conversations (multi-turn sessions)")
    conv.add_argument(
        "--conversation-num", "--num-conversations", "--num-sessions", type=int, metavar="N",
        help="run N multi-turn sessions (synthetic, or sessions of a multi_turn --input-file); "
        "each turn sends the whole history, the server's replies included; --concurrency "
        "counts sessions",
    )
    conv.add_argument("--conversation-turn-mean", "--session-turns-mean", type=int, metavar="N", help="turns per synthetic session (default 1)")
    conv.add_argument("--conversation-turn-stddev", "--session-turns-stddev", type=float, metavar="N", help="(default 0)")
    conv.add_argument("--conversation-turn-delay-mean", "--session-turn-delay-mean", type=float, metavar="MS", help="think time before each turn after the first, in ms, from the previous reply (default 0)")
    conv.add_argument("--conversation-turn-delay-stddev", "--session-turn-delay-stddev", type=float, metavar="MS", help="(default 0)")
    conv.add_argument("--session-header", metavar="NAME", help="send each session's id in this HTTP header (for routers with session affinity)")
    arrivals = parser.add_argument_group("Arrivals, ramps and cancellation")
    arrivals.add_argument("--arrival-smoothness", "--vllm-burstiness", type=float, metavar="K", help="--request-rate-mode gamma: gamma shape of the gaps; 1 is Poisson, below 1 bursty, above 1 smoother (default 1)")
    arrivals.add_argument("--request-rate-ramp-duration", type=float, metavar="S", help="raise the request rate linearly from near 0 to --request-rate over the first S seconds of each phase")
    arrivals.add_argument("--concurrency-ramp-duration", type=float, metavar="S", help="raise --concurrency from 1 to its value, one step at a time, over the first S seconds of each phase")
    arrivals.add_argument("--request-cancellation-rate", type=float, metavar="PERCENT", help="close the connection of this share of requests (0-100) after --request-cancellation-delay; they are counted apart, never as errors")
    arrivals.add_argument("--request-cancellation-delay", type=float, metavar="S", help="seconds after a request is fully sent before its connection is closed (default 0)")
    prefix = parser.add_argument_group("Shared prefixes (prefix-cache benchmarks)")
    prefix.add_argument("--prefix-prompt-length", "--prompt-prefix-length", type=int, metavar="N", help="with --num-prefix-prompts: each synthetic prompt starts with one of the prefixes, N tokens each")
    prefix.add_argument("--num-prefix-prompts", "--prefix-prompt-pool-size", "--prompt-prefix-pool-size", type=int, metavar="K", help="how many distinct prefixes (with --prefix-prompt-length)")
    prefix.add_argument("--shared-system-prompt-length", type=int, metavar="N", help="a system message of N tokens shared by every request (completions: put before the prompt)")


def _number(options: dict[str, Any], name: str, default: Any, *, low: float, high: float,
            whole: bool, low_open: bool = False) -> Any:  # fmt: skip
    value = options.get(name)
    if value is None:
        return default
    flag = _flag(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{flag}: expected a {'whole ' if whole else ''}number (got {value!r})")
    if whole and not float(value).is_integer():
        raise UsageError(f"{flag}: expected a whole number (got {value!r})")
    if value > high or value < low or (low_open and value == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise UsageError(f"{flag}: must be {bound} and <= {high:g} (got {value:g})")
    return int(value) if whole else float(value)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@attrs.frozen(kw_only=True)
class Workload:
    """The checked values of the flags above (``None``: not given)."""

    conversation_num: int | None = None
    conversation_turn_mean: int = 1
    conversation_turn_stddev: float = 0.0
    conversation_turn_delay_mean: float = 0.0
    conversation_turn_delay_stddev: float = 0.0
    session_header: str | None = None
    custom_dataset_type: str | None = None
    arrival_smoothness: float | None = None
    request_rate_ramp_duration: float | None = None
    concurrency_ramp_duration: float | None = None
    request_cancellation_rate: float = 0.0
    request_cancellation_delay: float = 0.0
    prefix_prompt_length: int = 0
    num_prefix_prompts: int = 0
    shared_system_prompt_length: int = 0

    @property
    def multi_turn_file(self) -> bool:
        return self.custom_dataset_type == MULTI_TURN

    @property
    def conversations(self) -> bool:
        """Requests are turns of sessions (synthetic ones, or those of a multi_turn file)."""
        return self.conversation_num is not None or self.multi_turn_file

    @property
    def prefixes(self) -> bool:
        return self.num_prefix_prompts > 0 and self.prefix_prompt_length > 0


_FIELDS = frozenset(a.name for a in attrs.fields(Workload))


def from_options(options: dict[str, Any]) -> Workload:
    """The checked values of ``options`` (a config's ``plugin_options``)."""
    return _cached(tuple(sorted((k, v) for k, v in options.items() if k in _FIELDS and v is not None)))


@functools.lru_cache(maxsize=8)
def _cached(items: tuple[tuple[str, Any], ...]) -> Workload:
    options = dict(items)
    num = functools.partial(_number, options)
    header = options.get("session_header")
    if header is not None:
        header = str(header).strip()
        if not header or not all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in header):
            raise UsageError(
                f"--session-header: expected a header name (letters, digits and !#$%&'*+-.^_`|~), got {header!r}"
            )
    kind = options.get("custom_dataset_type")
    if kind is not None:
        kind = str(kind).strip().lower().replace("-", "_")
        if kind not in CUSTOM_TYPES:
            raise UsageError(
                f"--custom-dataset-type: unknown type {options['custom_dataset_type']!r}; use one of {', '.join(CUSTOM_TYPES)}"
            )
    return Workload(
        conversation_num=num("conversation_num", None, low=1, high=MAX_CONVERSATIONS, whole=True),
        conversation_turn_mean=num("conversation_turn_mean", 1, low=1, high=MAX_TURNS, whole=True),
        conversation_turn_stddev=num("conversation_turn_stddev", 0.0, low=0, high=MAX_TURNS, whole=False),
        conversation_turn_delay_mean=num("conversation_turn_delay_mean", 0.0, low=0, high=MAX_DELAY_MS, whole=False),
        conversation_turn_delay_stddev=num("conversation_turn_delay_stddev", 0.0, low=0, high=MAX_DELAY_MS, whole=False),
        session_header=header,
        custom_dataset_type=kind,
        arrival_smoothness=num("arrival_smoothness", None, low=0, high=MAX_SMOOTHNESS, whole=False, low_open=True),
        request_rate_ramp_duration=num("request_rate_ramp_duration", None, low=0, high=MAX_RAMP_S, whole=False, low_open=True),
        concurrency_ramp_duration=num("concurrency_ramp_duration", None, low=0, high=MAX_RAMP_S, whole=False, low_open=True),
        request_cancellation_rate=num("request_cancellation_rate", 0.0, low=0, high=100, whole=False, low_open=True),
        request_cancellation_delay=num("request_cancellation_delay", 0.0, low=0, high=MAX_RAMP_S, whole=False),
        prefix_prompt_length=num("prefix_prompt_length", 0, low=0, high=MAX_PREFIX_TOKENS, whole=True),
        num_prefix_prompts=num("num_prefix_prompts", 0, low=0, high=MAX_PREFIXES, whole=True),
        shared_system_prompt_length=num("shared_system_prompt_length", 0, low=1, high=MAX_PREFIX_TOKENS, whole=True),
    )


def of(config: ProfileConfig) -> Workload:
    """The workload options; ``custom_dataset_type`` is the core's ``--custom-dataset-type``
    when it names the multi_turn format, or when the input file's first line has ``turns``."""
    options = dict(config.plugin_options)
    options["custom_dataset_type"] = MULTI_TURN if is_multi_turn(config) else None
    return from_options(options)


def is_multi_turn(config: ProfileConfig) -> bool:
    """Whether ``--input-file`` is a file of sessions: named so, or (no format named) its
    first line has ``turns``."""
    if config.custom_dataset_type is not None:
        return str(config.custom_dataset_type).strip().lower().replace("-", "_") == MULTI_TURN
    if config.input_file is None or config.dataset not in (None, "input_file"):
        return False
    return _first_line_has_turns(config.input_file)


@functools.lru_cache(maxsize=8)
def _first_line_has_turns(path: Path) -> bool:
    import json

    try:
        with path.open("rb") as handle:
            for raw in handle:
                if raw.strip():
                    first = json.loads(raw.removeprefix(b"\xef\xbb\xbf"))
                    return isinstance(first, dict) and "turns" in first
    except (OSError, ValueError, RecursionError):
        return False  # the input file's own reader says what is wrong with it
    return False


def given(config: ProfileConfig, name: str) -> bool:
    return config.plugin_options.get(name) is not None


def check(config: ProfileConfig) -> None:
    """Every value, and every combination that would do nothing or cannot work: one line."""
    work = of(config)
    _check_conversations(config, work)
    _check_arrivals(config, work)
    _check_prefixes(config, work)


def _check_conversations(config: ProfileConfig, work: Workload) -> None:
    if work.custom_dataset_type is not None and config.input_file is None:
        raise UsageError("--custom-dataset-type: names the format of --input-file; add --input-file FILE")
    if work.custom_dataset_type is not None and config.dataset not in (None, "input_file"):
        raise UsageError(f"--custom-dataset-type: --dataset {config.dataset} does not read --input-file; drop one of them")
    if work.conversation_num is not None and config.input_file is not None and not work.multi_turn_file:
        raise UsageError(
            "--conversation-num: an --input-file holds single prompts; give --custom-dataset-type "
            "multi_turn for a file of sessions, or drop --input-file for synthetic sessions"
        )
    synthetic_only = ("conversation_turn_mean", "conversation_turn_stddev", "conversation_turn_delay_mean",
                      "conversation_turn_delay_stddev")  # fmt: skip
    for name in synthetic_only:
        if not given(config, name):
            continue
        if work.multi_turn_file:
            raise UsageError(f"{_flag(name)}: synthetic sessions only; a multi_turn file gives its own turns and delays")
        if work.conversation_num is None:
            raise UsageError(f"{_flag(name)}: only applies with --conversation-num; add --conversation-num N")
    if work.session_header is not None:
        if not work.conversations:
            raise UsageError("--session-header: only applies to sessions; add --conversation-num N (or a multi_turn --input-file)")
        if any(name.lower() == work.session_header.lower() for name, _ in config.headers):
            raise UsageError(f"--session-header: {work.session_header} is also given with --header; give it once")


def _check_arrivals(config: ProfileConfig, work: Workload) -> None:
    if work.arrival_smoothness is not None and (config.request_rate is None or config.request_rate_mode != "gamma"):
        raise UsageError("--arrival-smoothness: only applies with --request-rate R --request-rate-mode gamma")
    if work.request_rate_ramp_duration is not None and config.request_rate is None:
        raise UsageError("--request-rate-ramp-duration: only applies with --request-rate; add --request-rate or drop it")
    if work.concurrency_ramp_duration is not None and (config.concurrency is None or config.concurrency < 2):
        raise UsageError("--concurrency-ramp-duration: only applies with --concurrency 2 or more")
    if given(config, "request_cancellation_delay") and not work.request_cancellation_rate:
        raise UsageError("--request-cancellation-delay: only applies with --request-cancellation-rate; add it or drop the delay")


def _check_prefixes(config: ProfileConfig, work: Workload) -> None:
    length, count = work.prefix_prompt_length, work.num_prefix_prompts
    if bool(length) != bool(count):
        raise UsageError("--prefix-prompt-length and --num-prefix-prompts: give both (or neither)")
    if (work.prefixes or work.shared_system_prompt_length) and config.input_file is not None:
        flag = "--shared-system-prompt-length" if work.shared_system_prompt_length else "--prefix-prompt-length"
        raise UsageError(f"{flag}: synthetic prompts only; the prompts come from --input-file")
    if work.prefixes and work.shared_system_prompt_length:
        raise UsageError(
            "--shared-system-prompt-length and --num-prefix-prompts: both fill the start of the prompt; give one of them"
        )
    if config.dataset not in (None, "synthetic") and (work.prefixes or work.shared_system_prompt_length):
        raise UsageError(f"--prefix-prompt-length/--shared-system-prompt-length: synthetic prompts only (got --dataset {config.dataset})")
    if work.shared_system_prompt_length and config.endpoint_type not in SYSTEM_TYPES:
        raise UsageError(
            f"--shared-system-prompt-length: the {config.endpoint_type} endpoint has no system message; "
            f"use one of {', '.join(sorted(SYSTEM_TYPES))}"
        )
