"""Hypothesis against ``aiperf.urls``, the helpers the core and every plugin share for URLs and
secrets: a password never gets out, normalising twice changes nothing, a failed write leaves
nothing behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from unittest import mock
from urllib.parse import quote, urlsplit

import aiperf
import pytest
from aiperf import _redact, urls
from aiperf._types import UsageError
from aiperf.urls import (
    ArtifactWriteError,
    describe_error,
    normalize_url,
    scrub,
    split_url,
    strip_userinfo,
    write_json_atomic,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None)

ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
LOWER = "abcdefghijklmnopqrstuvwxyz"
SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp", "postgresql+psycopg", "databricks"])
HOSTS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.sampled_from(["[::1]", "127.0.0.1", "[fe80::1%25eth0]"]),
)
PORTS = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
# Path, query and fragment of a URL; an "@" in them is not userinfo and must stay.
PATHS = st.from_regex(r"(/[a-z0-9@._~-]{0,8}){0,3}", fullmatch=True)
QUERIES = st.one_of(st.just(""), st.from_regex(r"\?[a-z0-9=&@]{0,12}", fullmatch=True))
FRAGMENTS = st.one_of(st.just(""), st.from_regex(r"#[a-z0-9@]{0,6}", fullmatch=True))
# A password as a user writes it into a URL without encoding it: anything but the characters
# that end the authority ("/", "?", "#"), the brackets of an IPv6 host and white space; "@",
# ":" and "%" included.
RAW_PASSWORDS = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="/?#[]"
    ).filter(lambda c: not c.isspace()),
    min_size=1,
    max_size=20,
)
# Passwords that cannot turn up by chance in the text around them (AROUND has no P, W, Q, Z).
MARKED = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20).map(
    lambda s: f"PW{s}QZ"
)
RAW_MARKED = RAW_PASSWORDS.map(lambda s: f"PW{s}QZ")
AROUND = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="PWQZ"), max_size=30
)


@pytest.fixture(autouse=True)
def _no_known_secrets() -> Iterator[None]:
    """Each test starts (and leaves) the process-wide secret registry empty."""
    with mock.patch.object(_redact, "_known", set()):
        yield


def _secrets(*values: str) -> None:
    _redact.remember_secrets(values)


class TestStripUserinfo:
    @FUZZ
    @given(SCHEMES, ANY_TEXT, ANY_TEXT, HOSTS, PORTS, PATHS, QUERIES, FRAGMENTS)
    def test_takes_out_exactly_the_encoded_userinfo(
        self, scheme, user, password, host, port, path, query, fragment
    ) -> None:
        """Any user and password, percent-encoded as a URL carries them: only they go."""
        rest = f"{host}{port}{path}{query}{fragment}"
        url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"
        assert f"{scheme}://{rest}" == strip_userinfo(url)

    @FUZZ
    @given(ANY_TEXT, RAW_PASSWORDS, HOSTS, PORTS, PATHS, QUERIES)
    def test_takes_out_a_raw_password_with_at_colon_and_percent(
        self, user, password, host, port, path, query
    ) -> None:
        """``http://u:p@ss:w%rd@host``: the parser's password is ``p@ss:w%rd``, and it goes."""
        user = quote(user, safe="")
        url = f"http://{user}:{password}@{host}{port}{path}{query}"
        assert password == urlsplit(url).password  # what a client would send
        shown = strip_userinfo(url)
        assert f"http://{host}{port}{path}{query}" == shown
        assert urlsplit(shown).password is None

    @FUZZ
    @given(HOSTS, PORTS, PATHS, QUERIES, FRAGMENTS)
    def test_a_url_without_userinfo_is_left_as_it_is(
        self, host, port, path, query, fragment
    ) -> None:
        url = f"https://{host}{port}{path}{query}{fragment}"
        assert url == strip_userinfo(url)

    @FUZZ
    @given(st.lists(HOSTS, min_size=1, max_size=3), RAW_MARKED)
    def test_every_url_in_a_message_loses_its_userinfo(self, hosts, password) -> None:
        urls_ = [f"https://svc:{password}{i}@{host}/x" for i, host in enumerate(hosts)]
        message = "request to " + " failed; retried ".join(urls_) + " gave up"
        shown = strip_userinfo(message)
        assert password not in shown
        assert all(f"https://{host}/x" in shown for host in hosts)

    @pytest.mark.parametrize(
        ("given_", "expected"),
        [
            ("user:pw@node:9400", "node:9400"),
            ("//user:pw@node/x", "//node/x"),
            ("sqlite:///data@2024.db", "sqlite:///data@2024.db"),
            ("http://node/models/a@v2", "http://node/models/a@v2"),
            ("mail alice@example.com", "mail alice@example.com"),
        ],
    )
    def test_forms(self, given_: str, expected: str) -> None:
        """No scheme: the start is the authority. An "@" outside the authority is kept."""
        assert expected == strip_userinfo(given_)

    @FUZZ
    @given(ANY_TEXT)
    def test_never_raises(self, text: str) -> None:
        assert isinstance(strip_userinfo(text), str)


class TestNormalizeUrl:
    @FUZZ
    @given(
        st.one_of(
            ANY_TEXT,
            st.builds(
                lambda s, u, h, p, path, q, f: f"{s}{u}{h}{p}{path}{q}{f}",
                st.sampled_from(["", "http://", "HTTPS://", " http://"]),
                st.sampled_from(["", "u:p@", "u@"]),
                HOSTS,
                st.sampled_from(["", ":", ":8000", ":0"]),
                st.sampled_from(["", "/", "/v1/", "//x//", "/metrics"]),
                QUERIES,
                FRAGMENTS,
            ),
        ),
        st.sampled_from([None, 9400]),
        st.sampled_from(["", "/metrics"]),
    )
    def test_is_idempotent(self, text, default_port, default_path) -> None:
        """A normalised URL normalises to itself; what is refused is one UsageError line."""
        kwargs = {"default_port": default_port, "default_path": default_path}
        try:
            once = normalize_url(text, **kwargs)
        except UsageError as exc:
            assert "\n" not in str(exc)
            assert str(exc).startswith("--url: ")
            return
        assert once == normalize_url(once, **kwargs)
        parts = urlsplit(once)
        assert parts.scheme in ("http", "https")
        assert parts.hostname
        assert not parts.fragment
        assert not parts.path.endswith("/")
        if default_port is not None:
            assert parts.port is not None

    @pytest.mark.parametrize(
        ("given_", "kwargs", "expected"),
        [
            ("localhost:8000", {}, "http://localhost:8000"),
            (" HTTPS://h/v1/#top ", {}, "https://h/v1"),
            ("http://h:8000/?api-version=2", {}, "http://h:8000?api-version=2"),
            (
                "node",
                {"default_port": 9400, "default_path": "/metrics"},
                "http://node:9400/metrics",
            ),
            ("node:", {"default_port": 9400}, "http://node:9400"),
            ("u:p@node/x", {}, "http://u:p@node/x"),
        ],
    )
    def test_forms(self, given_: str, kwargs: dict, expected: str) -> None:
        assert expected == normalize_url(given_, **kwargs)

    @FUZZ
    @given(AROUND, AROUND, MARKED, AROUND)
    def test_errors_never_show_the_password(self, before, user, password, after) -> None:
        """Whatever is around it, however broken the URL, a refusal never quotes the password."""
        text = f"{before}{user}:{password}@{after}"
        try:
            split_url(text, flag="--x")
        except UsageError as exc:
            assert password not in str(exc)
            assert "\n" not in str(exc)

    @pytest.mark.parametrize(
        ("given_", "message"),
        [
            ("ftp://u:hunter22@h", "--x: expected an http:// or https:// URL (got 'ftp://h')"),
            ("http://u:hunter22@h:99999", "--x: the port is not a number between 1 and 65535 (got 'http://h:99999')"),
            ("http:///u:hunter22@h", "--x: wanted (got '***@h')"),
            ("http://u:hunter22@[::1", "--x: not a valid URL (Invalid IPv6 URL) (got 'http://[::1')"),
            ("http://u:hunter22\uff0fx@h", "--x: not a valid URL (characters that are not allowed in a host) (got 'http://h')"),
            ("http://h /x", "--x: must not contain control characters or spaces (got 'http://h /x')"),
        ],
    )  # fmt: skip
    def test_errors(self, given_: str, message: str) -> None:
        with pytest.raises(UsageError) as raised:
            split_url(given_, flag="--x", expected="wanted")
        assert message == str(raised.value)


class TestScrub:
    @FUZZ
    @given(st.text(min_size=4, max_size=12), ANY_TEXT, ANY_TEXT)
    @example(secret="a***", before="a", after="")  # "aa***" -> "a***": the secret again
    def test_a_registered_secret_never_gets_through(self, secret, before, after) -> None:
        """Anywhere in the text, even where taking it out joins the rest into it again."""
        _secrets(secret)
        assert secret not in scrub(f"{before}{secret}{after}")

    @FUZZ
    @given(st.text(min_size=5, max_size=12), ANY_TEXT, st.integers(4, 11))
    def test_the_start_of_a_secret_cut_off_at_the_end_goes_too(self, secret, before, size) -> None:
        """Text cut to a length can end inside a secret: those first characters go."""
        _secrets(secret)
        head = secret[: min(size, len(secret) - 1)]
        assert not scrub(before + head).endswith(head)

    def test_urls_lose_userinfo_and_secrets_go(self) -> None:
        _secrets("sk-live-123456")
        text = "POST http://bot:pa55word@h/v1 with key sk-live-123456 failed"
        assert "POST http://h/v1 with key *** failed" == scrub(text)


class _Wrapper(Exception):
    pass


class TestDescribeError:
    @FUZZ
    @given(MARKED, RAW_MARKED, AROUND, AROUND, st.integers(0, 3), st.booleans())
    def test_never_shows_a_secret_or_a_url_password(
        self, secret, password, before, after, depth, group
    ) -> None:
        """The secret is registered; the URL password is not: neither is shown, the result is
        one line, and it names the outermost error (or the group's first)."""
        _secrets(secret)
        inner: BaseException = ConnectionError(
            f"{before}{secret}{after} at http://u:{password}@h/x {before * 10}"
        )
        for i in range(depth):
            try:
                raise _Wrapper(f"{after}{secret[: i + 4]}") from inner
            except _Wrapper as exc:
                inner = exc
        if group:
            inner = ExceptionGroup("several", [inner])
        shown = describe_error(inner)
        assert secret not in shown
        assert password not in shown
        assert "\n" not in shown
        assert shown.startswith(("ConnectionError", "_Wrapper"))

    @FUZZ
    @given(st.integers(0, 400), RAW_MARKED)
    def test_a_cut_inside_a_url_does_not_show_its_password(self, pad, password) -> None:
        """The message is cut to a length after the password has been taken out, not before."""
        shown = describe_error(RuntimeError("x" * pad + f" http://u:{password}@h/"))
        assert password[:4] not in shown
        assert len(shown) <= len("RuntimeError: ") + 200

    def test_the_operating_systems_words_stand_for_the_wrappers(self) -> None:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as exc:
                raise _Wrapper("HTTPConnectionPool(host='h'): Max retries exceeded") from exc
        except _Wrapper as exc:
            assert "_Wrapper: Connection refused" == describe_error(exc)

    def test_an_os_error_keeps_its_own_words_and_file(self, tmp_path: Path) -> None:
        try:
            (tmp_path / "missing.json").read_text()
        except OSError as exc:
            shown = describe_error(exc)
        assert (
            f"FileNotFoundError: [Errno 2] No such file or directory: '{tmp_path}/missing.json'"
            == shown
        )

    def test_limit(self) -> None:
        assert "RuntimeError: xxxxxxx..." == describe_error(RuntimeError("x" * 50), limit=10)
        assert "RuntimeError: " + "x" * 500 == describe_error(RuntimeError("x" * 500), limit=None)

    def test_a_chain_that_loops_ends(self) -> None:
        a, b = ValueError("a"), ValueError("b")
        a.__context__, b.__context__ = b, a
        assert "ValueError: a" == describe_error(a)


class TestWriteJsonAtomic:
    @settings(max_examples=50, deadline=None)
    @given(
        st.dictionaries(
            st.text(max_size=8),
            st.recursive(
                st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                lambda inner: st.lists(inner, max_size=3),
                max_leaves=5,
            ),
            max_size=5,
        )
    )
    def test_writes_the_data_whole(self, tmp_path_factory, data) -> None:
        folder = tmp_path_factory.mktemp("w")
        path = write_json_atomic(folder / "out.json", data)
        assert data == json.loads(path.read_text(encoding="utf-8"))
        assert ["out.json"] == sorted(p.name for p in folder.iterdir())

    def test_a_failed_write_leaves_no_tmp_and_the_old_file(self, tmp_path: Path) -> None:
        """The rename fails (the name is taken by a folder): one-line error, nothing left."""
        (tmp_path / "out.json").mkdir()
        (tmp_path / "keep.json").write_text("{}")
        with pytest.raises(ArtifactWriteError) as raised:
            write_json_atomic(tmp_path / "out.json", {"a": 1})
        assert str(tmp_path / "out.json") in str(raised.value)
        assert "\n" not in str(raised.value)
        assert ["keep.json", "out.json"] == sorted(p.name for p in tmp_path.iterdir())

    def test_no_folder_is_one_line(self, tmp_path: Path) -> None:
        with pytest.raises(ArtifactWriteError, match="No such file or directory"):
            write_json_atomic(tmp_path / "missing" / "out.json", {"a": 1})


def test_the_package_exports_the_same_helpers() -> None:
    """Plugins import from ``aiperf``; it is the one module, not a second copy."""
    for name in urls.__all__:
        assert getattr(urls, name) is getattr(aiperf, name), name
