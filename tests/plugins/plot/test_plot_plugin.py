"""The hooks: ``plot`` command, ``--plot`` on profile, its exporter, and the CLI as users run it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import aiperf
import aiperf.testing
import pytest
from aiperf_plot import plugin
from aiperf_plot.config import MISSING_EXTRA
from aiperf_plot.exporter import PlotExporter
from support.plugin_flags import add_plugin_flags


def _config(**options):
    return aiperf.ProfileConfig(model="mock", plugin_options=options)


class TestHooks:
    """Hook implementations, called directly."""

    def test_entry_point(self):
        (ep,) = [e for e in metadata.entry_points(group="aiperf") if e.name == "plot"]
        assert "aiperf_plot.plugin" == ep.value

    def test_registers_plot_command(self):
        registered = []
        plugin.aiperf_register_commands(register=registered.append)
        (cmd,) = registered
        assert isinstance(cmd, aiperf.Command)
        assert "plot" == cmd.name
        parser = argparse.ArgumentParser()
        cmd.add_arguments(parser)
        ns = parser.parse_args(["a", "--paths", "b", "c", "--output", "o"])
        assert ([Path("a")], [Path("b"), Path("c")], Path("o")) == (
            ns.path_args,
            ns.paths,
            ns.output,
        )

    def test_plot_flag_only_on_profile(self):
        profile = argparse.ArgumentParser(argument_default=argparse.SUPPRESS)
        other = argparse.ArgumentParser()
        add_plugin_flags(plugin, "profile", profile)
        add_plugin_flags(plugin, "plot", other)
        assert {"plot": True} == vars(profile.parse_args(["--plot"]))
        assert {} == vars(profile.parse_args([]))
        assert {} == vars(other.parse_args([]))

    def test_configure_rejects_plot_without_matplotlib(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        with pytest.raises(aiperf.UsageError) as info:
            plugin.aiperf_configure(config=_config(plot=True))
        assert MISSING_EXTRA == str(info.value)
        plugin.aiperf_configure(config=_config(plot=None))

    def test_exporter_only_with_plot(self):
        assert plugin.aiperf_exporters(config=_config(plot=None), run=None) is None
        (exporter,) = plugin.aiperf_exporters(config=_config(plot=True), run=None)
        assert ("plot", True) == (exporter.name, exporter.order < 100)


def _stats(tag: str, values: list[float]) -> aiperf.MetricStats:
    import numpy as np

    spec = aiperf.METRICS[tag]
    arr = np.asarray(values)
    return aiperf.MetricStats(
        tag=tag,
        header=spec.header,
        unit=spec.unit,
        count=len(values),
        avg=float(arr.mean()),
        min=float(arr.min()),
        max=float(arr.max()),
        std=float(arr.std()),
        percentiles={f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 99)},
    )


class TestExporter:
    """``profile --plot`` draws from the run's result, before the summary file exists."""

    def test_export_draws_into_plots_and_announces(self, make_run, monkeypatch):
        run_dir = make_run(requests=20, concurrency=2)
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]
        (run_dir / "profile_export_aiperf.json").unlink()
        rows = [json.loads(x) for x in (run_dir / "profile_export.jsonl").read_text().splitlines()]
        latencies = [r["metrics"]["request_latency"] for r in rows if r["phase"] == "profile"]
        result = aiperf.RunResult(
            status=aiperf.RunStatus.FINISHED,
            was_cancelled=False,
            metrics={"request_latency": _stats("request_latency", latencies)},
            run_metrics={},
            errors=(),
            start_wall_ns=None,
            end_wall_ns=None,
        )
        config = aiperf.ProfileConfig(model="mock", concurrency=2, plugin_options={"plot": True})
        run = aiperf.testing.make_run(run_dir, config=config)
        calls = []
        monkeypatch.setattr(aiperf, "announce_artifacts", lambda *a: calls.append(a))
        paths = PlotExporter(options=config.plugin_options).export(run, result)
        assert sorted(
            run_dir / "plots" / n
            for n in (
                "itl_over_time.png",
                "request_latency_distribution.png",
                "throughput_over_time.png",
                "ttft_over_time.png",
            )
        ) == sorted(paths)
        assert [(run_dir, paths, {"plot": True})] == [(d, list(p), o) for d, p, o in calls]
        assert summary["request_latency"]["p50"] == pytest.approx(
            result.value("request_latency", "p50")
        )


class TestPluginMetrics:
    """A metric a plugin registered is in the summary the figures read, like the core's."""

    def test_result_summary_lists_plugin_metrics(self, tmp_path):
        from aiperf_plot.exporter import summary_of
        from support.mlflow_values import make_run

        hits = aiperf.MetricStats(
            tag="cache_hits", header="Cache Hits", unit="hits", count=3, avg=2.0,
            percentiles={"p50": 2.0, "p99": 3.0},
        )  # fmt: skip
        total = aiperf.MetricStats(tag="cache_total", header="Cache Total", unit="hits", count=1, avg=6.0)
        result = aiperf.RunResult(
            status=aiperf.RunStatus.FINISHED, was_cancelled=False,
            metrics={"request_latency": _stats("request_latency", [1.0]), "cache_hits": hits},
            run_metrics={"cache_total": total}, errors=(), start_wall_ns=None, end_wall_ns=None,
        )  # fmt: skip
        summary = summary_of(make_run(tmp_path / "run"), result)
        assert (3.0, 6.0) == (summary.stat("cache_hits", "p99"), summary.stat("cache_total"))
        assert ("Cache Hits", "hits") == (
            summary.metrics["cache_hits"]["header"], summary.metrics["cache_hits"]["unit"]
        )

    def test_export_file_summary_lists_plugin_metrics(self):
        from aiperf_plot.rundir import Summary

        data = {"metrics": {"cache_hits": {"header": "Cache Hits", "unit": "hits", "p50": 2.0}}}
        summary = Summary.from_export(data)
        assert summary is not None and 2.0 == summary.stat("cache_hits", "p50")


class TestCli:
    """The real ``aiperf`` command in a child process."""

    def test_help_lists_plot_and_loads_no_matplotlib(self):
        code = (
            "import sys\n"
            "from aiperf.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['plot', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('MPL', 'matplotlib' in sys.modules, 'numpy' in sys.modules)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert "plot" in proc.stdout
        assert "--paths PATH" in proc.stdout
        assert "MPL False False" == proc.stdout.strip().splitlines()[-1]

    def test_bad_path_is_one_line_exit_2(self, aiperf_cli, tmp_path):
        proc = aiperf_cli("plot", str(tmp_path / "missing"))
        assert 2 == proc.returncode
        assert [f"aiperf: error: --paths: no such directory: {tmp_path / 'missing'}"] == (
            proc.stderr.splitlines()
        )
