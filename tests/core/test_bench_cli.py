"""bench/run.py's command line: scenario choice, output paths, bad values."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


run = _load_run()


class TestScenarioChoice:
    def test_full_suite_runs_every_scenario_in_order(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No flags: every scenario, start-up first and the long memory run last."""
        monkeypatch.setattr(run.shutil, "which", lambda name: f"/usr/bin/{name}")
        args = run.parse_args([])
        assert ["startup", "postproc", "capacity", "accuracy", "rate", "sinks", "wire", "memory"] == run.chosen_scenarios(args)
        assert BENCH / "results.json" == run.default_output(args)

    def test_full_suite_leaves_out_wire_without_tcpdump(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without tcpdump the full suite still runs, says what it left out and how to get it."""
        monkeypatch.setattr(run.shutil, "which", lambda name: None)
        assert "wire" not in run.chosen_scenarios(run.parse_args([]))
        assert "apt-get install tcpdump" in capsys.readouterr().err
        # Named explicitly, it is kept: the scenario itself then fails with the reason.
        assert ["wire"] == run.chosen_scenarios(run.parse_args(["--scenario", "wire"]))

    def test_quick_leaves_out_memory(self) -> None:
        """--quick skips the 100k-request run and writes its own results file."""
        args = run.parse_args(["--quick"])
        assert "memory" not in run.chosen_scenarios(args)
        assert BENCH / "results-quick.json" == run.default_output(args)

    def test_named_scenarios_keep_suite_order(self) -> None:
        """--scenario runs only those named, in the suite's order, into a partial results file."""
        args = run.parse_args(["--scenario", "rate", "--scenario", "startup"])
        assert ["startup", "rate"] == run.chosen_scenarios(args)
        assert BENCH / "results-partial.json" == run.default_output(args)

    def test_quick_with_named_slow_scenario_runs_it(self) -> None:
        """A scenario named explicitly runs even in --quick."""
        assert ["memory"] == run.chosen_scenarios(run.parse_args(["--quick", "--scenario", "memory"]))

    def test_inference_perf_is_off_unless_given(self) -> None:
        """--inference-perf PATH adds that client to the wire scenario; without it, aiperf alone."""
        assert run.parse_args([]).inference_perf is None
        assert "/opt/ip/bin/inference-perf" == run.parse_args(["--inference-perf", "/opt/ip/bin/inference-perf"]).inference_perf

    def test_output_flag_wins(self, tmp_path: Path) -> None:
        """--output overrides the default results path."""
        assert tmp_path / "r.json" == run.default_output(run.parse_args(["--output", str(tmp_path / "r.json")]))


class TestBadInput:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["--repeats", "0"], "--repeats: must be >= 1 (got 0)"),
            (["--memory-repeats", "-1"], "--memory-repeats: must be >= 1 (got -1)"),
            (["--workers", "0"], "--workers: must be >= 1 (got 0)"),
            (["--scenario", "nope"], "invalid choice: 'nope'"),
        ],
    )
    def test_bad_values_are_one_line_and_exit_2(self, argv: list[str], message: str, capsys) -> None:
        """A bad flag ends with argparse's usage and one error line, exit code 2."""
        with pytest.raises(SystemExit) as exit_info:
            run.parse_args(argv)
        assert 2 == exit_info.value.code
        err = capsys.readouterr().err
        assert message in err
        assert "Traceback" not in err
