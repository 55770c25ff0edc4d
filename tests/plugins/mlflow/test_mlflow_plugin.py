"""The hooks: flags on profile and plot, checks before the run, one session shared by sink and
exporter, and nothing heavy imported for --help."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from aiperf import MissingExtra, UsageError
from aiperf_mlflow import plugin
from aiperf_mlflow.exporter import MlflowExporter
from aiperf_mlflow.sink import MlflowLiveSink
from support.mlflow_values import make_config, make_run
from support.plugin_flags import add_plugin_flags

MISSING = (
    "ImportError: MLflow integration requires the 'mlflow' package. "
    'Install with: pip install "aiperf[mlflow]"'
)


def parse(command: str, argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_plugin_flags(plugin, command, parser)
    return vars(parser.parse_args(argv))


class TestOptions:
    def test_profile_flags_of_the_docs(self) -> None:
        """Every MLflow flag of the docs parses into its own dest."""
        got = parse(
            "profile",
            [
                "--mlflow-tracking-uri",
                "http://localhost:5000",
                "--mlflow-experiment",
                "my-experiment",
                "--mlflow-run-name",
                "r",
                "--mlflow-tag",
                "a=1",
                "--mlflow-tag",
                "b:2",
                "--mlflow-parent-run-id",
                "abc123def456",
                "--mlflow-upload-timeout",
                "10",
            ],
        )
        assert {
            "mlflow_tracking_uri": "http://localhost:5000",
            "mlflow_experiment": "my-experiment",
            "mlflow_run_name": "r",
            "mlflow_tags": ["a=1", "b:2"],
            "mlflow_parent_run_id": "abc123def456",
            "mlflow_upload_timeout": "10",
        } == got

    def test_plot_upload_flag(self) -> None:
        """aiperf plot gets --mlflow-upload."""
        assert {"mlflow_upload": True, "mlflow_tracking_uri": None} == parse(
            "plot", ["--mlflow-upload"]
        )

    def test_other_commands_get_nothing(self) -> None:
        """Commands this plugin has no business in stay untouched."""
        assert {} == parse("mock-server", [])


@pytest.mark.usefixtures("clean_mlflow_env")
class TestConfigure:
    def test_configure_without_mlflow_flags_does_nothing(self) -> None:
        """No MLflow flag: no check, no import."""
        plugin.aiperf_configure(config=make_config())

    def test_configure_reports_bad_flag(self) -> None:
        """A bad value stops the run before it starts, naming the flag."""
        config = make_config(plugin_options={"mlflow_tracking_uri": "ftp://x"})
        with pytest.raises(UsageError) as info:
            plugin.aiperf_configure(config=config)
        assert str(info.value).startswith("--mlflow-tracking-uri: ")

    def test_configure_missing_mlflow_is_the_documented_line(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Plugin installed, MLflow not importable: the install hint, as one line."""
        monkeypatch.setitem(sys.modules, "mlflow", None)
        config = make_config(plugin_options={"mlflow_tracking_uri": "http://localhost:5000"})
        with pytest.raises(MissingExtra) as info:
            plugin.aiperf_configure(config=config)
        assert MISSING == str(info.value)

    def test_configure_sqlite_needs_full_mlflow(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """sqlite:// with mlflow-skinny alone says which package is missing."""
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "sqlalchemy" else real(name, *a),
        )
        config = make_config(plugin_options={"mlflow_tracking_uri": "sqlite:///mlflow.db"})
        with pytest.raises(UsageError) as info:
            plugin.aiperf_configure(config=config)
        assert "pip install mlflow" in str(info.value)


class TestFactories:
    def test_no_flags_no_objects(self, tmp_path: Path) -> None:
        """Without MLflow flags there is no sink and no exporter."""
        run = make_run(tmp_path / "run")
        assert plugin.aiperf_live_sinks(config=run.config, run=run) is None
        assert plugin.aiperf_exporters(config=run.config, run=run) is None

    def test_sink_and_exporter_share_one_session(self, tmp_path: Path, file_store: str) -> None:
        """The exporter finds the sink's run through run.state."""
        config = make_config(plugin_options={"mlflow_tracking_uri": file_store})
        run = make_run(tmp_path / "run", config)
        [sink] = plugin.aiperf_live_sinks(config=config, run=run)
        [exporter] = plugin.aiperf_exporters(config=config, run=run)
        assert isinstance(sink, MlflowLiveSink)
        assert isinstance(exporter, MlflowExporter)
        assert sink.session is exporter.session is run.state[plugin.STATE_KEY]
        assert exporter.order >= 100


def test_plugin_module_imports_nothing_heavy() -> None:
    """aiperf --help loads plugin.py: MLflow must not come with it."""
    code = (
        "import sys, contextlib, io\n"
        "from aiperf.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['profile', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "import aiperf_mlflow.plugin\n"
        "print(sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert 0 == out.returncode, out.stderr
    assert "[]" == out.stdout.strip()
