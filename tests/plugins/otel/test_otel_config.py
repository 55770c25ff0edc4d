"""The OTel flags: URL forms, resource attributes, interval and stream, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiperf import UsageError
from aiperf_otel.config import (
    OtelConfig,
    Stream,
    from_options,
    parse_export_interval,
    parse_otel_url,
    parse_resource_attributes,
)
from support.plugin_flags import profile_config


class TestOtelUrl:
    """``--otel-url`` accepts host, host:port or a full URL."""

    @pytest.mark.parametrize(
        ("given", "metrics", "traces", "shown"),
        [
            (
                "localhost",
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318",
            ),
            (
                "localhost:4318",
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318",
            ),
            (
                "http://localhost:4318",
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318",
            ),
            (
                "http://localhost:4318/",
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318",
            ),
            (
                "collector:9999",
                "http://collector:9999/v1/metrics",
                "http://collector:9999/v1/traces",
                "http://collector:9999",
            ),
            (
                "http://collector",
                "http://collector:4318/v1/metrics",
                "http://collector:4318/v1/traces",
                "http://collector:4318",
            ),
            (
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318",
            ),
            (
                "http://localhost:4318/v1/traces",
                "http://localhost:4318/v1/metrics",
                "http://localhost:4318/v1/traces",
                "http://localhost:4318",
            ),
            (
                "https://otlp.example.com/otlp",
                "https://otlp.example.com/otlp/v1/metrics",
                "https://otlp.example.com/otlp/v1/traces",
                "https://otlp.example.com/otlp",
            ),
            (
                "https://otlp.example.com:4318",
                "https://otlp.example.com:4318/v1/metrics",
                "https://otlp.example.com:4318/v1/traces",
                "https://otlp.example.com:4318",
            ),
            (
                "[::1]:4318",
                "http://[::1]:4318/v1/metrics",
                "http://[::1]:4318/v1/traces",
                "http://[::1]:4318",
            ),
            (
                "  127.0.0.1  ",
                "http://127.0.0.1:4318/v1/metrics",
                "http://127.0.0.1:4318/v1/traces",
                "http://127.0.0.1:4318",
            ),
        ],
    )
    def test_parse_otel_url_forms(self, given: str, metrics: str, traces: str, shown: str) -> None:
        """Scheme, port and signal paths are added as needed; a given path is respected."""
        endpoints = parse_otel_url(given)
        assert (metrics, traces, shown) == (
            endpoints.metrics_url,
            endpoints.traces_url,
            endpoints.display_url,
        )

    def test_parse_otel_url_keeps_userinfo_for_export_only(self) -> None:
        """Credentials in the URL reach the exporter but never the displayed URL."""
        endpoints = parse_otel_url("https://user:s3cret@otlp.example.com")
        assert "https://user:s3cret@otlp.example.com/v1/metrics" == endpoints.metrics_url
        assert "https://otlp.example.com" == endpoints.display_url
        assert "s3cret" not in repr(endpoints)

    @pytest.mark.parametrize(
        ("given", "message"),
        [
            (
                "",
                "--otel-url: expected host, host:port or a URL such as http://localhost:4318 (got '')",
            ),
            (
                "ftp://collector",
                "--otel-url: expected an http:// or https:// URL (got 'ftp://collector')",
            ),
            (
                "localhost:99999",
                "--otel-url: the port is not a number between 1 and 65535 (got 'localhost:99999')",
            ),
            (
                "localhost:abc",
                "--otel-url: the port is not a number between 1 and 65535 (got 'localhost:abc')",
            ),
            (
                "http://:4318",
                "--otel-url: expected host, host:port or a URL such as http://localhost:4318 (got 'http://:4318')",
            ),
            (
                "http://localhost:4318?x=1",
                "--otel-url: a collector URL takes no query or fragment (got 'http://localhost:4318?x=1')",
            ),
        ],
    )
    def test_parse_otel_url_rejects_with_one_line(self, given: str, message: str) -> None:
        """Each bad URL is one line naming the flag and what was seen."""
        with pytest.raises(UsageError) as caught:
            parse_otel_url(given)
        assert message == str(caught.value)

    def test_parse_otel_url_error_hides_password(self) -> None:
        """Even a URL too broken to use is shown without its password."""
        with pytest.raises(UsageError) as caught:
            parse_otel_url("ftp://user:s3cret@collector")
        assert "s3cret" not in str(caught.value)
        assert "ftp://collector" in str(caught.value)


class TestResourceAttributes:
    """``--otel-resource-attributes k=v,...`` uses the OTEL_RESOURCE_ATTRIBUTES syntax."""

    def test_parse_resource_attributes_pairs(self) -> None:
        """Pairs are split on commas, trimmed, %-decoded, and later keys win."""
        parsed = parse_resource_attributes(
            ["team=infra, deployment.environment=staging", "team=ml,note=a%2Cb"]
        )
        assert (("team", "ml"), ("deployment.environment", "staging"), ("note", "a,b")) == parsed

    def test_parse_resource_attributes_value_may_contain_equals(self) -> None:
        """Only the first '=' separates key and value."""
        assert (("query", "a=b"),) == parse_resource_attributes("query=a=b")

    @pytest.mark.parametrize("bad", ["team", "=x", "my key=x"])
    def test_parse_resource_attributes_rejects(self, bad: str) -> None:
        """An item without a key=value shape is one line naming the item."""
        with pytest.raises(UsageError) as caught:
            parse_resource_attributes(f"ok=1,{bad}")
        assert f"--otel-resource-attributes: expected 'key=value,...' (got {bad!r})" == str(
            caught.value
        )


class TestOptions:
    """The options dict the CLI hands over becomes one frozen config."""

    def test_from_options_without_url_is_off(self) -> None:
        """No --otel-url, no OTel."""
        assert from_options({"otel_url": None, "otel_stream": None}) is None

    @pytest.mark.parametrize(
        ("dest", "value", "flag"),
        [
            ("otel_stream", "metrics", "--stream"),
            ("otel_resource_attributes", ["a=b"], "--otel-resource-attributes"),
            ("otel_export_interval", "2", "--otel-export-interval"),
        ],
    )
    def test_from_options_other_flags_need_url(self, dest: str, value: object, flag: str) -> None:
        """The --otel-* flags without --otel-url say what is missing."""
        with pytest.raises(UsageError) as caught:
            from_options({dest: value})
        assert f"{flag}: needs --otel-url (where to send the telemetry)" == str(caught.value)

    def test_from_options_defaults(self) -> None:
        """--otel-url alone: default stream, 1 s interval, no extra resource attributes."""
        config = from_options({"otel_url": "localhost"})
        assert isinstance(config, OtelConfig)
        assert (Stream.DEFAULT, 1.0, ()) == (
            config.stream,
            config.export_interval_s,
            config.resource_attributes,
        )

    def test_from_options_all_flags(self) -> None:
        """Values from a config file arrive unconverted and are parsed the same way."""
        config = from_options(
            {
                "otel_url": "collector:4318",
                "otel_stream": "timing",
                "otel_resource_attributes": "a=1",
                "otel_export_interval": 2,
            }
        )
        assert config is not None
        assert (Stream.TIMING, 2.0, (("a", "1"),)) == (
            config.stream,
            config.export_interval_s,
            config.resource_attributes,
        )

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("0", "--otel-export-interval: must be > 0 (got 0)"),
            ("-1", "--otel-export-interval: must be > 0 (got -1)"),
            ("nan", "--otel-export-interval: must be > 0 (got nan)"),
            ("soon", "--otel-export-interval: expected seconds as a number (got 'soon')"),
        ],
    )
    def test_parse_export_interval_rejects(self, value: str, message: str) -> None:
        """The interval must be a positive number of seconds."""
        with pytest.raises(UsageError) as caught:
            parse_export_interval(value)
        assert message == str(caught.value)

    def test_from_options_rejects_unknown_stream(self) -> None:
        """A config file can carry any string; the error lists the choices."""
        with pytest.raises(UsageError) as caught:
            from_options({"otel_url": "localhost", "otel_stream": "all"})
        assert "--stream: expected one of default, metrics, timing (got 'all')" == str(caught.value)

    @pytest.mark.parametrize(
        ("stream", "metrics", "timing"),
        [(Stream.DEFAULT, True, True), (Stream.METRICS, True, False), (Stream.TIMING, False, True)],
    )
    def test_stream_selects_signals(self, stream: Stream, metrics: bool, timing: bool) -> None:
        """default = metrics + timing; the other two are one each."""
        assert (metrics, timing) == (stream.metrics, stream.timing)


class TestConfigFile:
    """The flags through the CLI: a ``[plugins.otel]`` table, and every bad value at once."""

    def test_plugins_otel_table_sets_the_options(self, tmp_path: Path) -> None:
        path = tmp_path / "run.toml"
        path.write_text('model = "m"\n[plugins.otel]\notel-url = "collector:9000"\nstream = "metrics"\n')
        code, err, config = profile_config("--config", str(path))
        assert (0, "") == (code, err)
        otel = from_options(config)
        assert otel is not None
        assert ("http://collector:9000/v1/metrics", Stream.METRICS) == (otel.endpoints.metrics_url, otel.stream)

    def test_a_flag_beats_the_table(self, tmp_path: Path) -> None:
        path = tmp_path / "run.toml"
        path.write_text('[plugins.otel]\notel_url = "collector:9000"\notel-export-interval = 5\n')
        code, err, config = profile_config("-m", "m", "--config", str(path), "--otel-url", "other:1234")
        assert (0, "") == (code, err)
        otel = from_options(config)
        assert otel is not None
        assert ("http://other:1234", 5.0) == (otel.endpoints.display_url, otel.export_interval_s)

    def test_the_table_without_otel_url_names_the_flag(self, tmp_path: Path) -> None:
        path = tmp_path / "run.toml"
        path.write_text('[plugins.otel]\nstream = "timing"\n')
        code, err, _ = profile_config("-m", "m", "--config", str(path))
        assert (2, "aiperf: error: --stream: needs --otel-url (where to send the telemetry)\n") == (code, err)

    def test_three_bad_values_of_the_plugin_and_the_core_are_three_lines(self) -> None:
        """Only the core and this plugin installed (as in its isolation session): the core's
        problems first, then the plugin's, one line each."""
        code, err, config = profile_config(
            "-m", "m", "--otel-url", "ftp://collector", "--otel-export-interval", "0",
            "--request-count", "0",
        )  # fmt: skip
        assert (2, None) == (code, config)
        assert [
            "aiperf: error: --request-count: must be > 0 (got 0)",
            "aiperf: error: --otel-url: expected an http:// or https:// URL (got 'ftp://collector')",
            "aiperf: error: --otel-export-interval: must be > 0 (got 0)",
        ] == err.splitlines()
