"""The built-in datasets: synthetic prompts of exact token counts, and the JSONL input file."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

import aiperf
import pytest
import structlog
from aiperf._datasets import (
    INPUT_FILE,
    SYNTHETIC,
    InputFileDataset,
    SyntheticDataset,
    sample_lengths,
)
from aiperf._tokenizer import HFTokenizer, builtin_tokenizer, load_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

SEEDS = st.integers(min_value=-(2**40), max_value=2**40)


def synthetic(**kwargs: object) -> list[aiperf.Prompt]:
    options: dict[str, object] = {
        "tokenizer": builtin_tokenizer(),
        "num_prompts": 10,
        "input_tokens_mean": 64,
    }
    options.update(kwargs)
    return SyntheticDataset(**options).load()  # type: ignore[arg-type]


def assert_counts_are_true(prompts: list[aiperf.Prompt], tokenizer: aiperf.Tokenizer) -> None:
    """input_tokens is what the tokenizer really counts in the text."""
    assert [p.input_tokens for p in prompts] == [tokenizer.count(p.text) for p in prompts]


class TestSyntheticExactness:
    """Prompts hit the drawn token count exactly under the builtin tokenizer."""

    @given(mean=st.integers(1, 1500), seed=SEEDS, n=st.integers(1, 12))
    @settings(max_examples=60, deadline=None)
    def test_fixed_length_is_exact(self, mean: int, seed: int, n: int) -> None:
        """With no spread every prompt re-encodes to exactly the mean."""
        prompts = synthetic(num_prompts=n, input_tokens_mean=mean, seed=seed)
        assert [mean] * n == [builtin_tokenizer().count(p.text) for p in prompts]
        assert [mean] * n == [p.input_tokens for p in prompts]

    @given(mean=st.integers(1, 1000), stddev=st.floats(0.1, 400), seed=SEEDS, n=st.integers(1, 12))
    @settings(max_examples=60, deadline=None)
    def test_spread_lengths_are_exact(self, mean: int, stddev: float, seed: int, n: int) -> None:
        """Drawn lengths vary, are at least 1, and each prompt re-encodes to its own."""
        with structlog.testing.capture_logs() as logs:
            prompts = synthetic(
                num_prompts=n, input_tokens_mean=mean, input_tokens_stddev=stddev, seed=seed
            )
        assert n == len(prompts)
        assert all(p.input_tokens >= 1 for p in prompts)
        assert_counts_are_true(prompts, builtin_tokenizer())
        assert [] == logs

    def test_lengths_follow_the_normal_distribution(self) -> None:
        """2000 draws of N(200, 50): mean and spread within 5 standard errors."""
        lengths = [
            p.input_tokens
            for p in synthetic(num_prompts=2000, input_tokens_mean=200, input_tokens_stddev=50)
        ]
        assert abs(statistics.fmean(lengths) - 200) < 5 * 50 / 2000**0.5
        assert abs(statistics.stdev(lengths) - 50) < 5 * 50 / (2 * 1999) ** 0.5
        assert all(isinstance(n, int) for n in lengths)

    def test_lengths_are_at_least_one(self) -> None:
        """A wide spread around a small mean clips at one token, never zero or negative."""
        prompts = synthetic(num_prompts=300, input_tokens_mean=2, input_tokens_stddev=20)
        assert 1 == min(p.input_tokens for p in prompts)
        assert_counts_are_true(prompts, builtin_tokenizer())


class TestSyntheticVariety:
    """Prompts are reproducible for a seed and differ from each other."""

    def test_same_seed_same_prompts(self) -> None:
        assert synthetic(seed=7, input_tokens_stddev=10) == synthetic(
            seed=7, input_tokens_stddev=10
        )

    def test_other_seed_other_prompts(self) -> None:
        first, second = synthetic(seed=7), synthetic(seed=8)
        assert not {p.text for p in first} & {p.text for p in second}

    def test_no_seed_means_seed_zero(self) -> None:
        assert synthetic(seed=None) == synthetic(seed=0)

    def test_negative_seeds_are_distinct(self) -> None:
        assert synthetic(seed=-1) != synthetic(seed=1)

    def test_no_two_prompts_share_their_first_two_tokens(self) -> None:
        """So a server's prefix cache cannot answer one prompt from another."""
        tokenizer = builtin_tokenizer()
        prompts = synthetic(num_prompts=2000, input_tokens_mean=16)
        heads = {tuple(tokenizer.encode(p.text)[:2]) for p in prompts}
        assert 2000 == len(heads)

    def test_output_settings_leave_the_prompts_alone(self) -> None:
        """--output-tokens-mean draws from its own stream: the input prompts do not change."""
        plain = synthetic(seed=3)
        limited = synthetic(seed=3, output_tokens_mean=100, output_tokens_stddev=30)
        assert [p.text for p in plain] == [p.text for p in limited]


class TestSyntheticMaxTokens:
    """max_tokens per prompt from --output-tokens-mean/-stddev."""

    def test_no_output_mean_means_no_max_tokens(self) -> None:
        assert {None} == {p.max_tokens for p in synthetic()}

    def test_fixed_output_length(self) -> None:
        assert {128} == {p.max_tokens for p in synthetic(output_tokens_mean=128)}

    def test_spread_output_length(self) -> None:
        limits = [
            p.max_tokens
            for p in synthetic(num_prompts=500, output_tokens_mean=3, output_tokens_stddev=10)
        ]
        assert all(isinstance(n, int) and n >= 1 for n in limits)
        assert len(set(limits)) > 5


def train_tokenizer(directory: Path, kind: str) -> HFTokenizer:
    """A small tokenizer of another family, saved as tokenizer.json and loaded by path."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    corpus = [topics[key] for key in sorted(topics)][:40]
    if kind == "byte_level":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    elif kind == "bytes_only":
        # every byte its own token, no merges: no word costs one token (as in a toy model's
        # vocabulary), so prompts are built from words of several costs.
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=256, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    elif kind == "metaspace":
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<unk>"])
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=3000, special_tokens=["[UNK]", "[CLS]", "[SEP]"]
        )
    else:
        # No pre-tokenizer: merges run across spaces, so counts are not additive per word.
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>"])
    trainer.show_progress = False
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    path = directory / kind / "tokenizer.json"
    path.parent.mkdir()
    tokenizer.save(str(path))
    return load_tokenizer(str(path.parent))


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], HFTokenizer]:
    """``other_tokenizer(kind)``: each kind trained once for the module."""
    directory = tmp_path_factory.mktemp("tokenizers")
    made: dict[str, HFTokenizer] = {}

    def get(kind: str) -> HFTokenizer:
        if kind not in made:
            made[kind] = train_tokenizer(directory, kind)
        return made[kind]

    return get


class TestSyntheticOtherTokenizers:
    """Under a tokenizer of your own, counts are exact whenever it splits words at spaces."""

    @pytest.mark.parametrize("kind", ["byte_level", "metaspace", "wordpiece"])
    @pytest.mark.parametrize(("mean", "stddev"), [(1, 0.0), (2, 0.0), (128, 0.0), (300, 120.0)])
    def test_exact_when_words_split_at_spaces(
        self, kind: str, mean: int, stddev: float, other_tokenizer: Callable[[str], HFTokenizer]
    ) -> None:
        tokenizer = other_tokenizer(kind)
        with structlog.testing.capture_logs() as logs:
            prompts = synthetic(
                tokenizer=tokenizer,
                num_prompts=20,
                input_tokens_mean=mean,
                input_tokens_stddev=stddev,
            )
        assert_counts_are_true(prompts, tokenizer)
        if stddev == 0:
            assert {mean} == {p.input_tokens for p in prompts}
        assert [] == logs

    @pytest.mark.parametrize(("mean", "stddev"), [(8, 0.0), (64, 0.0), (300, 60.0)])
    def test_exact_when_no_word_is_one_token(
        self, mean: int, stddev: float, other_tokenizer: Callable[[str], HFTokenizer]
    ) -> None:
        """A vocabulary of bytes alone: a word of the right length closes each gap (for
        prompts at least as long as the lead word)."""
        tokenizer = other_tokenizer("bytes_only")
        assert 4 == tokenizer.count(" the")  # the premise: nothing is merged
        with structlog.testing.capture_logs() as logs:
            prompts = synthetic(
                tokenizer=tokenizer, num_prompts=20, input_tokens_mean=mean,
                input_tokens_stddev=stddev,
            )  # fmt: skip
        assert_counts_are_true(prompts, tokenizer)
        if stddev == 0:
            assert {mean} == {p.input_tokens for p in prompts}
        assert [] == logs

    def test_best_effort_and_truthful_otherwise(
        self, other_tokenizer: Callable[[str], HFTokenizer]
    ) -> None:
        """Merges across spaces: counts land near the target, are reported as they are, and
        a miss is logged."""
        tokenizer = other_tokenizer("across_spaces")
        with structlog.testing.capture_logs() as logs:
            prompts = synthetic(tokenizer=tokenizer, num_prompts=30, input_tokens_mean=200)
        assert_counts_are_true(prompts, tokenizer)
        assert all(abs(p.input_tokens - 200) <= 20 for p in prompts)
        missed = sum(p.input_tokens != 200 for p in prompts)
        warnings = [e for e in logs if e["event"] == "synthetic_prompts_inexact"]
        assert ([{"prompts": missed, "of": 30}] if missed else []) == [
            {"prompts": e["prompts"], "of": e["of"]} for e in warnings
        ]


class WordCounter:
    """A tokenizer that is not ours: one token per space-separated word, unhashable."""

    name = "words"
    __hash__ = None  # type: ignore[assignment]

    def encode(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def decode(self, ids: object) -> str:
        raise NotImplementedError

    def count(self, text: str) -> int:
        return len(text.split())


class TestSyntheticAnyTokenizer:
    def test_a_plain_protocol_object_works(self) -> None:
        """Only name and count are needed; a tokenizer without count_many is counted one by one."""
        prompts = synthetic(tokenizer=WordCounter(), num_prompts=5, input_tokens_mean=30)
        assert [30] * 5 == [len(p.text.split()) for p in prompts]
        assert [30] * 5 == [p.input_tokens for p in prompts]


class TestSampleLengths:
    def test_no_spread_is_the_mean(self) -> None:
        import numpy as np

        assert [7, 7, 7] == sample_lengths(np.random.default_rng(0), 3, 7, 0.0)

    def test_rounds_to_the_nearest_integer(self) -> None:
        import numpy as np

        draws = sample_lengths(np.random.default_rng(1), 1000, 10.0, 0.001)
        assert {10} == set(draws)


class TestDatasetTypes:
    """The values the built-in plugin registers, driven by ProfileConfig."""

    def test_names(self) -> None:
        assert ("synthetic", "input_file") == (SYNTHETIC.name, INPUT_FILE.name)

    def test_synthetic_reads_the_config(self) -> None:
        config = aiperf.ProfileConfig(
            model="m",
            synthetic_input_tokens_mean=40,
            output_tokens_mean=12,
            num_prompts=5,
            random_seed=9,
        )
        prompts = SYNTHETIC.create(config, builtin_tokenizer()).load()
        assert [(40, 12)] * 5 == [(p.input_tokens, p.max_tokens) for p in prompts]
        assert prompts == synthetic(
            num_prompts=5, input_tokens_mean=40, output_tokens_mean=12, seed=9
        )

    def test_input_file_reads_the_config(self, tmp_path: Path) -> None:
        path = tmp_path / "prompts.jsonl"
        path.write_text('{"text": "hello world"}\n', encoding="utf-8")
        config = aiperf.ProfileConfig(model="m", input_file=path, output_tokens_mean=5)
        assert [aiperf.Prompt(text="hello world", input_tokens=2, max_tokens=5)] == list(
            INPUT_FILE.create(config, builtin_tokenizer()).load()
        )


# -- JSONL input file ------------------------------------------------------------------------


@pytest.fixture
def jsonl(tmp_path: Path) -> Callable[..., list[aiperf.Prompt]]:
    """Write lines to a file and load it (each argument is one line, dicts as JSON)."""

    def load(*lines: object, **options: object) -> list[aiperf.Prompt]:
        path = tmp_path / "input.jsonl"
        text = "".join(
            (line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines
        )
        path.write_text(text, encoding="utf-8")
        return InputFileDataset(path=path, tokenizer=builtin_tokenizer(), **options).load()  # type: ignore[arg-type]

    return load


def usage_error(call: Callable[[], object]) -> str:
    with pytest.raises(aiperf.UsageError) as excinfo:
        call()
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("--input-file: ")
    return message


class TestInputFile:
    """Each line an object with text, prompt or messages, and an optional output length."""

    def test_text_and_prompt_lines(self, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        prompts = jsonl(
            {"text": "hello world"}, {"prompt": "The value of the function is", "max_tokens": 9}
        )
        assert [
            aiperf.Prompt(text="hello world", input_tokens=2),
            aiperf.Prompt(text="The value of the function is", input_tokens=6, max_tokens=9),
        ] == prompts

    def test_counts_with_the_given_tokenizer(
        self, jsonl: Callable[..., list[aiperf.Prompt]]
    ) -> None:
        text = "Tokenizers split text into pieces; 你好 🙂"
        assert builtin_tokenizer().count(text) == jsonl({"text": text})[0].input_tokens

    def test_messages_line(self, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        """Chat messages are kept as given; their text parts are counted, without a template."""
        messages = [
            {"role": "system", "content": "Answer in one word"},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]  # fmt: skip
        (prompt,) = jsonl({"messages": messages, "output_length": 4})
        tokenizer = builtin_tokenizer()
        assert tuple(messages) == prompt.messages
        assert "Answer in one word\nhello world" == prompt.text
        assert (
            tokenizer.count("Answer in one word") + tokenizer.count("hello world")
            == prompt.input_tokens
        )
        assert 4 == prompt.max_tokens

    def test_blank_lines_and_bom_are_skipped(self, tmp_path: Path) -> None:
        path = tmp_path / "input.jsonl"
        path.write_bytes(b'\xef\xbb\xbf{"text": "one"}\n\n   \n{"text": "two"}')
        prompts = InputFileDataset(path=path, tokenizer=builtin_tokenizer()).load()
        assert ["one", "two"] == [p.text for p in prompts]

    def test_output_settings_fill_missing_max_tokens(
        self, jsonl: Callable[..., list[aiperf.Prompt]]
    ) -> None:
        prompts = jsonl({"text": "a"}, {"text": "b", "max_tokens": 3}, output_tokens_mean=50)
        assert [50, 3] == [p.max_tokens for p in prompts]

    def test_other_keys_are_ignored(self, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        assert ["hi"] == [p.text for p in jsonl({"text": "hi", "session_id": "s1", "timestamp": 0})]


class TestInputFileErrors:
    """Every problem is one UsageError line, with the line number when a line is at fault."""

    def test_missing_file(self, tmp_path: Path) -> None:
        dataset = InputFileDataset(path=tmp_path / "nope.jsonl", tokenizer=builtin_tokenizer())
        assert f"--input-file: no such file: {tmp_path / 'nope.jsonl'}" == usage_error(dataset.load)

    def test_directory(self, tmp_path: Path) -> None:
        dataset = InputFileDataset(path=tmp_path, tokenizer=builtin_tokenizer())
        assert f"--input-file: {tmp_path} is a directory; expected a JSONL file" == usage_error(
            dataset.load
        )

    def test_unreadable_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "locked.jsonl"
        path.write_text('{"text": "x"}\n', encoding="utf-8")

        def refuse(self: Path, *args: object, **kwargs: object) -> object:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "open", refuse)
        dataset = InputFileDataset(path=path, tokenizer=builtin_tokenizer())
        assert f"--input-file: cannot read {path}: Permission denied" == usage_error(dataset.load)

    def test_not_set(self) -> None:
        dataset = InputFileDataset(path=None, tokenizer=builtin_tokenizer())
        assert "needed by --dataset input_file" in usage_error(dataset.load)

    @pytest.mark.parametrize("content", ["", "\n\n  \n"])
    def test_empty_file(self, content: str, tmp_path: Path) -> None:
        path = tmp_path / "empty.jsonl"
        path.write_text(content, encoding="utf-8")
        dataset = InputFileDataset(path=path, tokenizer=builtin_tokenizer())
        assert (
            f"--input-file: {path} has no prompts; expected one JSON object per line"
            == usage_error(dataset.load)
        )

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ('{"text": "x"', "--input-file: line 3: not valid JSON (Expecting ',' delimiter at column 13)"),
            ("text: hello", "--input-file: line 3: not valid JSON (Expecting value at column 1)"),
            ('["hello"]', "--input-file: line 3: expected a JSON object, got an array"),
            ('"hello"', "--input-file: line 3: expected a JSON object, got a string"),
            ("null", "--input-file: line 3: expected a JSON object, got null"),
            ('{"txt": "hello"}', '--input-file: line 3: expected a "text", "prompt" or "messages" field'),
            ('{"text": 5}', '--input-file: line 3: "text" must be a string, got a number'),
            ('{"prompt": ["a"]}', '--input-file: line 3: "prompt" must be a string, got an array'),
            ('{"text": ""}', '--input-file: line 3: "text" is empty'),
            ('{"text": "a", "prompt": "b"}', '--input-file: line 3: give one of "text", "prompt", not several'),
            ('{"messages": "hi"}', '--input-file: line 3: "messages" must be a non-empty array of chat messages, got a string'),
            ('{"messages": []}', '--input-file: line 3: "messages" must be a non-empty array of chat messages, got an empty array'),
            ('{"messages": [{"content": "hi"}]}', '--input-file: line 3: "messages"[0] must be an object with a "role" string'),
            ('{"messages": [{"role": "user", "content": 3}]}', '--input-file: line 3: "messages"[0].content must be a string or an array of parts, got a number'),
            ('{"messages": [{"role": "user", "content": ["hi"]}]}', '--input-file: line 3: "messages"[0].content parts must be objects'),
            ('{"text": "a", "max_tokens": 0}', '--input-file: line 3: "max_tokens" must be a positive integer, got 0'),
            ('{"text": "a", "max_tokens": 2.5}', '--input-file: line 3: "max_tokens" must be a positive integer, got 2.5'),
            ('{"text": "a", "max_tokens": true}', '--input-file: line 3: "max_tokens" must be a positive integer, got a boolean'),
            ('{"text": "a", "output_length": "9"}', '--input-file: line 3: "output_length" must be a positive integer, got a string'),
            ('{"text": "a", "max_tokens": 1, "output_length": 1}', '--input-file: line 3: give one of "max_tokens", "output_length", not both'),
        ],
    )  # fmt: skip
    def test_bad_line(
        self, line: str, expected: str, jsonl: Callable[..., list[aiperf.Prompt]]
    ) -> None:
        """The third line is at fault (after a good line and a blank one)."""
        assert expected == usage_error(
            lambda: jsonl({"text": "fine"}, "", line, {"text": "also fine"})
        )

    def test_invalid_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.jsonl"
        path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
        dataset = InputFileDataset(path=path, tokenizer=builtin_tokenizer())
        assert "--input-file: line 2: not valid UTF-8" == usage_error(dataset.load)


# -- images and audio in the input file ------------------------------------------------------


def _png() -> bytes:
    import random

    from aiperf._apis import media

    return media.png(4, 3, random.Random(1))


def _wav(seconds: float) -> bytes:
    import random

    from aiperf._apis import media

    return media.wav(seconds, random.Random(1))


class TestInputFileMedia:
    """``image`` and ``audio`` next to ``text``/``prompt``: files read now and sent as base64,
    image URLs passed through, their sizes recorded as the synthetic media's are."""

    def test_local_image_becomes_a_data_url(self, tmp_path: Path, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        import base64

        png = _png()
        (tmp_path / "cat.png").write_bytes(png)
        (prompt,) = jsonl({"text": "what is this", "image": "cat.png"})
        assert (f"data:image/png;base64,{base64.b64encode(png).decode()}",) == prompt.images
        assert {"input_image_count": 1.0, "input_image_bytes": float(len(png))} == prompt.input_values
        assert builtin_tokenizer().count("what is this") == prompt.input_tokens

    def test_media_type_from_the_bytes_then_the_extension(self, tmp_path: Path, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        """A JPEG named .bin is a JPEG; a file with no known magic takes its extension's type."""
        (tmp_path / "photo.bin").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
        (tmp_path / "pic.webp").write_bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 ")
        (tmp_path / "drawing.bmp").write_bytes(b"BM" + b"\x00" * 30)
        (prompt,) = jsonl({"text": "x", "image": ["photo.bin", "pic.webp", "drawing.bmp"]})
        assert ["image/jpeg", "image/webp", "image/bmp"] == [u[5:].split(";")[0] for u in prompt.images]

    def test_urls_pass_through_and_count(self, tmp_path: Path, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        """An http(s) image is sent as its URL: counted, but its bytes are unknown."""
        png = _png()
        (tmp_path / "a.png").write_bytes(png)
        (prompt,) = jsonl({"prompt": "compare", "image": ["https://example.com/b.jpg", "a.png"]})
        assert "https://example.com/b.jpg" == prompt.images[0]
        assert prompt.images[1].startswith("data:image/png;base64,")
        assert {"input_image_count": 2.0, "input_image_bytes": float(len(png))} == prompt.input_values

    def test_wav_and_mp3_audio(self, tmp_path: Path, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        """Audio goes as (base64, format); a WAV's length is read from its header."""
        import base64

        clip = _wav(0.25)
        mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 8
        (tmp_path / "a.wav").write_bytes(clip)
        (tmp_path / "b.mp3").write_bytes(mp3)
        first, second = jsonl({"text": "x", "audio": "a.wav"}, {"text": "y", "audio": ["b.mp3"]})
        assert ((base64.b64encode(clip).decode(), "wav"),) == first.audio
        assert {"input_audio_bytes": float(len(clip)), "input_audio_seconds": 0.25} == first.input_values
        assert ((base64.b64encode(mp3).decode(), "mp3"),) == second.audio
        assert {"input_audio_bytes": float(len(mp3))} == second.input_values  # no length without a decoder

    def test_relative_paths_from_the_current_directory_first(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        """A relative path is looked up from where aiperf runs, then from the file's folder."""
        here = tmp_path / "cwd"
        here.mkdir()
        (here / "a.png").write_bytes(_png())
        (tmp_path / "a.png").write_bytes(b"\xff\xd8\xff" + b"\x00" * 8)  # beside input.jsonl
        monkeypatch.chdir(here)
        (prompt,) = jsonl({"text": "x", "image": "a.png"})
        assert prompt.images[0].startswith("data:image/png;")

    def test_each_file_read_once(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        """A file named on many lines is read once and its payload shared."""
        (tmp_path / "a.png").write_bytes(_png())
        reads: list[Path] = []
        original = Path.read_bytes

        def counting(self: Path) -> bytes:
            reads.append(self)
            return original(self)

        monkeypatch.setattr(Path, "read_bytes", counting)
        prompts = jsonl(*({"text": f"p{i}", "image": "a.png"} for i in range(5)))
        assert 1 == len(reads)
        assert all(p.images[0] is prompts[0].images[0] for p in prompts)

    def test_data_url_image_kept(self, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        (prompt,) = jsonl({"text": "x", "image": "data:image/gif;base64,R0lGODlhAQABAAAAACw="})
        assert ("data:image/gif;base64,R0lGODlhAQABAAAAACw=",) == prompt.images
        assert 14.0 == prompt.input_values["input_image_bytes"]

    @pytest.mark.parametrize(
        ("line", "expected"),
        [
            ({"text": "a", "image": "nope.png"}, '--input-file: line 1: "image": no such file: nope.png or {dir}/nope.png'),
            ({"text": "a", "audio": "gone.wav"}, '--input-file: line 1: "audio": no such file: gone.wav or {dir}/gone.wav'),
            ({"text": "a", "image": "notes.txt"}, '--input-file: line 1: "image": notes.txt is not an image aiperf knows (PNG, JPEG, GIF or WebP)'),
            ({"text": "a", "audio": "notes.txt"}, '--input-file: line 1: "audio": notes.txt is neither WAV nor MP3 (the formats input_audio takes)'),
            ({"text": "a", "audio": "https://example.com/a.wav"}, '--input-file: line 1: "audio": https://example.com/a.wav is a URL; input_audio carries the clip itself, so give a local WAV or MP3 file'),
            ({"text": "a", "image": 5}, '--input-file: line 1: "image" must be a path or URL, or an array of them, got a number'),
            ({"text": "a", "image": []}, '--input-file: line 1: "image" must be a path or URL, or an array of them, got an empty string or array'),
            ({"text": "a", "audio": ["a.wav", 3]}, '--input-file: line 1: "audio" must be a path or URL, or an array of them, got an array'),
            ({"text": "a", "image": "sub"}, '--input-file: line 1: "image": sub is a directory, not a file'),
            ({"text": "a", "image": "data:image/png,abc"}, '--input-file: line 1: "image": a data: URL must be base64 (data:image/png;base64,...)'),
            ({"messages": [{"role": "user", "content": "a"}], "image": "x.png"}, '--input-file: line 1: "image": only with "text" or "prompt"; with "messages", put images and audio in the messages\' content parts'),
        ],
    )  # fmt: skip
    def test_bad_media_is_one_line(self, line: dict, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jsonl: Callable[..., list[aiperf.Prompt]]) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "notes.txt").write_text("not media")
        (tmp_path / "sub").mkdir()
        assert expected.format(dir=tmp_path) == usage_error(lambda: jsonl(line))
