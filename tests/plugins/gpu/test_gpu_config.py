"""The flags of aiperf-gpu: parsing, defaults, and one-line errors."""

from __future__ import annotations

import argparse
import sys

import pytest
from aiperf import ProfileConfig, UsageError
from aiperf_gpu import plugin
from aiperf_gpu.config import (
    DEFAULT_INTERVAL_S,
    MISSING_PACKAGE,
    GpuConfig,
    from_options,
    normalize_dcgm_url,
)
from support.plugin_flags import add_plugin_flags, flags_by_command

EXPECTED = "expected 'nvml' or a DCGM exporter URL such as http://node:9400/metrics"


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_plugin_flags(plugin, "profile", parser)
    return {k: v for k, v in vars(parser.parse_args(list(argv))).items() if v is not None}


class TestFlags:
    def test_flags_are_added_to_profile_only(self) -> None:
        flags = flags_by_command("gpu", plugin)
        assert "--gpu-telemetry" in flags["profile"]
        others = {
            command: {f for f in got if "gpu" in f}
            for command, got in flags.items()
            if command != "profile"
        }
        assert others and not any(others.values())

    def test_default_samples_local_gpus_through_nvml(self) -> None:
        assert GpuConfig(
            nvml=True, nvml_requested=False, interval_s=DEFAULT_INTERVAL_S
        ) == from_options(parse())
        assert DEFAULT_INTERVAL_S < 1.0

    def test_sources_mix_nvml_and_urls(self) -> None:
        config = from_options(
            parse(
                "--gpu-telemetry",
                "nvml",
                "node-a:9400",
                "--gpu-telemetry",
                "http://node-b:9500/m,https://c.example/x",
            )
        )
        assert (True, True) == (config.nvml, config.nvml_requested)
        assert (
            "http://node-a:9400/metrics",
            "http://node-b:9500/m",
            "https://c.example/x",
        ) == config.dcgm_urls

    def test_urls_alone_turn_nvml_off(self) -> None:
        config = from_options(parse("--gpu-telemetry", "http://10.0.0.5:9400/metrics"))
        assert (False, ("http://10.0.0.5:9400/metrics",)) == (config.nvml, config.dcgm_urls)

    def test_interval_and_table(self) -> None:
        config = from_options(parse("--gpu-telemetry-interval", "0.1", "--gpu-telemetry-table"))
        assert (0.1, True) == (config.interval_s, config.table)

    def test_no_gpu_telemetry_turns_it_off(self) -> None:
        assert from_options(parse("--no-gpu-telemetry")) is None

    def test_config_file_values_may_be_a_string(self) -> None:
        """A TOML file gives plain values: a string of sources, an interval as a number."""
        config = from_options({"gpu_telemetry": "nvml, localhost", "gpu_telemetry_interval": 2})
        assert (True, ("http://localhost:9400/metrics",), 2.0) == (
            config.nvml,
            config.dcgm_urls,
            config.interval_s,
        )


class TestUrls:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("node-a:9400", "http://node-a:9400/metrics"),
            ("gpu.node.example", "http://gpu.node.example:9400/metrics"),
            ("localhost", "http://localhost:9400/metrics"),
            ("10.1.2.3", "http://10.1.2.3:9400/metrics"),
            ("http://node:9400", "http://node:9400/metrics"),
            ("http://node/", "http://node/metrics"),
            ("https://proxy.example/dcgm/metrics", "https://proxy.example/dcgm/metrics"),
            ("http://[::1]:9400/metrics", "http://[::1]:9400/metrics"),
        ],
    )
    def test_normalize_dcgm_url(self, given: str, expected: str) -> None:
        assert expected == normalize_dcgm_url(given)


class TestErrors:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (
                {"gpu_telemetry": ["nvlm"]},
                f"--gpu-telemetry: {EXPECTED} (got 'nvlm')",
            ),
            (
                {"gpu_telemetry": ["ftp://node/metrics"]},
                "--gpu-telemetry: expected an http:// or https:// URL (got 'ftp://node/metrics')",
            ),
            (
                {"gpu_telemetry": ["node:99999"]},
                "--gpu-telemetry: the port is not a number between 1 and 65535 (got 'node:99999')",
            ),
            (
                {"gpu_telemetry": [5]},
                f"--gpu-telemetry: {EXPECTED} (got 5)",
            ),
            (
                {"gpu_telemetry_interval": 0},
                "--gpu-telemetry-interval: must be between 0.01 and 60 seconds (got 0)",
            ),
            (
                {"gpu_telemetry_interval": "fast"},
                "--gpu-telemetry-interval: expected seconds (got 'fast')",
            ),
            (
                {"gpu_telemetry_interval": float("nan")},
                "--gpu-telemetry-interval: must be between 0.01 and 60 seconds (got nan)",
            ),
            (
                {"no_gpu_telemetry": True, "gpu_telemetry": ["nvml"]},
                "--no-gpu-telemetry: cannot be combined with --gpu-telemetry",
            ),
            (
                {"no_gpu_telemetry": True, "gpu_telemetry_table": True},
                "--no-gpu-telemetry: cannot be combined with --gpu-telemetry-table",
            ),
        ],
    )
    def test_bad_options_give_one_line(self, options: dict, message: str) -> None:
        with pytest.raises(UsageError) as raised:
            from_options(options)
        assert message == str(raised.value)
        assert 2 == raised.value.exit_code

    def test_errors_never_echo_a_password(self) -> None:
        with pytest.raises(UsageError) as raised:
            from_options({"gpu_telemetry": ["ftp://scraper:hunter2secret@node/metrics"]})
        assert "hunter2secret" not in str(raised.value)
        assert "ftp://node/metrics" in str(raised.value)

    def test_configure_rejects_bad_flags(self) -> None:
        config = ProfileConfig(model="m", plugin_options={"gpu_telemetry_interval": -1})
        with pytest.raises(UsageError, match="^--gpu-telemetry-interval: "):
            plugin.aiperf_configure(config)

    def test_configure_without_nvml_package_names_the_install_command(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Asked for nvml while nvidia-ml-py cannot be imported: the missing-extra line."""
        monkeypatch.setitem(sys.modules, "pynvml", None)
        with pytest.raises(UsageError) as raised:
            plugin.aiperf_configure(
                ProfileConfig(model="m", plugin_options={"gpu_telemetry": ["nvml"]})
            )
        assert MISSING_PACKAGE == str(raised.value)
        assert 'pip install "aiperf[gpu]"' in MISSING_PACKAGE

    def test_configure_without_nvml_package_is_fine_for_dcgm_or_the_default(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", None)
        plugin.aiperf_configure(
            ProfileConfig(model="m", plugin_options={"gpu_telemetry": ["node:9400"]})
        )
        plugin.aiperf_configure(ProfileConfig(model="m"))


class TestHooks:
    def test_samplers_hook_returns_one_sampler_or_none(self, run) -> None:
        (sampler,) = plugin.aiperf_samplers(ProfileConfig(model="m"), run)
        assert "gpu" == sampler.name
        assert (
            plugin.aiperf_samplers(
                ProfileConfig(model="m", plugin_options={"no_gpu_telemetry": True}), run
            )
            is None
        )
