"""The tokenizer behind --tokenizer: the shipped builtin, local files, and the Hugging Face hub."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Self

import aiperf
import pytest
import structlog
from aiperf import _tokenizer
from aiperf._tokenizer import builtin_tokenizer, builtin_words, load_tokenizer
from aiperf.mock_server import MOCK_WORDS
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]


def builtin_json() -> str:
    data = resources.files("aiperf").joinpath("data", "builtin_tokenizer.json.gz").read_bytes()
    return gzip.decompress(data).decode("utf-8")


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


class TestBuiltin:
    """The shipped byte-level BPE."""

    @given(st.text(max_size=200))
    @settings(max_examples=200, deadline=None)
    def test_builtin_round_trips_any_text(self, text: str) -> None:
        """Byte-level: every string encodes, and decodes back to itself."""
        tokenizer = builtin_tokenizer()
        ids = tokenizer.encode(text)
        assert text == tokenizer.decode(ids)
        assert len(ids) == tokenizer.count(text)

    def test_builtin_counts_common_words_as_one_token(self) -> None:
        """Frequent English words cost one token each, with or without their leading space."""
        tokenizer = load_tokenizer("builtin")
        assert 2 == tokenizer.count("hello world")
        assert 1 == tokenizer.count("The")
        assert 6 == tokenizer.count("The value of the function is")
        assert 0 == tokenizer.count("")

    def test_builtin_encodes_every_byte(self) -> None:
        """No unknown token: text outside the training corpus still encodes, byte by byte."""
        tokenizer = builtin_tokenizer()
        for text in ("\x00", "\u00e9", "\u4f60\u597d", "\U0001f642", "\ufffd"):
            ids = tokenizer.encode(text)
            assert 1 <= len(ids) <= len(text.encode("utf-8"))
            assert text == tokenizer.decode(ids)

    def test_builtin_vocabulary_size(self) -> None:
        """Large enough for English, small enough to ship: between 8k and 16k entries."""
        assert 8_000 <= builtin_tokenizer().backend.get_vocab_size() <= 16_000

    def test_builtin_ships_compressed_and_small(self) -> None:
        """The packaged file stays well under 1 MB."""
        data = resources.files("aiperf").joinpath("data", "builtin_tokenizer.json.gz").read_bytes()
        assert len(data) < 300_000
        assert "BPE" == json.loads(gzip.decompress(data))["model"]["type"]

    def test_builtin_is_loaded_once(self) -> None:
        """load_tokenizer('builtin') returns the cached instance."""
        assert load_tokenizer("builtin") is load_tokenizer(" builtin ")

    def test_builtin_loads_without_network(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Nothing in loading the builtin opens a socket."""

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("the builtin tokenizer tried to use the network")

        monkeypatch.setattr(socket, "socket", refuse)
        monkeypatch.setattr(socket, "create_connection", refuse)
        builtin_tokenizer.cache_clear()
        builtin_words.cache_clear()
        try:
            assert 2 == load_tokenizer("builtin").count("hello world")
        finally:
            builtin_tokenizer.cache_clear()
            builtin_words.cache_clear()

    def test_builtin_count_has_no_special_tokens(self) -> None:
        """count() is the length of encode(): no BOS/EOS framing is added."""
        tokenizer = builtin_tokenizer()
        text = "Return the number of items in a container."
        assert len(tokenizer.encode(text)) == tokenizer.count(text)
        assert [tokenizer.count(text)] * 3 == tokenizer.count_many([text] * 3)


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


class TestTrainingScript:
    """The shipped file is the output of scripts/train_builtin_tokenizer.py."""

    @pytest.mark.skipif(
        sys.version_info[:2] != (3, 11),
        reason="the corpus is the standard library of the Python that built the file (3.11)",
    )
    def test_training_script_reproduces_the_shipped_file(self) -> None:
        """A fresh build is byte-for-byte the packaged tokenizer."""
        script = REPO / "scripts" / "train_builtin_tokenizer.py"
        done = subprocess.run(
            [sys.executable, str(script), "--check", "--output", str(_tokenizer_data_file())],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert 0 == done.returncode, done.stdout + done.stderr


def _tokenizer_data_file() -> Path:
    return Path(str(resources.files("aiperf").joinpath("data", "builtin_tokenizer.json.gz")))


class TestLocalPath:
    """--tokenizer PATH: a tokenizer.json or a directory holding one."""

    def test_load_from_file(self, tmp_path: Path) -> None:
        """A tokenizer.json file loads and counts like the tokenizer it holds."""
        file = tmp_path / "my.json"
        file.write_text(builtin_json(), encoding="utf-8")
        tokenizer = load_tokenizer(str(file))
        assert str(file) == tokenizer.name
        assert builtin_tokenizer().encode("counting tokens") == tokenizer.encode("counting tokens")

    def test_load_from_directory(self, tmp_path: Path) -> None:
        """A directory is read through its tokenizer.json."""
        (tmp_path / "tokenizer.json").write_text(builtin_json(), encoding="utf-8")
        assert 2 == load_tokenizer(str(tmp_path)).count("hello world")

    def test_truncation_and_padding_in_the_file_are_switched_off(self, tmp_path: Path) -> None:
        """A file saved with truncation or padding still counts every token of the text."""
        config = json.loads(builtin_json())
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
    with FakeHub("acme/tiny", builtin_json().encode("utf-8")) as hub:
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
