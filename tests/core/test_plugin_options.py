"""Plugin options: one attrs class per plugin, built from flags, environment and config file."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
import pytest
from aiperf import (
    PluginOptions,
    ProfileConfig,
    UsageError,
    cli,
    given_options,
    hookimpl,
    option,
    read_options,
)
from aiperf._plugins import Plugins, set_current


def _level(value: Any) -> int:
    number = int(value)
    if not 1 <= number <= 5:
        raise UsageError(f"--demo-level: must be between 1 and 5 (got {number})")
    return number


def _name(value: Any) -> str:
    if not str(value).strip():
        raise ValueError("must not be empty")
    return str(value)


@attrs.frozen(kw_only=True)
class DemoOptions:
    level: int = option(
        "--demo-level", env="AIPERF_DEMO_LEVEL", default=1, parse=_level, help="how much"
    )
    name: str | None = option(
        "--demo-name", metavar="NAME", parse=lambda v: _name(v), help="what to call it"
    )
    loud: bool = option("--demo-loud", action="store_true", help="shout")
    tags: tuple[str, ...] = option(
        "--demo-tag", dest="demo_tags", action="append", default=(), parse=tuple
    )


@attrs.frozen(kw_only=True)
class OtherOptions:
    ratio: float = option("--other-ratio", default=0.5)


def _check_demo(options: DemoOptions, given: frozenset[str]) -> None:
    if "loud" in given and "name" not in given:
        raise UsageError("--demo-loud: needs --demo-name")


def _plugin(spec: PluginOptions) -> object:
    class Plugin:
        @hookimpl
        def aiperf_register_options(self, register: Any) -> None:
            register(spec)

    return Plugin()


DEMO = PluginOptions(name="demo", options=DemoOptions, title="Demo", check=_check_demo)
OTHER = PluginOptions(name="other", options=OtherOptions, title="Other")


def _profile(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, ProfileConfig | None]:
    """``aiperf profile ARGS`` with the two plugins above and no run: exit code, stderr, config."""
    plugins = Plugins.load(
        entry_points=False, extra=[("demo", _plugin(DEMO)), ("other", _plugin(OTHER))]
    )
    monkeypatch.setattr(Plugins, "load", classmethod(lambda cls, **_: plugins))
    seen: list[ProfileConfig] = []

    def fake_run(config: ProfileConfig, plugins: Any, argv: Any) -> int:
        seen.append(config)
        return 0

    err = io.StringIO()
    try:
        with mock.patch("aiperf._profile.run_profile", fake_run), contextlib.redirect_stderr(err):
            code = cli.main(["profile", "-m", "m", *args])
    finally:
        set_current(None)
    return code, err.getvalue(), (seen[0] if seen else None)


@pytest.fixture(autouse=True)
def _no_demo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIPERF_DEMO_LEVEL", raising=False)


class TestSources:
    def test_defaults_when_nothing_is_given(self, monkeypatch: pytest.MonkeyPatch) -> None:
        code, err, config = _profile([], monkeypatch)
        assert (0, "") == (code, err)
        assert DemoOptions() == read_options(DemoOptions, config)
        assert frozenset() == given_options(DemoOptions, config)

    def test_flags_are_parsed_into_the_class(self, monkeypatch: pytest.MonkeyPatch) -> None:
        code, err, config = _profile(
            [
                "--demo-level",
                "3",
                "--demo-name",
                "x",
                "--demo-loud",
                "--demo-tag",
                "a",
                "--demo-tag",
                "b",
            ],
            monkeypatch,
        )
        assert (0, "") == (code, err)
        assert DemoOptions(level=3, name="x", loud=True, tags=("a", "b")) == read_options(
            DemoOptions, config
        )
        assert {"level", "name", "loud", "tags"} == given_options(DemoOptions, config)

    def test_plugin_table_of_the_config_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """[plugins.demo] takes the flags' names (or the fields'), - or _ alike."""
        path = tmp_path / "run.toml"
        path.write_text(
            '[plugins.demo]\ndemo-level = 4\nname = "from-file"\n\n[plugins.other]\nother_ratio = 0.25\n'
        )
        code, err, config = _profile(["--config", str(path)], monkeypatch)
        assert (0, "") == (code, err)
        assert (4, "from-file") == attrs.astuple(read_options(DemoOptions, config))[:2]
        assert 0.25 == read_options(OtherOptions, config).ratio

    def test_environment_variable_when_the_flag_is_absent(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AIPERF_DEMO_LEVEL", "2")
        code, err, config = _profile([], monkeypatch)
        assert (0, "") == (code, err)
        assert 2 == read_options(DemoOptions, config).level
        # The variable does not count as given: a plugin can tell it from a flag.
        assert "level" not in given_options(DemoOptions, config)

    @pytest.mark.parametrize(
        ("flag", "env", "file", "expected"),
        [
            ("5", "3", "4", 5),  # the flag beats the variable and the file
            (None, "3", "4", 3),  # the variable beats the file
            (None, None, "4", 4),  # the file beats the default
            (None, None, None, 1),  # the default
        ],
    )
    def test_flag_beats_environment_beats_file(
        self, flag: str | None, env: str | None, file: str | None, expected: int,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        args: list[str] = []
        if file is not None:
            path = tmp_path / "run.toml"
            path.write_text(f"[plugins.demo]\ndemo-level = {file}\n")
            args += ["--config", str(path)]
        if env is not None:
            monkeypatch.setenv("AIPERF_DEMO_LEVEL", env)
        if flag is not None:
            args += ["--demo-level", flag]
        code, err, config = _profile(args, monkeypatch)
        assert (0, "") == (code, err)
        assert expected == read_options(DemoOptions, config).level


class TestProblems:
    def test_three_bad_values_in_two_plugins_are_three_lines(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        code, err, config = _profile(
            ["--demo-level", "9", "--demo-name", " ", "--other-ratio", "half"], monkeypatch
        )
        assert (2, None) == (code, config)
        assert [
            "aiperf: error: --demo-level: must be between 1 and 5 (got 9)",
            "aiperf: error: --demo-name: must not be empty",
            "aiperf: error: --other-ratio: expected a number (got 'half')",
        ] == err.splitlines()
        assert "Traceback" not in err

    def test_core_problems_come_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        code, err, _ = _profile(["--demo-level", "9", "--concurrency", "0"], monkeypatch)
        assert 2 == code
        assert [
            "aiperf: error: --concurrency: must be > 0 (got 0)",
            "aiperf: error: --demo-level: must be between 1 and 5 (got 9)",
        ] == err.splitlines()

    def test_every_bad_core_value_is_a_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        code, err, _ = _profile(
            ["--concurrency", "0", "--request-timeout-seconds", "-1", "--workers", "5000"],
            monkeypatch,
        )
        assert 2 == code
        assert [
            "aiperf: error: --concurrency: must be > 0 (got 0)",
            "aiperf: error: --request-timeout-seconds: must be > 0 (got -1.0)",
            "aiperf: error: --workers: must be <= 1024 (got 5000)",
        ] == err.splitlines()
        path = tmp_path / "run.toml"
        path.write_text('request_timeout_seconds = "soon"\nwarmup_request_count = -3\n')
        code, err, _ = _profile(["--config", str(path)], monkeypatch)
        assert 2 == code
        assert [
            "aiperf: error: --request-timeout-seconds: invalid value for type, expected float",
            "aiperf: error: --warmup-request-count: must be >= 0 (got -3)",
        ] == err.splitlines()

    def test_a_check_across_fields_names_the_flag(self, monkeypatch: pytest.MonkeyPatch) -> None:
        code, err, _ = _profile(["--demo-loud"], monkeypatch)
        assert (2, "aiperf: error: --demo-loud: needs --demo-name\n") == (code, err)

    def test_a_bad_variable_names_flag_and_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AIPERF_DEMO_LEVEL", "7")
        code, err, _ = _profile([], monkeypatch)
        assert (
            2,
            "aiperf: error: --demo-level (from AIPERF_DEMO_LEVEL): must be between 1 and 5 (got 7)\n",
        ) == (
            code,
            err,
        )

    def test_a_bad_file_value_names_the_flag(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "run.toml"
        path.write_text('[plugins.demo]\ndemo-level = 0\n[plugins.other]\nratio = "x"\n')
        code, err, _ = _profile(["--config", str(path)], monkeypatch)
        assert 2 == code
        assert [
            "aiperf: error: --demo-level: must be between 1 and 5 (got 0)",
            "aiperf: error: --other-ratio: expected a number (got 'x')",
        ] == err.splitlines()

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[plugins.nope]\nx = 1\n", "--config: unknown table [plugins.nope] in"),
            ("[plugins.demo]\nlevell = 1\n", "--config: unknown key 'plugins.demo.levell' in"),
        ],
    )
    def test_unknown_table_or_key(
        self, text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "run.toml"
        path.write_text(text)
        code, err, _ = _profile(["--config", str(path)], monkeypatch)
        assert 2 == code
        assert 1 == len(err.splitlines())
        assert err.startswith(f"aiperf: error: {message}")


class TestFlags:
    def test_help_shows_each_plugin_group_and_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit):
            _profile(["--help"], monkeypatch)
        out = capsys.readouterr().out
        assert "Demo:" in out and "Other:" in out
        assert "[env: AIPERF_DEMO_LEVEL]" in out

    def test_read_options_takes_a_mapping_too(self) -> None:
        assert 3 == read_options(DemoOptions, {"demo_level": "3"}, environ={}).level
        assert 2 == read_options(DemoOptions, {}, environ={"AIPERF_DEMO_LEVEL": "2"}).level
