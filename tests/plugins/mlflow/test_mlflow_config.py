"""The MLflow flags: what turns the integration on, and one clear line for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiperf import UsageError
from aiperf_mlflow.config import (
    DEFAULT_EXPERIMENT,
    from_options,
    normalize_tracking_uri,
    parse_tag,
    parse_tags,
)
from hypothesis import given
from hypothesis import strategies as st
from support.plugin_flags import profile_config


class TestFromOptions:
    def test_from_options_without_flags_is_off(self) -> None:
        """No MLflow flag: the integration stays off, even with MLFLOW_TRACKING_URI set."""
        assert from_options({}, environ={"MLFLOW_TRACKING_URI": "http://h:5000"}) is None

    def test_from_options_reads_every_flag(self) -> None:
        """Each flag lands in its field."""
        config = from_options(
            {
                "mlflow_tracking_uri": "http://localhost:5000/",
                "mlflow_experiment": "my-experiment",
                "mlflow_run_name": "c4",
                "mlflow_tags": ["team=ml", "gpu:h100"],
                "mlflow_parent_run_id": "abc123def456",
            },
            environ={},
        )
        assert config is not None
        assert "http://localhost:5000" == config.tracking_uri
        assert "my-experiment" == config.experiment_name
        assert "c4" == config.run_name
        assert (("team", "ml"), ("gpu", "h100")) == config.tags
        assert "abc123def456" == config.parent_run_id
        assert config.is_server

    def test_from_options_experiment_from_environment(self) -> None:
        """MLFLOW_EXPERIMENT_NAME names the experiment when the flag does not."""
        config = from_options(
            {"mlflow_tracking_uri": "http://h:5000"}, environ={"MLFLOW_EXPERIMENT_NAME": "from-env"}
        )
        assert config is not None
        assert "from-env" == config.experiment_name

    def test_from_options_experiment_defaults_to_none(self) -> None:
        """Without any name the session decides (the parent's experiment, or the default)."""
        config = from_options({"mlflow_tracking_uri": "http://h:5000"}, environ={})
        assert config is not None
        assert config.experiment_name is None
        assert "aiperf" == DEFAULT_EXPERIMENT

    def test_from_options_other_flag_uses_tracking_uri_variable(self) -> None:
        """--mlflow-experiment alone logs where MLFLOW_TRACKING_URI points."""
        config = from_options(
            {"mlflow_experiment": "e"}, environ={"MLFLOW_TRACKING_URI": "http://tracker:5000"}
        )
        assert config is not None
        assert "http://tracker:5000" == config.tracking_uri

    def test_from_options_other_flag_without_any_uri_is_an_error(self) -> None:
        """A run name with nowhere to log names the flag that is missing."""
        with pytest.raises(UsageError) as info:
            from_options({"mlflow_run_name": "x"}, environ={})
        assert str(info.value).startswith("--mlflow-run-name: needs --mlflow-tracking-uri")

    @pytest.mark.parametrize(
        ("dest", "value", "expected"),
        [
            ("mlflow_experiment", "  ", "--mlflow-experiment: must not be empty"),
            ("mlflow_run_name", "", "--mlflow-run-name: must not be empty"),
            (
                "mlflow_parent_run_id",
                "not a run id",
                (
                    "--mlflow-parent-run-id: expected a run id such as 0a1b2c3d4e5f... "
                    "(got 'not a run id')"
                ),
            ),
        ],
    )
    def test_from_options_bad_value_names_flag(self, dest: str, value: str, expected: str) -> None:
        """A bad value is one line naming the flag and what was seen."""
        with pytest.raises(UsageError) as info:
            from_options({"mlflow_tracking_uri": "http://h:5000", dest: value}, environ={})
        assert expected == str(info.value)

    def test_display_uri_has_no_userinfo(self) -> None:
        """The URI for logs and files loses user:password@, the client keeps it."""
        config = from_options({"mlflow_tracking_uri": "https://bob:s3cret@mlflow.example:443"}, {})
        assert config is not None
        assert "https://mlflow.example:443" == config.display_uri
        assert "s3cret" in config.tracking_uri
        assert "s3cret" not in repr(config)


class TestTrackingUri:
    def test_file_uri_becomes_absolute(self, tmp_path: Path) -> None:
        """file:./mlruns is resolved against the working directory (a later plot finds it)."""
        assert (tmp_path / "mlruns").as_uri() == normalize_tracking_uri("file:./mlruns", tmp_path)

    def test_bare_path_is_a_file_store(self, tmp_path: Path) -> None:
        """A directory is a file store."""
        assert (tmp_path / "runs").as_uri() == normalize_tracking_uri("runs", tmp_path)

    def test_relative_sqlite_becomes_absolute(self, tmp_path: Path) -> None:
        """sqlite:///mlflow.db (relative) gets an absolute path (four slashes)."""
        assert f"sqlite:///{tmp_path / 'mlflow.db'}" == normalize_tracking_uri(
            "sqlite:///mlflow.db", tmp_path
        )

    def test_absolute_sqlite_is_kept(self) -> None:
        """An absolute sqlite URI is used as given."""
        assert "sqlite:////data/mlflow.db" == normalize_tracking_uri("sqlite:////data/mlflow.db")

    def test_database_schemes_pass_through(self) -> None:
        """Other stores MLflow knows are the client's business."""
        uri = "postgresql+psycopg2://db:5432/mlflow"
        assert uri == normalize_tracking_uri(uri)

    @pytest.mark.parametrize(
        "uri", ["", "http://", "ftp://host/x", "sqlite://", "http://host:99999", "file://remote/x"]
    )
    def test_bad_uri_is_one_line(self, uri: str) -> None:
        """What cannot be a tracking URI says what is expected."""
        with pytest.raises(UsageError) as info:
            normalize_tracking_uri(uri)
        message = str(info.value)
        assert message.startswith("--mlflow-tracking-uri: expected http(s)://HOST[:PORT]")
        assert "\n" not in message

    def test_bad_uri_error_hides_password(self) -> None:
        """Even a rejected URI is echoed without its credentials."""
        with pytest.raises(UsageError) as info:
            normalize_tracking_uri("ftp://bob:s3cret@host/x")
        assert "s3cret" not in str(info.value)


class TestTags:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("team=ml", ("team", "ml")),
            ("team:ml", ("team", "ml")),
            ("url=http://h:1", ("url", "http://h:1")),
            ("note:a=b", ("note", "a=b")),
            ("empty=", ("empty", "")),
            (" spaced = out ", ("spaced", "out")),
        ],
    )
    def test_parse_tag_first_separator_splits(self, text: str, expected: tuple[str, str]) -> None:
        """key=value and key:value both work; the first separator splits."""
        assert expected == parse_tag(text)

    @pytest.mark.parametrize("text", ["novalue", "=x", ":x", "bad*key=1"])
    def test_parse_tag_rejects(self, text: str) -> None:
        """Without a key, or with a key MLflow would refuse, the flag says so."""
        with pytest.raises(UsageError) as info:
            parse_tag(text)
        assert str(info.value).startswith("--mlflow-tag: ")

    def test_parse_tags_last_value_wins(self) -> None:
        """A repeated key keeps the last value (as a dict would)."""
        assert (("a", "2"), ("b", "1")) == parse_tags(["a=1", "b=1", "a=2"])

    def test_parse_tags_accepts_one_string(self) -> None:
        """A config file may give a single tag as a string."""
        assert (("a", "1"),) == parse_tags("a=1")

    @given(
        key=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,30}", fullmatch=True),
        value=st.text(max_size=40).filter(lambda v: v == v.strip()),
        sep=st.sampled_from("=:"),
    )
    def test_parse_tag_round_trip(self, key: str, value: str, sep: str) -> None:
        """Any valid key and value come back as written, whichever separator."""
        assert (key, value) == parse_tag(f"{key}{sep}{value}")


@pytest.mark.usefixtures("clean_mlflow_env")
class TestSources:
    """Through the CLI: flag > MLFLOW_EXPERIMENT_NAME > ``[plugins.mlflow]`` > default."""

    @pytest.mark.parametrize(
        ("flag", "env", "file", "expected"),
        [
            ("from-flag", "from-env", "from-file", "from-flag"),
            (None, "from-env", "from-file", "from-env"),
            (None, None, "from-file", "from-file"),
            (None, None, None, None),
        ],
    )
    def test_flag_beats_environment_beats_file(
        self, flag: str | None, env: str | None, file: str | None, expected: str | None,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        path = tmp_path / "run.toml"
        table = f'mlflow-experiment = "{file}"\n' if file is not None else ""
        path.write_text(f'model = "m"\n[plugins.mlflow]\nmlflow-tracking-uri = "http://h:5000"\n{table}')
        args = ["--config", str(path)]
        if env is not None:
            monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", env)
        if flag is not None:
            args += ["--mlflow-experiment", flag]
        code, err, config = profile_config(*args)
        assert (0, "") == (code, err)
        mlflow = from_options(config)
        assert mlflow is not None
        assert expected == mlflow.experiment_name

    def test_experiment_variable_alone_turns_nothing_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "e")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://h:5000")
        code, err, config = profile_config("-m", "m")
        assert (0, "") == (code, err)
        assert from_options(config) is None

    def test_every_bad_flag_is_one_line(self) -> None:
        code, err, _ = profile_config(
            "-m", "m", "--mlflow-tracking-uri", "ftp://x", "--mlflow-parent-run-id", "no such id",
            "--mlflow-upload-timeout", "-1",
        )  # fmt: skip
        assert 2 == code
        assert [
            "aiperf: error: --mlflow-tracking-uri: expected http(s)://HOST[:PORT], file:DIR, "
            "sqlite:///FILE or a directory (got 'ftp://x')",
            "aiperf: error: --mlflow-parent-run-id: expected a run id such as 0a1b2c3d4e5f... "
            "(got 'no such id')",
            "aiperf: error: --mlflow-upload-timeout: expected seconds > 0 (got '-1')",
        ] == err.splitlines()
