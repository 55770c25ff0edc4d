"""The plugin host: discovery through entry points, isolation of failures, registries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiperf import hookimpl
from aiperf._endpoints import CHAT
from aiperf._plugins import PluginError, Plugins
from support.fake_plugins import install_fake_distribution

PLUGIN_CODE = '''
from aiperf import hookimpl

@hookimpl
def aiperf_add_options(command, parser):
    if command == "profile":
        group = parser.add_argument_group("throwaway")
        group.add_argument("--throwaway-out", help="where the throwaway sink writes")

@hookimpl
def aiperf_register_record_processors(register):
    class Doubler:
        name = "doubler"
        order = 10
        def process(self, record, values, run):
            values["throwaway_doubled_isl"] = 2 * values["input_sequence_length"]
    register(Doubler())

@hookimpl
def aiperf_live_sinks(config, run):
    out = config.plugin_options.get("throwaway_out")
    if not out:
        return None
    import json

    class Sink:
        name = "throwaway"
        def __init__(self):
            self.done = 0
        async def open(self, run):
            pass
        async def run(self, events):
            async for event in events:
                if type(event).__name__ == "RequestDone":
                    self.done += 1
        async def close(self, status):
            with open(out, "w") as fh:
                json.dump({"done": self.done, "status": str(status)}, fh)
        def report(self):
            return None
    return [Sink()]
'''


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-throwaway", "aiperf_throwaway_plugin", PLUGIN_CODE)
    install_fake_distribution(site, "aiperf-broken", "aiperf_broken_plugin", "raise ImportError('no such thing')\n")
    return site


@pytest.mark.integration
class TestDiscovery:
    def test_plugins_command_lists_installed_plugin_with_version_and_hooks(self, aiperf_cli, plugin_site) -> None:
        """`aiperf plugins` shows the throwaway plugin, its version and hooks, and the broken one."""
        result = aiperf_cli("plugins", env={"PYTHONPATH": str(plugin_site)})
        assert 0 == result.returncode, result.stderr
        assert "throwaway  aiperf-throwaway 0.0.1" in result.stdout
        assert "    aiperf_live_sinks" in result.stdout
        assert "broken  FAILED TO LOAD: ImportError: no such thing" in result.stdout
        assert "plugin_failed_to_load" in result.stderr and "broken" in result.stderr

    def test_disabled_plugin_is_not_loaded(self, aiperf_cli, plugin_site) -> None:
        """AIPERF_DISABLE_PLUGINS blocks a plugin by name."""
        env = {"PYTHONPATH": str(plugin_site), "AIPERF_DISABLE_PLUGINS": "throwaway,broken"}
        result = aiperf_cli("plugins", env=env)
        assert "throwaway  " not in result.stdout
        assert "disabled by AIPERF_DISABLE_PLUGINS: broken, throwaway" in result.stdout
        assert "" == result.stderr

    def test_discovered_plugin_is_used_in_a_run(self, aiperf_cli, plugin_site, mock_server, tmp_path) -> None:
        """Its flag is accepted, its processor adds a metric, its sink sees every request."""
        out = tmp_path / "sink.json"
        result = aiperf_cli(
            "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "7",
            "--synthetic-input-tokens-mean", "12", "--throwaway-out", str(out),
            "--artifact-dir", str(tmp_path / "run"),
            env={"PYTHONPATH": str(plugin_site)},
        )
        assert 0 == result.returncode, result.stderr
        assert {"done": 7, "status": "FINISHED"} == json.loads(out.read_text())
        lines = (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()
        assert [24] * 7 == [json.loads(line)["metrics"]["throwaway_doubled_isl"] for line in lines]


class _Dup:
    @hookimpl
    def aiperf_register_endpoints(self, register):
        register(CHAT)


class _Raises:
    @hookimpl
    def aiperf_register_load_strategies(self, register):
        raise RuntimeError("kaboom")


class _Misspelled:
    @hookimpl
    def aiperf_live_sink(self, config, run):  # the real hook is aiperf_live_sinks
        return None


class TestRegistries:
    def test_duplicate_name_names_both_plugins(self) -> None:
        """Two plugins registering 'chat': the error says which two."""
        plugins = Plugins.load(entry_points=False, extra=[("dupe", _Dup())])
        with pytest.raises(PluginError, match="'chat' is registered by both plugin 'builtin' and plugin 'dupe'"):
            plugins.endpoints()

    def test_failing_hook_names_the_plugin(self) -> None:
        """An exception inside a plugin's hook is reported with the plugin's name."""
        plugins = Plugins.load(entry_points=False, extra=[("raiser", _Raises())])
        with pytest.raises(PluginError, match="plugin 'raiser' failed in aiperf_register_load_strategies: RuntimeError: kaboom"):
            plugins.load_strategies()

    def test_misspelled_hook_caught_at_load(self) -> None:
        """check_pending() rejects an implementation of a hook that does not exist."""
        with pytest.raises(PluginError, match="misspelled"):
            Plugins.load(entry_points=False, extra=[("misspelled", _Misspelled())])

    def test_builtins_registered_through_hooks(self) -> None:
        """Endpoints, strategies, datasets, processors and exporters come from the built-in plugin."""
        plugins = Plugins.load(entry_points=False)
        assert {"chat", "completions", "embeddings"} == set(plugins.endpoints())
        assert {"concurrency", "constant", "poisson"} == set(plugins.load_strategies())
        assert {"synthetic", "input_file"} == set(plugins.datasets())
        assert ["timing"] == [p.name for p in plugins.record_processors()]
        assert {"mock-server"} <= set(plugins.commands())
