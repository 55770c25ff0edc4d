"""Sessions before the run: the multi_turn file, synthetic sessions, the flags' rules, the
history a turn sends, and which requests client-side cancellation picks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiperf import _conversations, _prefixes, _workload
from aiperf._arrivals import Cancellation
from aiperf._config import ProfileConfig
from aiperf._datasets import SyntheticDataset
from aiperf._endpoints import CHAT, COMPLETIONS, EMBEDDINGS
from aiperf._tokenizer import load_tokenizer
from aiperf._types import Prompt, UsageError

TOKENIZER = load_tokenizer("builtin")


def config(**options: Any) -> ProfileConfig:
    fields = {k: options.pop(k) for k in list(options) if k in attrs.fields_dict(ProfileConfig)}
    return ProfileConfig(model="m", random_seed=7, plugin_options=options, **fields)


def write(tmp_path: Path, *lines: Any) -> Path:
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read(path: Path, **fields: Any) -> tuple[list[_conversations.Conversation], list[Prompt]]:
    return _conversations.read_multi_turn(path, TOKENIZER, config(**fields))


class TestMultiTurnFile:
    def test_lines_of_one_session_id_are_one_session_in_file_order(self, tmp_path: Path) -> None:
        """Two lines with chat_2 make one session; a line without an id is its own session."""
        path = write(
            tmp_path,
            {"session_id": "chat_1", "turns": [{"text": "one two"}, {"text": "three", "delay": 250}]},
            {"session_id": "chat_2", "turns": [{"text": "a"}]},
            {"session_id": "chat_2", "turns": [{"text": "b c d", "delay": 10, "output_length": 7}]},
            {"turns": [{"messages": [{"role": "user", "content": "hi there you"}]}]},
        )
        conversations, prompts = read(path)
        assert ["chat_1", "chat_2", "line-4"] == [c.session_id for c in conversations]
        chat_2 = conversations[1]
        assert ["a", "b c d"] == [prompts[t.prompt].text for t in chat_2.turns]
        assert [0.0, 0.01] == [t.delay_s for t in chat_2.turns]
        assert [None, 7] == [prompts[t.prompt].max_tokens for t in chat_2.turns]
        assert [2, 1, 1, 3, 3] == [p.input_tokens for p in prompts]
        assert ({"role": "user", "content": "hi there you"},) == prompts[conversations[2].turns[0].prompt].messages

    def test_leading_system_turn_becomes_the_session_system_message(self, tmp_path: Path) -> None:
        """A first turn with role system and only text is hoisted: it is not a turn."""
        path = write(tmp_path, {"session_id": "s", "turns": [
            {"role": "system", "text": "be terse now"}, {"text": "q1"}, {"text": "q2", "extra": {"temperature": 0}}]})  # fmt: skip
        (conversation,), prompts = read(path)
        assert ("be terse now", 3) == (conversation.system, conversation.system_tokens)
        assert ["q1", "q2"] == [prompts[t.prompt].text for t in conversation.turns]
        assert {"temperature": 0} == prompts[conversation.turns[1].prompt].extra

    def test_output_length_default_comes_from_the_osl_flags(self, tmp_path: Path) -> None:
        """Turns without output_length take --output-tokens-mean (stddev 0: exactly it)."""
        path = write(tmp_path, {"turns": [{"text": "x"}, {"text": "y", "max_tokens": 3}]})
        _, prompts = read(path, output_tokens_mean=11)
        assert [11, 3] == [p.max_tokens for p in prompts]

    @pytest.mark.parametrize(
        ("line", "needle"),
        [
            ({"text": "single prompt"}, 'line 1: expected a "turns" array (a single prompt?'),
            ({"turns": []}, '"turns" must be a non-empty array of turns, got an empty array'),
            ({"turns": [{"text": "a", "timestamp": 5}]}, 'line 1, turn 0: "timestamp" is not supported'),
            ({"turns": [{"text": "a", "delay": -1}]}, 'line 1, turn 0: "delay" must be a number of milliseconds >= 0 (got -1)'),
            ({"turns": [{"text": "a"}, {"role": "system", "text": "late"}]}, 'line 1, turn 1: a "system" turn must be its session\'s first'),
            ({"turns": [{"role": "system", "text": "only"}]}, 'has a "system" turn and no user turn'),
            ({"turns": [{"role": "assistant", "text": "a"}]}, '"role" must be "user" or "system"'),
            ({"turns": [{"text": "a", "prompt": "b"}]}, 'give one of "text", "prompt", not several'),
            ({"turns": [{"text": ""}]}, '"text" is empty'),
            ({"session_id": ["x"], "turns": [{"text": "a"}]}, '"session_id" must be a string, got an array'),
            ({"turns": [{"text": "a", "extra": 3}]}, '"extra" must be an object of request fields, got a number'),
            ("[1, 2]", "line 1: expected a JSON object, got an array"),
            ("{nope", "line 1: not valid JSON"),
        ],
    )
    def test_bad_line_is_one_line_naming_line_and_turn(self, tmp_path: Path, line: Any, needle: str) -> None:
        """Each mistake is a UsageError whose one line names the line (and turn)."""
        with pytest.raises(UsageError) as caught:
            read(write(tmp_path, line))
        assert needle in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_empty_file_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match="has no sessions"):
            read(write(tmp_path, ""))


class TestSynthetic:
    def pool(self, cfg: ProfileConfig, n: int = 10) -> list[Prompt]:
        return SyntheticDataset(tokenizer=TOKENIZER, num_prompts=n, input_tokens_mean=6, seed=cfg.random_seed).load()

    def test_turn_counts_and_delays_follow_the_flags_and_the_seed(self) -> None:
        """N sessions, turn counts around the mean (at least 1), delays in seconds; the same
        seed draws the same sessions."""
        cfg = config(conversation_num=50, conversation_turn_mean=4, conversation_turn_stddev=1.5,
                     conversation_turn_delay_mean=200, conversation_turn_delay_stddev=50)  # fmt: skip
        work = _workload.of(cfg)
        sessions = _conversations.synthetic(cfg, work, self.pool(cfg), TOKENIZER)
        again = _conversations.synthetic(cfg, work, self.pool(cfg), TOKENIZER)
        assert sessions == again
        counts = [len(c.turns) for c in sessions.conversations]
        assert 50 == len(counts) and min(counts) >= 1 and len(set(counts)) > 1
        assert pytest.approx(4.0, abs=0.6) == sum(counts) / 50
        delays = [t.delay_s for c in sessions.conversations for t in c.turns[1:]]
        assert all(d >= 0 for d in delays)
        assert pytest.approx(0.2, abs=0.03) == sum(delays) / len(delays)
        assert all(c.turns[0].delay_s == 0.0 for c in sessions.conversations)
        assert len(set(c.session_id for c in sessions.conversations)) == 50

    def test_first_turns_start_with_one_of_the_prefixes(self) -> None:
        """With prefixes, each session's first user message starts with one of K prefixes of
        N tokens; later turns do not."""
        cfg = config(conversation_num=6, conversation_turn_mean=2, num_prefix_prompts=2, prefix_prompt_length=9)
        sessions = _conversations.synthetic(cfg, _workload.of(cfg), self.pool(cfg), TOKENIZER)
        firsts = [sessions.prompts[c.turns[0].prompt] for c in sessions.conversations]
        seconds = [sessions.prompts[c.turns[1].prompt] for c in sessions.conversations]
        heads = {tuple(TOKENIZER.encode(p.text)[:9]) for p in firsts}
        assert 2 == len(heads)
        assert all(p.input_tokens == 9 + 6 for p in firsts)
        assert all(p.input_tokens == 6 for p in seconds)


class TestHistory:
    def sessions(self, *, messages: bool, system: str | None = None) -> _conversations.ConversationSet:
        prompts = (Prompt(text="hello there", input_tokens=2), Prompt(text="and then", input_tokens=2, max_tokens=4))
        conversation = _conversations.Conversation(
            session_id="s", turns=(_conversations.Turn(prompt=0), _conversations.Turn(prompt=1)),
        )
        return _conversations.ConversationSet(
            conversations=(conversation,), prompts=prompts, messages=messages,
            system=system, system_tokens=3 if system else 0,
        )  # fmt: skip

    def test_chat_history_is_messages_with_the_replies_verbatim(self) -> None:
        """Turn 2's request: system, user 1, the reply as sent (leading space kept), user 2."""
        sessions = self.sessions(messages=True, system="be very terse")
        history = _conversations._History(sessions, sessions.conversations[0])
        history.add(sessions.prompts[0], " a reply", 2)
        payload = history.payload(sessions.prompts[1])
        assert [
            {"role": "system", "content": "be very terse"},
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": " a reply"},
            {"role": "user", "content": "and then"},
        ] == list(payload.messages or ())
        assert (3 + 2 + 2 + 2, 4) == (payload.input_tokens, payload.max_tokens)
        body = CHAT.build_payload(payload, config())
        assert body["messages"] == list(payload.messages or ())

    def test_completions_history_is_one_text(self) -> None:
        """An endpoint without messages gets the history joined into its prompt."""
        sessions = self.sessions(messages=False)
        history = _conversations._History(sessions, sessions.conversations[0])
        history.add(sessions.prompts[0], " a reply", 2)
        body = COMPLETIONS.build_payload(history.payload(sessions.prompts[1]), config())
        assert "hello there\n\n a reply\n\nand then" == body["prompt"]


class TestFlags:
    @pytest.mark.parametrize(
        ("fields", "needle"),
        [
            ({"conversation_turn_mean": 3}, "--conversation-turn-mean: only applies with --conversation-num"),
            ({"session_header": "X-S"}, "--session-header: only applies to sessions"),
            ({"session_header": "bad header", "conversation_num": 2}, "--session-header: expected a header name"),
            ({"custom_dataset_type": "multi_turn"}, "--custom-dataset-type: names the format of --input-file"),
            ({"conversation_num": 2, "input_file": Path("x")}, "give --custom-dataset-type multi_turn"),
            ({"conversation_num": 0}, "--conversation-num: must be >= 1"),
            ({"arrival_smoothness": 2.0, "request_rate": 5.0}, "--arrival-smoothness: only applies with --request-rate R --request-rate-mode gamma"),
            ({"arrival_smoothness": 0.0, "request_rate": 5.0, "request_rate_mode": "gamma"}, "--arrival-smoothness: must be > 0"),
            ({"request_rate_ramp_duration": 5.0}, "--request-rate-ramp-duration: only applies with --request-rate"),
            ({"concurrency_ramp_duration": 5.0}, "--concurrency-ramp-duration: only applies with --concurrency 2 or more"),
            ({"request_cancellation_rate": 150.0}, "--request-cancellation-rate: must be > 0 and <= 100"),
            ({"request_cancellation_delay": 1.0}, "--request-cancellation-delay: only applies with --request-cancellation-rate"),
            ({"prefix_prompt_length": 10}, "give both (or neither)"),
            ({"prefix_prompt_length": 10, "num_prefix_prompts": 2, "shared_system_prompt_length": 5}, "give one of them"),
            ({"shared_system_prompt_length": 5, "endpoint_type": "embeddings"}, "the embeddings endpoint has no system message"),
            ({"num_prefix_prompts": 2, "prefix_prompt_length": 3, "input_file": Path("x")}, "synthetic prompts only"),
        ],
    )
    def test_flag_that_cannot_apply_is_one_line(self, fields: dict[str, Any], needle: str) -> None:
        with pytest.raises(UsageError) as caught:
            _workload.check(config(**fields))
        assert needle in str(caught.value)

    def test_valid_combinations_pass(self) -> None:
        for fields in (
            {"conversation_num": 3, "conversation_turn_mean": 2, "session_header": "X-Session-Id"},
            {"request_rate": 5.0, "request_rate_mode": "gamma", "arrival_smoothness": 0.5, "request_rate_ramp_duration": 2.0},
            {"concurrency": 8, "concurrency_ramp_duration": 3.0, "request_cancellation_rate": 10.0, "request_cancellation_delay": 0.5},
            {"num_prefix_prompts": 4, "prefix_prompt_length": 32},
            {"shared_system_prompt_length": 16, "endpoint_type": "completions"},
        ):
            _workload.check(config(**fields))

    def test_conversations_need_an_endpoint_that_answers_text(self) -> None:
        cfg = config(conversation_num=2, endpoint_type="embeddings")
        dataset = SyntheticDataset(tokenizer=TOKENIZER, num_prompts=2, input_tokens_mean=4)
        with pytest.raises(UsageError, match="the embeddings endpoint gives no reply"):
            _conversations.prepare(cfg, TOKENIZER, dataset, EMBEDDINGS)


class TestCancellationDraw:
    @pytest.mark.parametrize("percent", [1.0, 10.0, 50.0])
    def test_share_of_cancelled_indices_is_within_binomial_tolerance(self, percent: float) -> None:
        """Over 20000 request indices the share picked is the rate, within 4 binomial sigmas;
        the pick depends on the seed, not on the process that sends the request."""
        n = 20_000
        plan = Cancellation(rate_percent=percent, delay_s=0.5, seed=3)
        picked = [i for i in range(n) if plan.delay_for(i) is not None]
        p = percent / 100
        assert abs(len(picked) - n * p) <= 4 * math.sqrt(n * p * (1 - p))
        assert all(plan.delay_for(i) == 0.5 for i in picked[:10])
        other = Cancellation(rate_percent=percent, delay_s=0.5, seed=4)
        assert picked != [i for i in range(n) if other.delay_for(i) is not None]
        assert picked == [i for i in range(n) if plan.delay_for(i) is not None]


class TestPrefixes:
    def test_k_prefixes_of_exactly_n_tokens(self) -> None:
        """30 prompts, 3 prefixes of 24 tokens: 3 distinct 24-token heads, each used 10 times,
        and within a group the 25th token differs (the shared part is exactly 24 tokens)."""
        cfg = config(num_prefix_prompts=3, prefix_prompt_length=24)
        prompts = SyntheticDataset(tokenizer=TOKENIZER, num_prompts=30, input_tokens_mean=12, seed=7).load()
        shaped = _prefixes.apply(prompts, cfg, TOKENIZER)
        groups: dict[tuple[int, ...], list[list[int]]] = {}
        for prompt in shaped:
            ids = TOKENIZER.encode(prompt.text)
            assert 36 == len(ids) == prompt.input_tokens
            groups.setdefault(tuple(ids[:24]), []).append(ids)
        assert 3 == len(groups)
        assert [10, 10, 10] == sorted(len(g) for g in groups.values())
        for members in groups.values():
            assert len({ids[24] for ids in members}) > 1

    def test_shared_system_prompt_for_chat_and_completions(self) -> None:
        """Chat: the same N-token system message first; completions: the same N tokens first."""
        prompts = SyntheticDataset(tokenizer=TOKENIZER, num_prompts=5, input_tokens_mean=8, seed=7).load()
        chat = _prefixes.apply(prompts, config(shared_system_prompt_length=20), TOKENIZER)
        systems = {p.messages[0]["content"] for p in chat if p.messages}
        assert 1 == len(systems)
        assert 20 == TOKENIZER.count(systems.pop())
        assert all(p.messages and p.messages[1] == {"role": "user", "content": p.text} for p in chat)
        assert all(p.input_tokens == 28 for p in chat)
        text = _prefixes.apply(prompts, config(shared_system_prompt_length=20, endpoint_type="completions"), TOKENIZER)
        heads = {tuple(TOKENIZER.encode(p.text)[:20]) for p in text}
        assert 1 == len(heads)
        assert all(p.input_tokens == 28 for p in text)


def test_session_media_only_for_chat() -> None:
    """Images attached to session turns (synthetic flags or the file) need the chat endpoint:
    other message APIs shape their parts differently."""
    prompts = (Prompt(text="look", input_tokens=1, images=("data:image/png;base64,AA==",)),)
    sessions = _conversations.ConversationSet(
        conversations=(_conversations.Conversation(session_id="s", turns=(_conversations.Turn(prompt=0),)),),
        prompts=(Prompt(text="look", input_tokens=1),), endpoint="responses",
    )  # fmt: skip
    with pytest.raises(UsageError, match="images and audio in sessions go to the chat endpoint only"):
        sessions.with_prompts(prompts)
    assert attrs.evolve(sessions, endpoint="chat").with_prompts(prompts).prompts == prompts


class TestMultiTurnFileIsKnown:
    def test_named_or_guessed_from_turns_on_the_first_line(self, tmp_path: Path) -> None:
        sessions = write(tmp_path, {"session_id": "s", "turns": [{"text": "hi"}]})
        assert _workload.of(config(input_file=sessions)).multi_turn_file
        assert _workload.of(config(input_file=sessions, custom_dataset_type="multi_turn")).multi_turn_file
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text('{"text": "hi"}\n')
        assert not _workload.of(config(input_file=prompts)).multi_turn_file
        # a format named is never second-guessed
        assert not _workload.of(config(input_file=sessions, custom_dataset_type="single_turn")).multi_turn_file

    def test_unreadable_first_line_is_left_to_the_reader(self, tmp_path: Path) -> None:
        deep = tmp_path / "deep.jsonl"
        deep.write_text('{"text": ' + "[" * 5000 + "]" * 5000 + "}\n")
        assert not _workload.of(config(input_file=deep)).multi_turn_file
