"""Multi-turn sessions: synthetic ones (``--conversation-num``) and those of a ``multi_turn``
input file, run turn by turn with the server's real replies in the history.

A session is the unit the load strategy hands out: ``--concurrency N`` keeps N sessions in
progress, ``--request-rate R`` starts R sessions a second. Inside a session, turn ``n`` is
sent once turn ``n - 1`` has its complete answer and the turn's delay (think time) has passed;
its request carries the whole history so far (system message, every user turn, every answer
as the server sent it). A turn that fails or is cancelled ends its session: there is no answer
to carry on with. Turns are ordinary requests otherwise (one JSONL line each, with
``session_id`` and ``turn``), and the measured phase's metrics are also split by turn index.

A session runs whole in one process; with ``--workers`` each process runs its share of the
sessions. Session ``k`` (numbered across processes as request indices are) is conversation
``k mod C`` of the pool; the second time a conversation runs, its id gets ``-1``, and so on,
so that no two sessions of a run share an id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import trio

from aiperf import _prefixes, _workload
from aiperf._metrics import METRICS
from aiperf._stats import describe
from aiperf._types import Phase, Prompt, ReportSection, RequestMetrics, RequestRecord, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._engine import Engine
    from aiperf._types import Dataset, EndpointType, Tokenizer

#: the most turns a run may hold in memory before the first request (synthetic or from a file).
MAX_TOTAL_TURNS = 1_000_000
#: longest session id (it may travel in a header).
MAX_SESSION_ID = 256
#: between the texts of a history sent to an endpoint that takes one text (completions).
TEXT_JOINER = "\n\n"

# Random streams of their own (see _datasets._rng), so that turn counts or delays never
# change the prompts.
_STREAM_TURNS = 21
_STREAM_DELAYS = 22


@attrs.frozen(kw_only=True)
class Turn:
    """One user turn: its prompt (an index into :attr:`ConversationSet.prompts`) and the
    think time before it, in seconds after the previous answer (ignored for the first)."""

    prompt: int
    delay_s: float = 0.0


@attrs.frozen(kw_only=True)
class Conversation:
    session_id: str
    turns: tuple[Turn, ...]
    #: a system message of this conversation alone (a multi_turn file's leading system turn).
    system: str | None = None
    system_tokens: int = 0


@attrs.frozen(kw_only=True)
class ConversationSet:
    """Every conversation of the run, made before the clock starts (picklable: workers get it)."""

    conversations: tuple[Conversation, ...]
    #: every user turn's prompt (text or messages, max_tokens, extra fields, media).
    prompts: tuple[Prompt, ...]
    #: the system message every session starts with (``--shared-system-prompt-length``).
    system: str | None = None
    system_tokens: int = 0
    #: the header that carries the session id, or None.
    session_header: str | None = None
    #: True when the endpoint takes a message list; else the history is joined into one text.
    messages: bool = True
    #: the endpoint type's name (what the sessions' requests may carry depends on it).
    endpoint: str = "chat"
    #: sessions the measured phase runs (None: as many as the request count or duration allow).
    session_limit: int | None = None

    def with_prompts(self, prompts: Sequence[Prompt]) -> ConversationSet:
        """The same sessions with their prompts replaced (images and audio attached)."""
        sessions = attrs.evolve(self, prompts=tuple(prompts))
        _check_for_endpoint(sessions, self.endpoint, self.session_header)
        return sessions

    def load(self, engine: Engine, phase: Any) -> SessionLoad:
        """The load context of one phase: the strategy claims sessions instead of requests."""
        limit = session_limit(engine.config, self) if phase.phase is Phase.PROFILE else None
        return SessionLoad(sessions=self, engine=engine, phase=phase, limit=limit)

    def describe(self) -> list[dict[str, Any]]:
        """For inputs.json: each session, its turns (prompt index) and their delays."""
        return [
            {
                "session_id": c.session_id,
                "turns": [{"prompt": t.prompt, "delay_ms": round(t.delay_s * 1e3, 3)} for t in c.turns],
            }
            for c in self.conversations
        ]


def session_limit(config: ProfileConfig, sessions: ConversationSet | None) -> int | None:
    """Sessions in the measured phase: ``--conversation-num``; for a multi_turn file without
    it, each of its sessions once, unless ``--request-count`` or ``--benchmark-duration``
    bounds the phase instead (then sessions repeat until that bound)."""
    if sessions is None:
        return None
    work = _workload.of(config)
    if work.conversation_num is not None:
        return work.conversation_num
    if config.request_count is None and config.benchmark_duration is None:
        return len(sessions.conversations)
    return None


# -- the run ---------------------------------------------------------------------------------


@attrs.define
class SessionLoad:
    """A :class:`aiperf.LoadContext` whose "requests" are sessions.

    ``claim`` hands out a session number while the phase has room for one more (its session
    limit, its request count, its duration); ``execute`` runs that session's turns, each one a
    request claimed from the phase, so a request count caps turns and a phase never sends
    more requests than it was given.
    """

    sessions: ConversationSet
    engine: Engine
    #: the phase's own load context (request indices, count, deadline, clock).
    phase: Any
    limit: int | None
    started: int = 0

    @property
    def concurrency(self) -> int | None:
        return self.phase.concurrency  # type: ignore[no-any-return]

    @property
    def request_rate(self) -> float | None:
        return self.phase.request_rate  # type: ignore[no-any-return]

    @property
    def random(self) -> Any:
        return self.phase.random

    def to_perf_ns(self, trio_time: float) -> int:
        return self.phase.to_perf_ns(trio_time)  # type: ignore[no-any-return]

    def claim(self) -> int | None:
        engine, phase = self.engine, self.phase
        if engine.stopping:
            return None
        if self.limit is not None and self.started >= self.limit:
            return None
        if phase.count is not None and phase.issued >= phase.count:
            return None
        if phase.deadline is not None and trio.current_time() >= phase.deadline:
            return None
        self.started += 1
        number = engine.next_session
        engine.next_session += engine.index_stride
        return number  # type: ignore[no-any-return]

    def prompt(self, number: int) -> Prompt:
        """The prompt session ``number`` opens with."""
        pool = self.sessions.conversations
        return self.sessions.prompts[pool[number % len(pool)].turns[0].prompt]

    async def execute(
        self, number: int, intended_ns: int | None = None, sent: trio.Event | None = None
    ) -> None:
        """Run session ``number``; ``sent`` is set once its first request's bytes are with the
        kernel (or the session ended before sending one)."""
        sessions, engine, phase = self.sessions, self.engine, self.phase
        pool = sessions.conversations
        conversation = pool[number % len(pool)]
        repeat = number // len(pool)
        session_id = conversation.session_id if not repeat else f"{conversation.session_id}-{repeat}"
        # Every turn of a session goes to the same server (round-robin by session).
        sender = engine.senders[number % len(engine.senders)]
        header = sessions.session_header
        extra_head = f"{header}: {session_id}\r\n".encode("latin-1") if header else b""
        history = _History(sessions, conversation)
        tokenizer = engine.run.tokenizer
        last = len(conversation.turns) - 1
        for n, turn in enumerate(conversation.turns):
            intended = intended_ns
            if n:
                wake = trio.current_time() + turn.delay_s
                if phase.deadline is not None and wake >= phase.deadline:
                    # The phase is over before this turn is due: the session thinks until the
                    # end (its slot stays taken, as it would have) and stops there.
                    await trio.sleep_until(phase.deadline)
                    return
                if turn.delay_s > 0:
                    await trio.sleep_until(wake)
                # Open loop: a later turn is due at the end of its think time (send lag).
                intended = phase.to_perf_ns(wake) if intended_ns is not None else None
            index = phase.claim()
            if index is None:
                if sent is not None:
                    sent.set()
                return
            prompt = sessions.prompts[turn.prompt]
            payload = history.payload(prompt)
            body = json.dumps(
                engine.endpoint.build_payload(payload, engine.config), separators=(",", ":")
            ).encode()
            record = RequestRecord(
                index=index,
                phase=phase.phase,
                intended_ns=intended,
                input_tokens=payload.input_tokens,
                max_tokens=prompt.max_tokens,
                values=prompt.input_values or None,
                session_id=session_id,
                turn=n,
            )
            reply = await engine.send_record(record, sender, body, extra_head, sent if not n else None)
            if reply is None:
                return  # failed or cancelled: no answer to carry on with
            if n < last:
                reply_tokens = tokenizer.count(reply) if tokenizer is not None and reply else 0
                history.add(prompt, reply, reply_tokens)


@attrs.define
class _History:
    """What a session has said so far, as messages and as one text."""

    sessions: ConversationSet
    conversation: Conversation
    messages: list[dict[str, Any]] = attrs.field(factory=list)
    texts: list[str] = attrs.field(factory=list)
    tokens: int = 0

    def __attrs_post_init__(self) -> None:
        for text, tokens in (
            (self.sessions.system, self.sessions.system_tokens),
            (self.conversation.system, self.conversation.system_tokens),
        ):
            if text:
                self.messages.append({"role": "system", "content": text})
                self.texts.append(text)
                self.tokens += tokens

    def payload(self, prompt: Prompt) -> Prompt:
        """The request of the next turn: the history, then this turn's user input."""
        user = _user_messages(prompt)
        if self.sessions.messages:
            text = prompt.text
        else:
            text = TEXT_JOINER.join([*self.texts, prompt.text])
        return Prompt(
            text=text,
            input_tokens=self.tokens + prompt.input_tokens,
            max_tokens=prompt.max_tokens,
            messages=(*self.messages, *user),
            extra=prompt.extra,
        )

    def add(self, prompt: Prompt, reply: str, reply_tokens: int) -> None:
        self.messages.extend(_user_messages(prompt))
        self.messages.append({"role": "assistant", "content": reply})
        self.texts += [prompt.text, reply]
        self.tokens += prompt.input_tokens + reply_tokens


def _user_messages(prompt: Prompt) -> tuple[dict[str, Any], ...]:
    if prompt.messages:
        return prompt.messages
    if prompt.images or prompt.audio:
        from aiperf._endpoints import _media_parts

        return ({"role": "user", "content": _media_parts(prompt)},)
    return ({"role": "user", "content": prompt.text},)


# -- per-turn statistics ---------------------------------------------------------------------


@attrs.define
class TurnStats:
    """The measured phase's per-request metrics of successful requests, by turn index."""

    values: dict[int, dict[str, list[float]]] = attrs.field(factory=dict)
    counts: dict[int, int] = attrs.field(factory=dict)
    sessions: set[str] = attrs.field(factory=set)

    def add(self, turn: int, metrics: RequestMetrics, session_id: str | None = None) -> None:
        if metrics.phase is not Phase.PROFILE:
            return
        if session_id is not None:
            self.sessions.add(session_id)
        if not metrics.ok:
            return
        self.counts[turn] = self.counts.get(turn, 0) + 1
        per = self.values.setdefault(turn, {})
        for tag, value in metrics.values.items():
            spec = METRICS.get(tag)
            if spec is not None and spec.kind == "request":
                per.setdefault(tag, []).append(value)

    def section(self) -> ReportSection | None:
        if not self.counts and not self.sessions:
            return None
        by_turn = []
        rows = []
        for turn in sorted(self.counts):
            stats = {}
            for tag, values in self.values.get(turn, {}).items():
                spec = METRICS[tag]
                stats[tag] = describe(tag, spec.header, spec.unit, np.asarray(values), spec.scale)
            by_turn.append(
                {"turn": turn, "count": self.counts[turn], "metrics": {t: s.as_dict() for t, s in stats.items()}}
            )
            row: dict[str, Any] = {"turn": turn, "requests": self.counts[turn]}
            for tag, label in _CONSOLE_COLUMNS:
                if tag in stats:
                    row[label] = _shown(stats[tag].percentiles.get("p50"))
                    if tag != "input_sequence_length":
                        row[label.replace("p50", "p99")] = _shown(stats[tag].percentiles.get("p99"))
            rows.append(row)
        return ReportSection(
            name="conversations",
            title="By turn (measured phase)",
            data={"sessions": len(self.sessions), "by_turn": by_turn},
            rows=tuple(rows),
            console=True,
        )


_CONSOLE_COLUMNS = (
    ("time_to_first_token", "TTFT p50 (ms)"),
    ("request_latency", "latency p50 (ms)"),
    ("input_sequence_length", "ISL p50 (tokens)"),
)


def _shown(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def sections(engine: Engine) -> list[ReportSection]:
    """The engine's end-of-run sections of this module and of client-side cancellation."""
    out = []
    turns = engine.turn_stats.section()
    if turns is not None:
        out.append(turns)
    plan = engine.cancellation
    if plan is not None:
        agg = engine.aggregator
        total = agg.ok + agg.failed + engine.client_cancelled
        observed = 100.0 * engine.client_cancelled / total if total else 0.0
        out.append(
            ReportSection(
                name="cancellation",
                title="Cancelled by the client (--request-cancellation-rate; not errors)",
                data={
                    "cancelled": engine.client_cancelled,
                    "requests": total,
                    "observed_percent": observed,
                    "requested_percent": plan.rate_percent,
                    "delay_s": plan.delay_s,
                },
                rows=(
                    {
                        "cancelled": engine.client_cancelled,
                        "of requests": total,
                        "observed %": f"{observed:.3g}",
                        "asked %": f"{plan.rate_percent:g}",
                        "delay (s)": f"{plan.delay_s:g}",
                    },
                ),
                console=True,
            )
        )
    return out


# -- building the sessions -------------------------------------------------------------------


def prepare(
    config: ProfileConfig, tokenizer: Tokenizer, dataset: Dataset, endpoint: EndpointType
) -> ConversationSet | None:
    """The run's sessions, or None when requests are not turns of sessions."""
    work = _workload.of(config)
    if not work.conversations:
        return None
    if not endpoint.produces_tokens:
        raise UsageError(
            f"--conversation-num: the {endpoint.name} endpoint gives no reply to carry into the "
            "next turn; use a text endpoint such as chat"
        )
    messages = endpoint.name in _workload.MESSAGE_TYPES
    if work.multi_turn_file:
        assert config.input_file is not None
        conversations, prompts = read_multi_turn(config.input_file, tokenizer, config)
        sessions = ConversationSet(conversations=tuple(conversations), prompts=tuple(prompts))
    else:
        sessions = synthetic(config, work, list(dataset.load()), tokenizer)
    sessions = attrs.evolve(sessions, session_header=work.session_header, messages=messages, endpoint=endpoint.name)
    _check_for_endpoint(sessions, endpoint.name, work.session_header)
    return attrs.evolve(sessions, session_limit=session_limit(config, sessions))


def _check_for_endpoint(sessions: ConversationSet, endpoint: str, header: str | None) -> None:
    if endpoint == "messages" and any(c.system for c in sessions.conversations):
        raise UsageError(
            "--input-file: a leading \"system\" turn cannot go to the messages endpoint "
            "(its API takes the system prompt apart); drop the system turn or use chat"
        )
    if endpoint != "chat" and any(p.images or p.audio for p in sessions.prompts):
        raise UsageError(f"--conversation-num: images and audio in sessions go to the chat endpoint only (got {endpoint})")
    if header is None:
        return
    for conversation in sessions.conversations:
        sid = conversation.session_id
        if not sid.isascii() or any(ord(c) < 32 or ord(c) == 127 for c in sid):
            raise UsageError(
                f"--session-header: session id {sid!r} cannot travel in a header (printable ASCII only)"
            )


def synthetic(config: ProfileConfig, work: _workload.Workload, pool: list[Prompt], tokenizer: Tokenizer) -> ConversationSet:
    """``--conversation-num`` sessions: turn counts and delays drawn (seeded), each turn's
    user message the next prompt of the synthetic pool (cycling), the first turn's starting
    with a shared prefix when ``--num-prefix-prompts`` asks for them."""
    from aiperf._datasets import _rng, sample_lengths

    if not pool:
        raise UsageError("the dataset gave no prompts")
    n = work.conversation_num or 1
    counts = sample_lengths(_rng(config.random_seed, _STREAM_TURNS), n, work.conversation_turn_mean,
                            work.conversation_turn_stddev)  # fmt: skip
    counts = [min(c, _workload.MAX_TURNS) for c in counts]
    total = sum(counts)
    if total > MAX_TOTAL_TURNS:
        raise UsageError(
            f"--conversation-num x --conversation-turn-mean: {total} turns in all; at most {MAX_TOTAL_TURNS}"
        )
    delays = _delays(config.random_seed, total, work.conversation_turn_delay_mean, work.conversation_turn_delay_stddev)
    prompts = [pool[i % len(pool)] for i in range(total)]
    firsts = []
    conversations = []
    position = 0
    for i, count in enumerate(counts):
        firsts.append(position)
        turns = tuple(
            Turn(prompt=position + t, delay_s=delays[position + t] if t else 0.0) for t in range(count)
        )
        conversations.append(Conversation(session_id=f"session-{i}", turns=turns))
        position += count
    system = None
    system_tokens = 0
    if work.prefixes:
        for index, prompt in zip(firsts, _prefixes.with_prefixes([prompts[i] for i in firsts], config, tokenizer)):
            prompts[index] = prompt
    if work.shared_system_prompt_length:
        system, system_tokens = _prefixes.system_prompt(config, tokenizer)
    return ConversationSet(
        conversations=tuple(conversations), prompts=tuple(prompts), system=system, system_tokens=system_tokens
    )


def _delays(seed: int | None, n: int, mean_ms: float, stddev_ms: float) -> list[float]:
    """``n`` think times in seconds from N(mean, stddev) ms, never negative."""
    from aiperf._datasets import _rng

    if stddev_ms <= 0:
        return [mean_ms / 1e3] * n
    draws = _rng(seed, _STREAM_DELAYS).normal(mean_ms, stddev_ms, size=n)
    return (np.maximum(draws, 0.0) / 1e3).tolist()


# -- the multi_turn file ---------------------------------------------------------------------

_TURN_PROMPT_KEYS = ("text", "prompt", "messages")
_ROLES = ("user", "system")


@attrs.frozen
class _RawTurn:
    where: str
    text: str
    counted: tuple[str, ...]
    messages: tuple[dict[str, Any], ...] | None
    max_tokens: int | None
    delay_s: float
    role: str
    extra: dict[str, Any]
    images: tuple[str, ...] = ()
    audio: tuple[tuple[str, str], ...] = ()
    values: dict[str, float] = attrs.field(factory=dict)
    #: a field only a request carries (delay, output length, extra fields, media) was given.
    dispatch_fields: bool = False


def read_multi_turn(path: Path, tokenizer: Tokenizer, config: ProfileConfig) -> tuple[list[Conversation], list[Prompt]]:
    """Sessions from a ``multi_turn`` JSONL file: one object per line, ``{"session_id": ...,
    "turns": [{"text": ...}, ...]}``. Lines with the same ``session_id`` are one session
    (their turns in file order); a line without one is a session of its own.

    A turn has ``text`` (or ``prompt``, or ``messages``: chat messages sent as that turn's
    input), and optionally ``delay`` (ms to wait after the previous answer), ``output_length``
    (or ``max_tokens``), ``extra`` (fields merged into that turn's request body), ``image`` and
    ``audio`` (as in a single-prompt input file). A session's first turn with ``"role":
    "system"`` and nothing but text becomes that session's system message, sent first in every
    turn.
    """
    from aiperf._datasets import _MediaFiles, _output_lengths

    order: list[str] = []
    grouped: dict[str, list[_RawTurn]] = {}
    anonymous: list[tuple[int, list[_RawTurn]]] = []
    media = _MediaFiles(path.parent)
    for number, obj in _read_objects(path):
        where = f"--input-file: line {number}:"
        sid, turns = _parse_session(where, obj, media)
        if sid is None:
            anonymous.append((number, turns))
            continue
        if sid not in grouped:
            grouped[sid] = []
            order.append(sid)
        grouped[sid].extend(turns)
    for number, turns in anonymous:
        sid = f"line-{number}"
        while sid in grouped:
            sid += "-"
        grouped[sid] = turns
        order.append(sid)
    if not order:
        raise UsageError(f"--input-file: {path} has no sessions; expected one JSON object per line")
    total = sum(len(turns) for turns in grouped.values())
    if total > MAX_TOTAL_TURNS:
        raise UsageError(f"--input-file: {path} holds {total} turns; at most {MAX_TOTAL_TURNS}")
    raws: list[tuple[str, str | None, list[_RawTurn]]] = []
    for sid in order:
        turns = grouped[sid]
        system = None
        first = turns[0]
        if first.role == "system" and not first.dispatch_fields and not first.messages:
            if len(turns) == 1:
                raise UsageError(f'{first.where} session {sid!r} has a "system" turn and no user turn')
            system, turns = first.text, turns[1:]
        for turn in turns:
            if turn.role == "system":
                raise UsageError(
                    f'{turn.where} a "system" turn must be its session\'s first, with text alone '
                    "(it becomes the system message of every turn)"
                )
        raws.append((sid, system, turns))
    systems = [system for _, system, _ in raws if system]
    counts = _count(tokenizer, systems + [piece for _, _, turns in raws for turn in turns for piece in turn.counted])
    system_counts = iter(counts[: len(systems)])
    turn_counts = iter(counts[len(systems) :])
    defaults = iter(_output_lengths(config.random_seed, total, config.output_tokens_mean, config.output_tokens_stddev))
    conversations = []
    prompts: list[Prompt] = []
    for sid, system, turns in raws:
        made = []
        for turn in turns:
            tokens = sum(next(turn_counts) for _ in turn.counted)
            default = next(defaults)
            made.append(Turn(prompt=len(prompts), delay_s=turn.delay_s))
            prompts.append(
                Prompt(
                    text=turn.text,
                    input_tokens=tokens,
                    max_tokens=turn.max_tokens if turn.max_tokens is not None else default,
                    messages=turn.messages,
                    extra=turn.extra,
                    images=turn.images,
                    audio=turn.audio,
                    input_values=dict(turn.values),
                )
            )
        conversations.append(
            Conversation(
                session_id=sid, turns=tuple(made), system=system, system_tokens=next(system_counts) if system else 0
            )
        )
    return conversations, prompts


def _count(tokenizer: Tokenizer, pieces: list[str]) -> list[int]:
    from aiperf._tokenizer import count_many

    return count_many(tokenizer, pieces) if pieces else []


def _read_objects(path: Path) -> Any:
    from aiperf._datasets import MAX_NESTING, _json_type, _too_deep

    if path.is_dir():
        raise UsageError(f"--input-file: {path} is a directory; expected a JSONL file")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"--input-file: no such file: {path}") from None
    except OSError as exc:
        raise UsageError(f"--input-file: cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                if not raw.strip():
                    continue
                where = f"--input-file: line {number}:"
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise UsageError(f"{where} not valid UTF-8") from None
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{where} not valid JSON ({exc.msg} at column {exc.colno})") from None
                except RecursionError:
                    raise UsageError(f"{where} nested too deeply (more than {MAX_NESTING} levels)") from None
                if _too_deep(obj, MAX_NESTING):
                    raise UsageError(f"{where} nested too deeply (more than {MAX_NESTING} levels)")
                if not isinstance(obj, dict):
                    raise UsageError(f"{where} expected a JSON object, got {_json_type(obj)}")
                yield number, obj
        except OSError as exc:
            raise UsageError(f"--input-file: cannot read {path}: {exc.strerror or exc}") from None


def _parse_session(where: str, obj: dict[str, Any], media: Any) -> tuple[str | None, list[_RawTurn]]:
    from aiperf._datasets import _json_type

    if "turns" not in obj:
        hint = ' (a single prompt? this is the multi_turn format: {"session_id": ..., "turns": [...]})'
        raise UsageError(f'{where} expected a "turns" array{hint if any(k in obj for k in _TURN_PROMPT_KEYS) else ""}')
    sid = obj.get("session_id")
    if sid is not None:
        if isinstance(sid, bool) or not isinstance(sid, (str, int)):
            raise UsageError(f'{where} "session_id" must be a string, got {_json_type(sid)}')
        sid = str(sid)
        if not sid.strip() or len(sid) > MAX_SESSION_ID:
            raise UsageError(f'{where} "session_id" must be 1 to {MAX_SESSION_ID} characters (got {sid!r})')
    turns = obj["turns"]
    if not isinstance(turns, list) or not turns:
        shown = "an empty array" if turns == [] else _json_type(turns)
        raise UsageError(f'{where} "turns" must be a non-empty array of turns, got {shown}')
    return sid, [_parse_turn(f"{where[:-1]}, turn {i}:", turn, media) for i, turn in enumerate(turns)]


def _parse_turn(where: str, turn: Any, media: Any) -> _RawTurn:
    from aiperf._datasets import _json_type, _max_tokens, _messages, _quoted

    if not isinstance(turn, dict):
        raise UsageError(f"{where} expected a JSON object, got {_json_type(turn)}")
    if "timestamp" in turn:
        raise UsageError(f'{where} "timestamp" is not supported in multi_turn sessions; give "delay" (ms after the previous answer)')
    present = [key for key in _TURN_PROMPT_KEYS if key in turn]
    if not present:
        raise UsageError(f'{where} expected a "text", "prompt" or "messages" field')
    if len(present) > 1:
        raise UsageError(f"{where} give one of {_quoted(present)}, not several")
    role = turn.get("role", "user")
    if role not in _ROLES:
        raise UsageError(f'{where} "role" must be "user" or "system" (got {json.dumps(role)})')
    delay = turn.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= _workload.MAX_DELAY_MS:
        shown = json.dumps(delay) if isinstance(delay, (int, float)) and not isinstance(delay, bool) else _json_type(delay)
        raise UsageError(f'{where} "delay" must be a number of milliseconds >= 0 (got {shown})')
    extra = turn.get("extra", {})
    if not isinstance(extra, dict):
        raise UsageError(f'{where} "extra" must be an object of request fields, got {_json_type(extra)}')
    max_tokens = _max_tokens(where, turn)
    dispatch = any(key in turn for key in ("delay", "output_length", "max_tokens", "extra", "image", "audio"))
    key = present[0]
    if key == "messages":
        if "image" in turn or "audio" in turn:
            raise UsageError(f'{where} "image"/"audio": only with "text" or "prompt"; with "messages", put them in the content parts')
        messages, texts = _messages(where, turn["messages"])
        return _RawTurn(
            where=where, text="\n".join(texts), counted=texts, messages=messages, max_tokens=max_tokens,
            delay_s=delay / 1e3, role=role, extra=extra, dispatch_fields=dispatch,
        )  # fmt: skip
    text = turn[key]
    if not isinstance(text, str):
        raise UsageError(f'{where} "{key}" must be a string, got {_json_type(text)}')
    if not text:
        raise UsageError(f'{where} "{key}" is empty')
    images: tuple[str, ...] = ()
    audio: tuple[tuple[str, str], ...] = ()
    values: dict[str, float] = {}
    if "image" in turn or "audio" in turn:
        images, audio, values = media.entry(where, turn)
    return _RawTurn(
        where=where, text=text, counted=(text,), messages=None, max_tokens=max_tokens,
        delay_s=delay / 1e3, role=role, extra=extra, images=images, audio=audio, values=values,
        dispatch_fields=dispatch,
    )  # fmt: skip
