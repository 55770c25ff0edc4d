"""The flag forms users already type: JSON and no-space headers, several values after one
flag, several URLs, URLs with a query string; and flags that would change nothing are errors."""

from __future__ import annotations

from typing import Any

import pytest
from aiperf import cli
from aiperf._config import ProfileConfig, build_config, parse_headers, redact_url, redacted_config
from aiperf._endpoints import CHAT
from aiperf._engine import request_urls
from aiperf._plugins import Plugins
from aiperf._redact import redact_argv
from aiperf._types import UsageError


def profile_values(*args: str) -> dict[str, Any]:
    plugins = Plugins.load()
    parser, parsers = cli.build_parser(plugins)
    ns = parser.parse_args(["profile", "-m", "m", *args])
    return cli._profile_values(ns, parsers["profile"])


def config_of(*args: str) -> ProfileConfig:
    return build_config(profile_values(*args))


class TestHeaders:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["-H", "X-A:b"], (("X-A", "b"),)),
            (["-H", "X-A: b"], (("X-A", "b"),)),
            (["-H", '{"X-A": "b", "X-N": 3}'], (("X-A", "b"), ("X-N", "3"))),
            (["-H", '{"X-A": "b"}', "--header", "X-C:d"], (("X-A", "b"), ("X-C", "d"))),
        ],
    )
    def test_header_forms(self, args: list[str], expected: tuple[tuple[str, str], ...]) -> None:
        """Name:Value with or without a space, a JSON object of several, repeated."""
        assert expected == config_of(*args).headers

    def test_header_table_from_a_config_file(self) -> None:
        """A config file's table and [name, value] pairs give the same headers."""
        assert (("X-A", "b"), ("X-C", "d")) == parse_headers([{"X-A": "b"}, ["X-C", "d"]])

    @pytest.mark.parametrize("text", ['{"X-A": ["b"]}', '{"X-A": true}', "[1, 2]", '{"X-A": '])
    def test_header_json_that_is_not_name_to_string(self, text: str) -> None:
        """A JSON header must map names to strings or numbers."""
        with pytest.raises(UsageError, match="--header"):
            parse_headers([text])

    def test_json_header_secret_never_in_the_command_line_record(self) -> None:
        """A credential inside a JSON -H is redacted in metadata's command line."""
        shown = redact_argv(["aiperf", "-H", '{"X-A": "b", "Api-Key": "sekrit-canary"}'])
        assert "sekrit-canary" not in " ".join(shown)
        assert '"X-A": "b"' in shown[2]


class TestExtraInputs:
    def test_several_values_after_one_flag_and_repeated(self) -> None:
        """--extra-inputs a:1 b:x --extra-inputs c:true, values typed as JSON where they parse."""
        config = config_of("--extra-inputs", "a:1", "b:x", "s:[1,2]", "--extra-inputs", "c:true", '{"d": 1.5}')
        assert {"a": 1, "b": "x", "s": [1, 2], "c": True, "d": 1.5} == config.extra_inputs


class TestUrls:
    def test_url_repeated_and_several_after_one_flag(self) -> None:
        """--url A --url B C: three servers, the first is the one labels use."""
        config = config_of("--url", "http://a:1", "--url", "b:2", "http://c:3/v1")
        assert ("http://a:1", "http://b:2", "http://c:3/v1") == config.urls
        assert "http://a:1" == config.url

    def test_single_url_is_the_only_one(self) -> None:
        """One --url (or none) is the list of one."""
        assert ("http://x:5",) == config_of("--url", "http://x:5").urls
        assert ("http://localhost:8000",) == config_of().urls

    def test_query_string_kept_after_the_endpoint_path(self) -> None:
        """http://host/v1?api-version=... -> .../v1/chat/completions?api-version=..."""
        config = config_of("--url", "http://h:1/v1?api-version=2024-02-01", "http://g:2")
        assert [
            "http://h:1/v1/chat/completions?api-version=2024-02-01",
            "http://g:2/v1/chat/completions",
        ] == request_urls(config, CHAT)

    def test_query_values_and_userinfo_never_recorded(self) -> None:
        """Redacted in the config dump and in the command line record."""
        url = "http://u:pw-canary@h:1/v1?api-version=2024-02-01&sig=sig-canary"
        config = config_of("--url", url, "--url", "http://g:2?key=k-canary")
        dumped = str(redacted_config(config)) + " ".join(redact_argv(["aiperf", "--url", url]))
        for canary in ("pw-canary", "sig-canary", "k-canary", "2024-02-01"):
            assert canary not in dumped
        assert "http://h:1/v1?api-version=***&sig=***" == redact_url(url)


class TestFlagsThatWouldDoNothing:
    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["--request-rate-mode", "constant"], "--request-rate-mode: only applies with --request-rate"),
            (["--benchmark-grace-period", "5"], "--benchmark-grace-period: only applies with --benchmark-duration"),
            (["--osl-stddev", "3"], "--output-tokens-stddev: only applies with --output-tokens-mean"),
            (["--input-file", "p.jsonl", "--isl", "100"], "--synthetic-input-tokens-mean: synthetic prompts only"),
            (["--input-file", "p.jsonl", "--num-prompts", "5"], "--num-prompts: synthetic prompts only"),
            (["--input-file", "p.jsonl", "--dataset", "synthetic"], "--input-file: --dataset synthetic does not read it"),
            (["--ca-bundle", "ca.pem"], "--ca-bundle: only used for https:// URLs"),
            (["--goodput", "time_to_first_token:100"], "--goodput: time_to_first_token is measured only with --streaming"),
        ],
    )
    def test_flag_that_changes_nothing_is_an_error(self, args: list[str], needle: str, tmp_path, monkeypatch) -> None:
        """Accepted but not honoured would be a silent no-op: one line instead."""
        monkeypatch.chdir(tmp_path)
        import trustme

        trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        with pytest.raises(UsageError) as caught:
            config_of(*args)
        assert needle in str(caught.value)

    def test_flags_with_what_they_need_are_accepted(self) -> None:
        """The same flags together with what makes them mean something."""
        config = config_of(
            "--request-rate", "5", "--request-rate-mode", "constant", "--benchmark-duration", "2",
            "--benchmark-grace-period", "1", "--osl", "8", "--osl-stddev", "1",
            "--streaming", "--goodput", "time_to_first_token:100",
        )
        assert ("constant", 1.0, 1.0) == (config.request_rate_mode, config.benchmark_grace_period, config.output_tokens_stddev)
