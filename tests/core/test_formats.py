"""Input-file formats: the reference tool's documented examples give the requests its docs say.

The files in tests/data/formats are the examples of NVIDIA AIPerf's documentation (custom
dataset guide, trace replay, fixed schedule), copied as they are printed there; ShareGPT's
follows the structure of the public ShareGPT JSON. Each test reads one the way ``aiperf
profile`` does and checks the request count, their order, each request's input length and
output limit, and, for traces, the schedule and the shared prompt blocks.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import attrs
import pytest
from aiperf import _formats, _sharegpt
from aiperf._config import ProfileConfig
from aiperf._formats import InputFile
from aiperf._schedule import settle
from aiperf._sharegpt import ShareGPT
from aiperf._tokenizer import builtin_tokenizer
from aiperf._types import UsageError

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
TOKENIZER = builtin_tokenizer()


def config(path: Path | None, **values: object) -> ProfileConfig:
    return ProfileConfig(model="m", input_file=path, random_seed=7, **values)  # type: ignore[arg-type]


def load(path: Path, **values: object) -> list:
    return InputFile(config=config(path, **values), tokenizer=TOKENIZER).load()


def error_of(path: Path, **values: object) -> str:
    with pytest.raises(UsageError) as caught:
        load(path, **values)
    text = str(caught.value)
    assert "\n" not in text
    return text


def lines_of(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def words(text: str) -> list[str]:
    return text.split()


# -- single_turn ---------------------------------------------------------------------------------


class TestSingleTurn:
    def test_documented_prompts_one_request_per_line_in_order(self) -> None:
        """prompts.jsonl: five requests, file order, each ISL the tokenizer's count of its text,
        no max_tokens (the server decides)."""
        prompts = load(DATA / "single_turn_prompts.jsonl")
        texts = [line["text"] for line in lines_of("single_turn_prompts.jsonl")]
        assert texts == [p.text for p in prompts]
        assert [TOKENIZER.count(t) for t in texts] == [p.input_tokens for p in prompts]
        assert [None] * 5 == [p.max_tokens for p in prompts]
        assert all(p.send_at_ms is None for p in prompts)

    def test_documented_output_length_wins_over_osl(self) -> None:
        """Per-line output_length takes priority over --osl; the line without one gets --osl."""
        prompts = load(DATA / "single_turn_osl.jsonl", output_tokens_mean=200)
        assert [50, 500, 10, 200] == [p.max_tokens for p in prompts]

    def test_documented_extra_goes_into_the_request(self) -> None:
        prompts = load(DATA / "single_turn_extra.jsonl")
        assert [line["extra"] for line in lines_of("single_turn_extra.jsonl")] == [p.extra for p in prompts]

    def test_texts_images_audios_plural_fields(self, tmp_path: Path) -> None:
        """The plural fields of the reference format: texts joined, images as a list."""
        path = tmp_path / "p.jsonl"
        path.write_text(
            json.dumps({"texts": ["first part", {"name": "t", "contents": ["second part"]}]}) + "\n"
            + json.dumps({"text": "see", "images": ["https://example.com/a.png", "https://example.com/b.png"]}) + "\n"
        )  # fmt: skip
        first, second = load(path)
        assert "first part\nsecond part" == first.text
        assert ("https://example.com/a.png", "https://example.com/b.png") == second.images

    def test_timestamps_make_a_fixed_schedule(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        path.write_text('{"text": "a", "timestamp": 100}\n{"text": "b", "delay": 50}\n{"text": "c", "timestamp": 400}\n')
        prompts = load(path)
        assert [100.0, 150.0, 400.0] == [p.send_at_ms for p in prompts]
        assert [0.0, 50.0, 300.0] == [p.send_at_ms for p in load(path, fixed_schedule_auto_offset=True)]
        assert [None] * 3 == [p.send_at_ms for p in load(path, fixed_schedule=False)]


# -- random_pool -----------------------------------------------------------------------------------


class TestRandomPool:
    def test_documented_pool_sampled_with_replacement(self) -> None:
        """pool.jsonl, 50 draws (--num-conversations 50 there, --num-prompts 50 here), seeded:
        each draw is a pool entry, some repeat, the same seed draws the same."""
        pool = [line["text"] for line in lines_of("random_pool.jsonl")]
        path = DATA / "random_pool.jsonl"
        first = load(path, custom_dataset_type="random_pool", num_prompts=50, request_count=50)
        assert 50 == len(first)
        texts = [p.text for p in first]
        assert set(texts) <= set(pool)
        assert len(set(texts)) < 50  # with replacement: 50 draws from 8
        again = load(path, custom_dataset_type="random_pool", num_prompts=50, request_count=50)
        assert texts == [p.text for p in again]
        other = InputFile(
            config=attrs.evolve(config(path, custom_dataset_type="random_pool", num_prompts=50), random_seed=8),
            tokenizer=TOKENIZER,
        ).load()
        assert texts != [p.text for p in other]

    def test_never_guessed_and_refuses_times(self, tmp_path: Path) -> None:
        """random_pool has single_turn's fields: a file is read as single_turn unless named."""
        assert 8 == len(load(DATA / "random_pool.jsonl"))
        path = tmp_path / "p.jsonl"
        path.write_text('{"text": "a", "timestamp": 5}\n')
        message = error_of(path, custom_dataset_type="random_pool")
        assert f'--input-file {path}: line 1: "timestamp": random_pool draws its requests at random' in message
        message = error_of(DATA / "random_pool.jsonl", custom_dataset_type="random_pool", fixed_schedule=True)
        assert message.startswith("--fixed-schedule: random_pool files have no times")


# -- mooncake_trace --------------------------------------------------------------------------------


class TestMooncake:
    def test_documented_trace_lengths_times_and_shared_blocks(self) -> None:
        """custom_trace.jsonl: three requests at 0, 105 and 274 ms with ISL 1200, 1800, 1300 and
        max_tokens 52, 26, 52; hash 0 is the first 512 tokens of requests 1 and 2, hash 1 the
        second block of request 1 and the first of request 3, hash 4 is shared too."""
        prompts = load(DATA / "mooncake_custom_trace.jsonl")
        assert [1200, 1800, 1300] == [p.input_tokens for p in prompts]
        assert [1200, 1800, 1300] == [TOKENIZER.count(p.text) for p in prompts]
        assert [1200, 1800, 1300] == [len(words(p.text)) for p in prompts]
        assert [52, 26, 52] == [p.max_tokens for p in prompts]
        assert [0.0, 105.0, 274.0] == [p.send_at_ms for p in prompts]
        first, second, third = (words(p.text) for p in prompts)
        block = 512
        assert first[:block] == second[:block]  # hash 0
        assert first[block : 2 * block] == third[:block]  # hash 1
        assert second[2 * block : 3 * block] == third[block : 2 * block]  # hash 4
        assert first[block] != second[block]  # hash 1 vs hash 3: differ from their first token
        assert first[0] != third[0]  # hash 0 vs hash 1
        assert first[2 * block :] != second[3 * block :][: 1200 - 2 * block]

    def test_documented_fixed_schedule_file_format(self) -> None:
        prompts = load(DATA / "fixed_schedule_file_format.jsonl")
        assert [100, 200, 550] == [p.input_tokens for p in prompts]
        assert [200, 400, 500] == [p.max_tokens for p in prompts]
        assert [0.0, 500.0, 1000.0] == [p.send_at_ms for p in prompts]

    def test_documented_window_includes_both_offsets(self) -> None:
        """precise_schedule.jsonl with --fixed-schedule-start-offset 2000 and -end-offset 4000:
        the entries at 2000, 2500, 3000 and 4000 ms (both ends included), sent from 0 ms on."""
        prompts = load(
            DATA / "precise_schedule.jsonl", fixed_schedule_start_offset=2000, fixed_schedule_end_offset=4000
        )
        assert [400, 250, 350, 500] == [p.input_tokens for p in prompts]
        assert [0.0, 500.0, 1000.0, 2000.0] == [p.send_at_ms for p in prompts]
        everything = load(DATA / "precise_schedule.jsonl", fixed_schedule_auto_offset=True)
        assert 10 == len(everything)
        assert [600, 600] == [everything[-1].input_tokens, len(words(everything[-1].text))]

    def test_documented_extra_and_messages(self) -> None:
        prompts = load(DATA / "mooncake_extra.jsonl")
        assert [{"nvext": {"priority": 99}}, {}, {"routing": "fast"}] == [p.extra for p in prompts]
        assert ({"role": "user", "content": "Hello"},) == prompts[2].messages
        assert [100, 200, TOKENIZER.count("Hello")] == [p.input_tokens for p in prompts]

    def test_block_size_changes_the_blocks(self, tmp_path: Path) -> None:
        path = tmp_path / "t.jsonl"
        path.write_text('{"input_length": 40, "hash_ids": [7, 8]}\n{"input_length": 30, "hash_ids": [7, 9]}\n')
        a, b = (words(p.text) for p in load(path, isl_block_size=20))
        assert a[:20] == b[:20] and a[20] != b[20]
        assert [40, 30] == [len(a), len(b)]

    def test_same_seed_same_text_other_seed_other_text(self) -> None:
        path = DATA / "mooncake_custom_trace.jsonl"
        assert [p.text for p in load(path)] == [p.text for p in load(path)]
        other = InputFile(config=attrs.evolve(config(path), random_seed=99), tokenizer=TOKENIZER).load()
        assert load(path)[0].text != other[0].text

    def test_the_reference_examples_own_655_token_line_is_refused(self, tmp_path: Path) -> None:
        """The trace-replay page's example entry cannot be built: 3 blocks of 512 need 1025 to
        1536 tokens. The reference refuses it too (its final block must hold 1 to 512)."""
        path = tmp_path / "t.jsonl"
        path.write_text('{"timestamp": 0, "input_length": 655, "output_length": 52, "hash_ids": [0, 1, 2]}\n')
        assert error_of(path) == (
            f'--input-file {path}: line 1: "hash_ids": 3 blocks of 512 tokens (--isl-block-size) '
            'cannot make "input_length" 655: the last block would hold -369 tokens (1 to 512) '
            '(read as mooncake_trace because its first line has "input_length"; name the format '
            "with --custom-dataset-type)"
        )


# -- choosing the format, and bad files --------------------------------------------------------------


class TestBadFiles:
    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ('{"input_length": 10}\n{"output_length": 5}\n', 'line 2: "input_length": missing (or give "text_input" or "messages") (read as mooncake_trace because its first line has "input_length"'),
            ('{"input_length": 10}\n{"input_length": "10"}\n', 'line 2: "input_length" must be a positive integer, got a string'),
            ('{"input_length": 10, "hash_ids": [1, true]}\n', 'line 1: "hash_ids" must hold integers, got a boolean'),
            ('{"input_length": 10, "timestamp": "0"}\n', 'line 1: "timestamp" must be a number of milliseconds >= 0, got a string'),
            ('{"input_length": 10, "timestamp": -1}\n', 'line 1: "timestamp" must be a number of milliseconds >= 0, got -1'),
            ('{"input_length": 10, "timestamp": 5, "delay": 1}\n', 'line 1: give one of "timestamp", "delay", not both'),
            ('{"input_length": 10, "session_id": "s"}\n', 'line 1: "session_id": sessions (multi-turn traces) are not replayed'),
            ('{"input_length": 10, "text_input": "hi"}\n', "line 1: give one of 'input_length', 'text_input', not several"),
            ('{"text": "a", "timestamp": 10}\n{"text": "b", "timestamp": 5}\n', 'line 2: "timestamp": 5 ms is earlier than line 1\'s 10 ms; a fixed schedule sends the lines in file order, so their times must not go back'),
            ('{"text": "a", "timestamp": 10}\n{"text": "b"}\n', 'line 2: "timestamp": missing; on a fixed schedule every line needs a "timestamp"'),
            ('{"text": "a"}\n{"text": 5}\n', 'line 2: "text" must be a string, got a number'),
            ('{"text": "a", "texts": ["b"]}\n', 'line 1: give one of "text", "texts", not both'),
            ('{"text": "a", "video": "v.mp4"}\n', 'line 1: "video": aiperf sends no video'),
            ('{"turns": [{"text": "a"}]}\n', 'line 1: "turns" marks a multi_turn file'),
            ('{"foo": 1}\n', "line 1: no field says which format this is"),
            ('{"type": "mooncake_trace", "text": "x"}\n', 'line 1: "input_length": missing'),
            ('{"input_length": 10}\nnot json\n', "line 2: not valid JSON (Expecting value at column 1)"),
        ],
    )  # fmt: skip
    def test_one_line_naming_file_line_and_field(self, tmp_path: Path, content: str, message: str) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text(content)
        text = error_of(path)
        assert text.startswith(f"--input-file {path}: ")
        assert message in text

    def test_named_type_that_does_not_fit(self, tmp_path: Path) -> None:
        path = tmp_path / "p.jsonl"
        path.write_text('{"text": "hi"}\n')
        assert error_of(path, custom_dataset_type="mooncake_trace") == (
            f'--input-file {path}: line 1: "input_length": missing (or give "text_input" or "messages")'
        )
        assert error_of(path, custom_dataset_type="nope").startswith(
            "--custom-dataset-type: unknown type 'nope'; use one of mooncake_trace, multi_turn, random_pool, single_turn"
        )

    def test_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.jsonl"
        path.write_text("\n \n")
        assert f"--input-file: {path} has no prompts; expected one JSON object per line" == error_of(path)

    def test_unix_time_stamps_without_an_offset(self, tmp_path: Path) -> None:
        path = tmp_path / "t.jsonl"
        path.write_text('{"timestamp": 1764290000123, "input_length": 8}\n{"timestamp": 1764290000223, "input_length": 8}\n')
        assert f'--input-file {path}: line 1: "timestamp": the first request is at 1.76429e+12 ms' in error_of(path)
        assert [0.0, 100.0] == [p.send_at_ms for p in load(path, fixed_schedule_auto_offset=True)]

    def test_window_with_no_line(self) -> None:
        message = error_of(DATA / "precise_schedule.jsonl", fixed_schedule_start_offset=4100, fixed_schedule_end_offset=4500)
        assert "no line of --input-file" in message and "is in [4100, 4500] ms (9 before it" in message

    def test_two_gigabyte_file_of_one_line_stops_at_the_line_limit(self, tmp_path: Path) -> None:
        """A 2 GB file (sparse: nothing is written) that is not JSONL: one line, and at most
        one line's limit is ever read into memory."""
        path = tmp_path / "huge.jsonl"
        with path.open("wb") as handle:
            handle.truncate(2 * 1024**3)
        tracemalloc.start()
        try:
            message = error_of(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert f"--input-file {path}: line 1: longer than 64 MiB; expected one JSON object per line (JSONL)" == message
        assert peak < 3 * _formats.MAX_LINE_BYTES

    def test_two_gigabyte_trace_streams_to_the_end_offset(self, tmp_path: Path) -> None:
        """A sorted trace is read only up to the end of the window: the 2 GB of (sparse) bytes
        after it are never read."""
        path = tmp_path / "trace.jsonl"
        lines = "".join(json.dumps({"timestamp": t, "input_length": 8}) + "\n" for t in range(0, 5000, 1000))
        path.write_text(lines)
        with path.open("r+b") as handle:
            handle.truncate(2 * 1024**3)
        tracemalloc.start()
        try:
            prompts = load(path, fixed_schedule_end_offset=3000)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert [0.0, 1000.0, 2000.0, 3000.0] == [p.send_at_ms for p in prompts]
        assert peak < 16 * 1024 * 1024

    def test_lines_past_the_row_limit(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_formats, "MAX_ROWS", 3)
        path = tmp_path / "p.jsonl"
        path.write_text('{"text": "a"}\n' * 5)
        assert error_of(path).startswith(f"--input-file {path}: line 4: more than 3 requests;")

    def test_trace_past_the_token_budget(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import aiperf._trace as trace

        monkeypatch.setattr(trace, "MAX_TRACE_TOKENS", 25)
        path = tmp_path / "t.jsonl"
        path.write_text('{"input_length": 10}\n' * 4)
        assert error_of(path).startswith(
            f'--input-file {path}: line 3: "input_length": the lines so far make more than 25 prompt tokens'
        )


# -- the schedule and the run's config --------------------------------------------------------------


class TestSettle:
    def test_a_timed_file_replays_once_on_a_fixed_schedule(self) -> None:
        path = DATA / "precise_schedule.jsonl"
        prompts = load(path)
        settled = settle(config(path), prompts)
        assert (True, 10, 1, "fixed_schedule") == (
            settled.fixed_schedule, settled.request_count, settled.workers, settled.load_setting
        )

    def test_a_duration_never_wraps_the_schedule_around(self) -> None:
        path = DATA / "precise_schedule.jsonl"
        settled = settle(config(path, benchmark_duration=2.0), load(path))
        assert (10, 2.0) == (settled.request_count, settled.benchmark_duration)
        assert 4 == settle(config(path, request_count=4), load(path)).request_count

    def test_untimed_prompts_keep_the_config(self) -> None:
        path = DATA / "single_turn_prompts.jsonl"
        assert config(path) == settle(config(path), load(path))

    @pytest.mark.parametrize(
        ("values", "needle"),
        [
            ({"request_rate": 5.0}, "--request-rate: the --input-file has times"),
            ({"warmup_request_count": 2}, "--warmup-request-count: a fixed schedule replays the file"),
            ({"request_count": 11}, "--request-count: the schedule holds 10 requests"),
            ({"workers": 2}, "--workers: a fixed schedule runs in one process"),
        ],
    )
    def test_conflicts(self, values: dict, needle: str) -> None:
        path = DATA / "precise_schedule.jsonl"
        with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
            settle(config(path, **values), load(path))


# -- ShareGPT -------------------------------------------------------------------------------------------


class TestShareGPT:
    def sharegpt(self, **values: object) -> list:
        return ShareGPT(config=config(DATA / "sharegpt_sample.json", dataset="sharegpt", **values), tokenizer=TOKENIZER).load()

    def test_one_request_per_conversation_filtered_as_documented(self) -> None:
        """Skipped: a 1-token prompt, a conversation without an answer, a 2-token answer. Each
        request is the first human message before a gpt answer; max_tokens is the answer's length."""
        data = json.loads((DATA / "sharegpt_sample.json").read_text())
        exchanges = {0: (0, 1), 3: (1, 2), 5: (0, 1)}
        prompts = self.sharegpt(request_count=100)
        expected = [(data[i]["conversations"][h]["value"], data[i]["conversations"][g]["value"]) for i, (h, g) in exchanges.items()]
        assert [prompt for prompt, _ in expected] == [p.text for p in prompts]
        assert [TOKENIZER.count(prompt) for prompt, _ in expected] == [p.input_tokens for p in prompts]
        assert [TOKENIZER.count(answer) for _, answer in expected] == [p.max_tokens for p in prompts]

    def test_osl_keeps_short_answers_and_sets_max_tokens(self) -> None:
        prompts = self.sharegpt(request_count=100, output_tokens_mean=64)
        assert 4 == len(prompts)
        assert [64] * 4 == [p.max_tokens for p in prompts]

    def test_reads_only_what_the_run_sends(self) -> None:
        assert 2 == len(self.sharegpt(request_count=2))

    def test_no_file_and_no_network_says_where_to_get_it(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        monkeypatch.setattr(_sharegpt, "URL", "http://127.0.0.1:9/ShareGPT_V3_unfiltered_cleaned_split.json")
        with pytest.raises(UsageError) as caught:
            ShareGPT(config=ProfileConfig(model="m", dataset="sharegpt"), tokenizer=TOKENIZER).load()
        text = str(caught.value)
        assert text.startswith("--public-dataset sharegpt: cannot download it (")
        assert text.endswith(
            "; get ShareGPT_V3_unfiltered_cleaned_split.json from "
            "http://127.0.0.1:9/ShareGPT_V3_unfiltered_cleaned_split.json and pass it with --input-file FILE"
        )
        assert [] == list((tmp_path / "aiperf" / "datasets").glob("*"))

    @pytest.mark.parametrize(
        ("content", "needle"),
        [
            ('{"id": 1}', "expected ShareGPT's JSON, an array of conversations"),
            ('[{"conversations": []}, ', "the JSON array ends early"),
            ('[{"conversations": [}]', "conversation 1 is not valid JSON"),
            ("[]", "none of its 0 conversations"),
        ],
    )
    def test_bad_files(self, tmp_path: Path, content: str, needle: str) -> None:
        path = tmp_path / "s.json"
        path.write_text(content)
        with pytest.raises(UsageError) as caught:
            ShareGPT(config=config(path, dataset="sharegpt"), tokenizer=TOKENIZER).load()
        assert str(caught.value).startswith(f"--public-dataset sharegpt ({path}): ")
        assert needle in str(caught.value)

    def test_array_read_in_small_chunks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Conversations split across read chunks (and UTF-8 characters split too) decode alike."""
        monkeypatch.setattr(_sharegpt, "_CHUNK", 7)
        whole = [p.text for p in self.sharegpt(request_count=100)]
        path = DATA / "sharegpt_sample.json"
        with path.open("rb") as handle:
            items = [item for _, item in _sharegpt.iter_array(handle, "x")]
        assert json.loads(path.read_text()) == items
        assert 3 == len(whole)


# -- the flags --------------------------------------------------------------------------------------


def flags(*args: str) -> ProfileConfig:
    from aiperf import cli
    from aiperf._config import build_config
    from aiperf._plugins import Plugins

    parser, parsers = cli.build_parser(Plugins.load())
    ns = parser.parse_args(["profile", "-m", "m", *args])
    return build_config(cli._profile_values(ns, parsers["profile"]))


class TestFlags:
    def test_reference_spellings(self) -> None:
        config = flags(
            "--input-file", "t.jsonl", "--custom-dataset-type", "mooncake_trace",
            "--synthetic-input-tokens-block-size", "16", "--fixed-schedule",
            "--fixed-schedule-start-offset", "2000", "--fixed-schedule-end-offset", "4000",
        )  # fmt: skip
        assert ("mooncake_trace", 16, True, 2000, 4000) == (
            config.custom_dataset_type, config.isl_block_size, config.fixed_schedule,
            config.fixed_schedule_start_offset, config.fixed_schedule_end_offset,
        )  # fmt: skip
        assert "sharegpt" == flags("--public-dataset", "sharegpt").dataset
        assert flags("--input-file", "t.jsonl", "--no-fixed-schedule").fixed_schedule is False
        assert 50 == flags("--input-file", "p.jsonl", "--custom-dataset-type", "random_pool", "--num-prompts", "50").num_prompts

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["--fixed-schedule-start-offset", "0"], "--fixed-schedule-start-offset: reads the times and lines of --input-file"),
            (["--custom-dataset-type", "single_turn"], "--custom-dataset-type: reads the times and lines of --input-file"),
            (["--input-file", "t", "--fixed-schedule-start-offset", "5", "--fixed-schedule-end-offset", "4"], "--fixed-schedule-start-offset: 5 is after --fixed-schedule-end-offset 4"),
            (["--input-file", "t", "--fixed-schedule-auto-offset", "--fixed-schedule-start-offset", "5"], "--fixed-schedule-auto-offset: the schedule starts at the first request"),
            (["--input-file", "t", "--fixed-schedule", "--request-rate", "5"], "--fixed-schedule: requests leave at the file's times, not at --request-rate"),
            (["--input-file", "t", "--no-fixed-schedule", "--fixed-schedule-end-offset", "5"], "--fixed-schedule-end-offset: only applies to a fixed schedule"),
            (["--input-file", "t", "--fixed-schedule-end-offset", "-1"], "--fixed-schedule-end-offset: must be >= 0 (got -1)"),
            (["--input-file", "t", "--isl-block-size", "0"], "--isl-block-size: must be > 0 (got 0)"),
            (["--input-file", "t", "--num-prompts", "5"], "--num-prompts: synthetic prompts only"),
            (["--public-dataset", "sharegpt", "--input-file", "s.json", "--custom-dataset-type", "single_turn"], "--custom-dataset-type: the format of --input-file; --dataset sharegpt reads its own"),
        ],
    )  # fmt: skip
    def test_one_line_for_flags_that_cannot_apply(self, args: list[str], needle: str) -> None:
        with pytest.raises(UsageError) as caught:
            flags(*args)
        assert needle in str(caught.value)
