"""The hook implementations: flags, configure checks, the sink factory, and cheap imports."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from aiperf import ProfileConfig, UsageError
from aiperf_otel import plugin
from aiperf_otel.config import MISSING_PACKAGES
from otel_fakes import make_run
from support.plugin_flags import add_plugin_flags, flags_by_command


def _profile_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiperf profile")
    add_plugin_flags(plugin, "profile", parser)
    return parser


class TestOptions:
    """The flags of the seed parse to plugin options."""

    def test_add_options_parses_seed_flags(self) -> None:
        """--otel-url and --stream default as the tutorial writes them."""
        args = _profile_parser().parse_args(
            ["--otel-url", "http://localhost:4318", "--stream", "default"]
        )
        assert ("http://localhost:4318", "default") == (args.otel_url, args.otel_stream)

    def test_add_options_all_flags(self) -> None:
        """Every flag has its own dest; resource attributes may repeat."""
        args = _profile_parser().parse_args(
            [
                "--otel-url",
                "localhost",
                "--stream",
                "timing",
                "--otel-resource-attributes",
                "a=1",
                "--otel-resource-attributes",
                "b=2",
                "--otel-export-interval",
                "0.5",
            ]
        )
        assert ("timing", ["a=1", "b=2"], "0.5") == (
            args.otel_stream,
            args.otel_resource_attributes,
            args.otel_export_interval,
        )

    def test_add_options_defaults_are_none(self) -> None:
        """Without flags nothing is set, so the plugin stays off."""
        args = _profile_parser().parse_args([])
        assert [None] * 4 == [
            args.otel_url,
            args.otel_stream,
            args.otel_resource_attributes,
            args.otel_export_interval,
        ]

    def test_add_options_only_for_profile(self) -> None:
        """Other subcommands get no OTel flags."""
        flags = flags_by_command("otel", plugin)
        ours = {"--otel-url", "--stream", "--otel-resource-attributes", "--otel-export-interval"}
        assert ours <= flags["profile"]
        others = {command: got & ours for command, got in flags.items() if command != "profile"}
        assert others and not any(others.values())


class TestConfigure:
    """aiperf_configure checks the flags and the SDK."""

    def test_configure_off_without_url(self) -> None:
        """Nothing to check when OTel is not asked for."""
        plugin.aiperf_configure(config=ProfileConfig(model="m"))

    def test_configure_bad_flag_is_usage_error(self) -> None:
        """A bad value becomes the one-line usage error."""
        config = ProfileConfig(model="m", plugin_options={"otel_url": "ftp://x"})
        with pytest.raises(UsageError) as caught:
            plugin.aiperf_configure(config=config)
        assert "--otel-url: expected an http:// or https:// URL (got 'ftp://x')" == str(
            caught.value
        )

    @pytest.mark.parametrize(
        "module",
        ["opentelemetry.sdk.metrics", "opentelemetry.exporter.otlp.proto.http.metric_exporter"],
    )
    def test_configure_missing_sdk_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch, module: str
    ) -> None:
        """The plugin installed but the SDK not importable: the seed's install line."""
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
        config = ProfileConfig(model="m", plugin_options={"otel_url": "localhost"})
        with pytest.raises(UsageError) as caught:
            plugin.aiperf_configure(config=config)
        assert (
            (
                "OTel integration requires the 'opentelemetry' packages. "
                'Install with: pip install "aiperf[otel]"'
            )
            == str(caught.value)
            == MISSING_PACKAGES
        )


class TestSinks:
    """aiperf_live_sinks returns one OTel sink when asked for, none otherwise."""

    def test_live_sinks_none_without_url(self, tmp_path: Path) -> None:
        """No --otel-url: no sink."""
        config = ProfileConfig(model="m")
        assert plugin.aiperf_live_sinks(config=config, run=make_run(tmp_path)) is None

    def test_live_sinks_builds_configured_sink(self, tmp_path: Path) -> None:
        """The sink carries the parsed endpoints and stream."""
        config = ProfileConfig(
            model="m", plugin_options={"otel_url": "collector", "otel_stream": "metrics"}
        )
        sinks = plugin.aiperf_live_sinks(config=config, run=make_run(tmp_path))
        assert sinks is not None and 1 == len(sinks)
        sink = sinks[0]
        assert ("otel", "http://collector:4318/v1/metrics", "metrics") == (
            sink.name,
            sink.config.endpoints.metrics_url,
            sink.config.stream.value,
        )


def test_plugin_module_imports_nothing_heavy() -> None:
    """`aiperf --help` imports plugin.py: OpenTelemetry must not load with it."""
    code = (
        "import sys, aiperf_otel.plugin; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'google', 'requests')); "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "[]" == out.stdout.strip()


def test_cli_missing_sdk_is_one_line() -> None:
    """Through the real CLI: the install line, alone, and a non-zero exit (no traceback)."""
    code = (
        "import sys; sys.modules['opentelemetry.sdk.metrics'] = None; "
        "from aiperf.cli import main; "
        "sys.exit(main(['profile', '--model', 'm', '--url', 'http://127.0.0.1:9', '--otel-url', 'localhost']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    lines = out.stderr.strip().splitlines()
    assert 0 != out.returncode
    assert 1 == len(lines), out.stderr
    assert lines[0].endswith(MISSING_PACKAGES)
