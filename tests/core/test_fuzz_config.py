"""Hypothesis against the config parser and the command line: whatever the user types, the
answer is a config or one :class:`aiperf.UsageError` line, never an internal error, and never
a credential echoed back."""

from __future__ import annotations

import contextlib
import io
import math
import tomllib
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiperf import _redact, cli
from aiperf._config import (
    ProfileConfig,
    build_config,
    load_config_file,
    normalize_url,
    parse_extra_inputs,
    parse_goodput,
    parse_header,
    parse_headers,
)
from aiperf._types import UsageError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None)
SECRET = "s3cr3t-Fz9"

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
NUMBERISH = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e3", "0x10", "", " ", "1_000", "٣"]),
)
ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)


def assert_sane(config: ProfileConfig) -> None:
    """What an accepted config promises the engine: finite numbers in range, an http(s) URL."""
    assert isinstance(config, ProfileConfig)
    for name in ("concurrency", "request_rate", "request_count", "benchmark_duration",
                 "request_timeout_seconds", "synthetic_input_tokens_mean", "output_tokens_mean"):  # fmt: skip
        value = getattr(config, name)
        assert value is None or (math.isfinite(value) and value > 0), (name, value)
    for name in ("benchmark_grace_period", "warmup_request_count", "wait_for_model_timeout"):
        value = getattr(config, name)
        assert math.isfinite(value) and value >= 0, (name, value)
    assert all(math.isfinite(v) and v > 0 for v in config.goodput.values())
    assert config.url.startswith(("http://", "https://"))


def usage_or(fn: Any, *args: Any) -> Any:
    """Call ``fn``; a UsageError is a fine answer (returned), anything else fails the test.
    Its message is one line per problem, each naming a flag (or the config file)."""
    try:
        return fn(*args)
    except UsageError as exc:
        lines = str(exc).split("\n")
        assert all(line.strip() for line in lines), str(exc)
        assert len(lines) == 1 or all(line.startswith(("--", "config:")) for line in lines), str(exc)
        return exc


class TestValueParsers:
    @FUZZ
    @given(items=st.lists(st.one_of(TEXT, ANY_VALUE, ANY_VALUE.map(lambda v: __import__("json").dumps(v))), max_size=3))
    def test_fuzz_headers_any_form_is_string_pairs_or_usage_error(self, items: list[Any]) -> None:
        """-H in any form (text, JSON text, a table, pairs, junk): string pairs or one line."""
        out = usage_or(parse_headers, items)
        if not isinstance(out, UsageError):
            assert all(isinstance(n, str) and isinstance(v, str) for n, v in out)

    @FUZZ
    @given(
        model=TEXT,
        header=st.tuples(st.sampled_from(["X-A", "Authorization", "X-Api-Key"]), TEXT),
        with_key=st.booleans(),
    )
    def test_fuzz_model_and_header_values_never_carry_control_or_non_ascii(
        self, model: str, header: tuple[str, str], with_key: bool
    ) -> None:
        """An accepted config has no control character in --model and only printable ASCII in
        header values; a refused one never echoes a credential header's value."""
        import unicodedata

        value = header[1] + SECRET
        api_key = "k-" + SECRET[::-1] if with_key else None
        out = usage_or(lambda: ProfileConfig(model=model, headers=((header[0], value),), api_key=api_key))
        if isinstance(out, UsageError):
            if header[0] != "X-A":
                assert SECRET not in str(out)
            return
        assert not any(unicodedata.category(c) == "Cc" for c in out.model)
        assert all(v.isascii() and v.isprintable() for _, v in out.headers)
        assert not (with_key and header[0] == "Authorization")

    @FUZZ
    @given(text=TEXT)
    def test_fuzz_header_is_name_value_or_usage_error(self, text: str) -> None:
        """--header: a clean (name, value) pair or one line."""
        out = usage_or(parse_header, text)
        if not isinstance(out, UsageError):
            head, _, tail = text.partition(":")
            assert (head.strip(), tail.strip()) == out
            assert out[0] and not any(c.isspace() for c in out[0])

    @FUZZ
    @given(name=st.sampled_from(["Authorization", "X-Api-Key", "Cookie", "X-Auth-Token"]), junk=TEXT)
    def test_fuzz_header_error_never_echoes_a_credential(self, name: str, junk: str) -> None:
        """A broken credential header is reported without its value."""
        out = usage_or(parse_header, f"{name} {SECRET}{junk}")
        if isinstance(out, UsageError):
            assert SECRET not in str(out)

    @FUZZ
    @given(items=st.lists(st.one_of(TEXT, st.builds(lambda k, v: f"{k}:{v}", TEXT, TEXT)), max_size=4))
    def test_fuzz_extra_inputs_is_a_dict_or_usage_error(self, items: list[str]) -> None:
        """--extra-inputs: a dict of fields or one line."""
        out = usage_or(parse_extra_inputs, items)
        assert isinstance(out, (dict, UsageError))

    @FUZZ
    @given(
        parts=st.lists(
            st.tuples(st.sampled_from(["time_to_first_token", "inter_token_latency", "bogus", ""]), NUMBERISH),
            max_size=3,
        ),
        sep=st.sampled_from([" ", ",", ", "]),
    )
    def test_fuzz_goodput_bounds_are_finite_and_positive(self, parts: list[tuple[str, str]], sep: str) -> None:
        """--goodput: every bound a finite number > 0, or one line."""
        out = usage_or(parse_goodput, sep.join(f"{tag}:{value}" for tag, value in parts))
        if isinstance(out, dict):
            assert out and all(math.isfinite(v) and v > 0 for v in out.values())

    @FUZZ
    @given(
        scheme=st.sampled_from(["http://", "https://", "ftp://", "", "http:/", "//"]),
        host=st.sampled_from(["127.0.0.1", "localhost", "[::1]", "", "exa mple", "a.b"]),
        port=st.one_of(st.just(""), NUMBERISH.map(lambda p: ":" + p)),
        path=st.sampled_from(["", "/", "/v1", "/v1/chat/completions", "?q=1", "#frag"]),
        userinfo=st.booleans(),
    )
    def test_fuzz_url_normalized_or_one_line_without_password(
        self, scheme: str, host: str, port: str, path: str, userinfo: bool
    ) -> None:
        """--url: an http(s) URL with a host, or one line that never shows the password."""
        url = scheme + (f"user:{SECRET}@" if userinfo else "") + host + port + path
        out = usage_or(normalize_url, url)
        if isinstance(out, UsageError):
            assert SECRET not in str(out)
        else:
            assert out.startswith(("http://", "https://"))


#: every field of ProfileConfig that a config file or flag can set.
FIELDS = [f for f in ProfileConfig.__attrs_attrs__ if f.name != "plugin_options"]  # type: ignore[attr-defined]


class TestBuildConfig:
    @FUZZ
    @given(values=st.dictionaries(st.sampled_from([f.name for f in FIELDS]), ANY_VALUE, max_size=6))
    def test_fuzz_build_config_any_values(self, values: dict[str, Any]) -> None:
        """Any values of any type, for any fields: a config or one line per problem naming a flag."""
        values = {"model": "m", **values}
        out = usage_or(build_config, values)
        if isinstance(out, UsageError):
            assert all(line.startswith(("--", "config:")) for line in str(out).splitlines()), str(out)
        else:
            assert_sane(out)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(document=st.dictionaries(TEXT, ANY_VALUE, max_size=5), nested=st.booleans())
    def test_fuzz_config_file_any_toml(self, tmp_path: Path, document: dict[str, Any], nested: bool) -> None:
        """A TOML config file of any keys and values: a config or one line."""
        path = tmp_path / "run.toml"
        path.write_text(_toml({"load": document} if nested else document), encoding="utf-8")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            pass
        out = usage_or(load_config_file, path, set())
        if isinstance(out, dict):
            usage_or(build_config, {"model": "m", **out})

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=st.text(max_size=200))
    def test_fuzz_config_file_any_text(self, tmp_path: Path, text: str) -> None:
        """Not even TOML: one line naming the file."""
        path = tmp_path / "run.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        out = usage_or(load_config_file, path, set())
        if isinstance(out, UsageError):
            assert "--config" in str(out)


def _toml(document: dict[str, Any]) -> str:
    """A small TOML writer (keys quoted; values JSON-like), good enough to feed the loader."""
    import json

    lines, tables = [], []
    for key, value in document.items():
        quoted = json.dumps(key)
        if isinstance(value, dict):
            tables.append(f"[{quoted}]\n" + _toml(value))
        elif value is not None:
            lines.append(f"{quoted} = {_toml_value(value)}")
    return "\n".join(lines) + "\n" + "\n".join(tables)


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None and not isinstance(v, dict)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    return json.dumps(value)


# -- the whole command line ------------------------------------------------------------------

FLAGS = {
    "--url": st.sampled_from([
        "http://127.0.0.1:9", "localhost:abc", f"http://u:{SECRET}@h:x", "ftp://h", "", "http://[::1",
        f"http://h:1/v1?api-version=2&sig={SECRET}",
    ]),
    "--num-prompts": NUMBERISH,
    "--use-server-token-count": st.just(""),
    "--endpoint-type": st.sampled_from(["chat", "completions", "embeddings", "nope", ""]),
    "--endpoint": st.sampled_from(["/v1/chat/completions", "v1", ""]),
    "--concurrency": NUMBERISH,
    "--request-rate": NUMBERISH,
    "--request-rate-mode": st.sampled_from(["constant", "poisson", "gamma", ""]),
    "--request-count": NUMBERISH,
    "--benchmark-duration": NUMBERISH,
    "--benchmark-grace-period": NUMBERISH,
    "--warmup-request-count": NUMBERISH,
    "--request-timeout-seconds": NUMBERISH,
    "--wait-for-model-timeout": NUMBERISH,
    "--synthetic-input-tokens-mean": NUMBERISH,
    "--output-tokens-mean": NUMBERISH,
    "--header": st.one_of(TEXT, st.just(f"Authorization {SECRET}")),
    "--extra-inputs": TEXT,
    "-H": st.one_of(TEXT, st.just('{"X-A": "b", "X-Api-Key": "' + SECRET + '"}')),
    "--goodput": TEXT,
    "--api-key": st.just(SECRET),
    "--log-format": st.sampled_from(["console", "json", "xml"]),
    "--otel-url": st.sampled_from(["http://127.0.0.1:9", "ftp://x", f"http://u:{SECRET}@h:99999", ""]),
    "--otel-resource-attributes": TEXT,
    "--mlflow-tracking-uri": st.sampled_from(["sqlite:///x.db", "", "ftp://x"]),
    "--mlflow-tag": TEXT,
    "--conversation-num": NUMBERISH,
    "--conversation-turn-mean": NUMBERISH,
    "--conversation-turn-delay-mean": NUMBERISH,
    "--session-header": st.one_of(TEXT, st.just("X-Session-Id")),
    "--custom-dataset-type": st.sampled_from(["multi_turn", "nope", ""]),
    "--arrival-smoothness": NUMBERISH,
    "--request-rate-ramp-duration": NUMBERISH,
    "--concurrency-ramp-duration": NUMBERISH,
    "--request-cancellation-rate": NUMBERISH,
    "--request-cancellation-delay": NUMBERISH,
    "--prefix-prompt-length": NUMBERISH,
    "--num-prefix-prompts": NUMBERISH,
    "--shared-system-prompt-length": NUMBERISH,
}


@st.composite
def argv(draw: Any) -> list[str]:
    args = ["profile", "-m", draw(st.sampled_from(["m", "", " "]))]
    for flag in draw(st.lists(st.sampled_from(sorted(FLAGS)), max_size=5)):
        value = draw(FLAGS[flag])
        args += [f"{flag}={value}"] if draw(st.booleans()) else [flag, value]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(["--bogus", "--streaming", "-v", "--concurrency"])))
    return args


class TestCommandLine:
    @settings(max_examples=60, deadline=None)
    @given(args=argv())
    def test_fuzz_cli_one_line_exit_2_or_a_config(self, args: list[str]) -> None:
        """Any mix of flags and values: exit 0 (config accepted) or 2 with one line per problem,
        no secret."""
        accepted: list[ProfileConfig] = []

        def fake_run(config: ProfileConfig, plugins: Any, argv: Any) -> int:
            from aiperf._profile import resolve

            accepted.append(resolve(config, plugins))
            return 0

        err = io.StringIO()
        # The run itself is replaced: this test is about what happens before any request.
        # Secrets the CLI remembers for its log scrubber stay inside each example.
        with (
            mock.patch("aiperf._profile.run_profile", fake_run),
            mock.patch.object(_redact, "_known", set()),
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            try:
                code = cli.main(args)
            except SystemExit as exc:
                code = exc.code  # type: ignore[assignment]
        stderr = err.getvalue()
        assert "internal error" not in stderr and "Traceback" not in stderr, stderr
        assert SECRET not in stderr
        if code == 0:
            (config,) = accepted
            assert_sane(config)
        else:
            # 1: a first-party plugin's flag without the plugin (core installed alone) says
            # which package to install; any other mistake is a usage error
            missing = any(message in stderr for _, message in cli.FIRST_PARTY.values())
            assert (1 if missing else 2) == code, stderr
            # One line per problem (several bad values are reported together), each an error.
            lines = [line for line in stderr.splitlines() if line.strip()]
            if missing:
                assert 1 == len(lines), stderr
            else:
                assert lines and all(line.startswith("aiperf") and ": error: " in line for line in lines), stderr
                assert len(lines) == len(set(lines)), stderr


@pytest.fixture(autouse=True)
def _quiet_logging() -> Any:
    """cli.main configures logging for the process; put structlog back afterwards."""
    import structlog

    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
