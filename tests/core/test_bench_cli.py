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
        monkeypatch.setattr(run, "_importable", lambda module: True)
        args = run.parse_args([])
        assert [
            "startup", "postproc", "capacity", "accuracy", "workers", "rate", "sinks", "wire", "health", "tail",
            "streams", "memory",
        ] == run.chosen_scenarios(args)  # fmt: skip
        assert BENCH / "results.json" == run.default_output(args)

    def test_full_suite_leaves_out_tail_without_the_mlflow_server(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With mlflow-skinny only (no server), the telemetry-tail scenario is left out, saying why."""
        monkeypatch.setattr(run, "_importable", lambda module: module != "mlflow.server")
        assert "tail" not in run.chosen_scenarios(run.parse_args([]))
        assert "mlflow.server is not installed (pip install mlflow)" in capsys.readouterr().err

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
        assert not {"memory", "health"} & set(run.chosen_scenarios(args))
        assert BENCH / "results-quick.json" == run.default_output(args)

    def test_named_scenarios_keep_suite_order(self) -> None:
        """--scenario runs only those named, in the suite's order, into a partial results file."""
        args = run.parse_args(["--scenario", "rate", "--scenario", "startup"])
        assert ["startup", "rate"] == run.chosen_scenarios(args)
        assert BENCH / "results-partial.json" == run.default_output(args)

    def test_quick_with_named_slow_scenario_runs_it(self) -> None:
        """A scenario named explicitly runs even in --quick."""
        assert ["memory"] == run.chosen_scenarios(run.parse_args(["--quick", "--scenario", "memory"]))

    def test_other_clients_are_off_unless_given(self, tmp_path: Path) -> None:
        """Each client flag adds that client to the wire scenario, in a fixed order; none, aiperf alone."""
        assert () == run.other_clients(run.parse_args([]))
        tools = {}
        for name in ("inference-perf", "guidellm", "aiperf"):
            tools[name] = tmp_path / name
            tools[name].write_text("#!/bin/sh\n")
            tools[name].chmod(0o755)
        args = run.parse_args(
            ["--nvidia-aiperf", str(tools["aiperf"]), "--inference-perf", str(tools["inference-perf"]),
             "--guidellm", str(tools["guidellm"])]
        )  # fmt: skip
        chosen = run.other_clients(args)
        assert ["ip", "gl", "nv"] == [client.key for client in chosen]
        assert [str(tools[n]) for n in ("inference-perf", "guidellm", "aiperf")] == [c.executable for c in chosen]

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
            (["--guidellm", "/no/such/guidellm"], "--guidellm: /no/such/guidellm is not an executable"),
            (["--nvidia-aiperf", "/no/such/aiperf"], "--nvidia-aiperf: /no/such/aiperf is not an executable"),
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


class TestHealthCalibration:
    """The calibration row: the bound a run reported against its TTFT error."""

    def _summary(self, bound: float | None, p50: float, p99: float) -> dict:
        return {
            "metrics": {"time_to_first_token": {"p50": p50, "p99": p99}},
            "measurement_health": None if bound is None else {
                "verdict": "ok", "overhead_p99_ms": bound, "loop_lag_ms": {"max": bound * 2, "count": 100},
                "loop_busy_pct": 40.0, "cpu_wait_pct": 1.0,
            },
        }  # fmt: skip

    def _stats(self, p50: float, p99: float) -> dict:
        return {"ttft_ms": {"p50": p50, "p99": p99}, "chunk_gap_ms": {"p99": 10.0}, "raw": {"requests": []}}

    def test_covered_when_the_bound_is_at_least_the_larger_error(self) -> None:
        from benchlib.suite import calibration_row

        row = calibration_row(self._summary(2.0, 50.1, 52.0), self._stats(50.0, 50.5), 64, 1, 1.5)
        assert (0.1, 1.5) == (round(row["err_p50_ms"], 6), round(row["err_p99_ms"], 6))
        assert row["covered"] and 0.5 == round(row["margin_ms"], 6)
        row = calibration_row(self._summary(1.0, 50.1, 52.0), self._stats(50.0, 50.5), 64, 1, 1.5)
        assert not row["covered"] and -0.5 == round(row["margin_ms"], 6)

    def test_no_block_is_never_covered(self) -> None:
        from benchlib.suite import calibration_row

        row = calibration_row(self._summary(None, 50.1, 52.0), self._stats(50.0, 50.5), 16, 1, 1.0)
        assert not row["covered"]

    def test_table_has_a_row_per_run(self, tmp_path: Path) -> None:
        from benchlib.suite import calibration_row, write_calibration

        rows = [
            calibration_row(self._summary(b, 50.1, 52.0), self._stats(50.0, 50.5), c, 1, 1.0)
            for c, b in ((16, 2.0), (64, 1.0))
        ]
        write_calibration(tmp_path / "out" / "cal", rows)
        lines = (tmp_path / "out" / "cal.md").read_text().splitlines()
        assert 2 + 2 == len(lines)
        assert "| 16 | 1 |" in lines[2] and "| yes |" in lines[2]
        assert "| **no** |" in lines[3]


class TestWorkerCounts:
    def test_eight_and_sixteen_only_where_the_cores_are(self) -> None:
        from benchlib.suite import worker_counts

        assert [1, 2, 4] == worker_counts(2)
        assert [1, 2, 4] == worker_counts(7.5)  # a fractional cgroup quota
        assert [1, 2, 4, 8] == worker_counts(8)
        assert [1, 2, 4, 8, 16] == worker_counts(64)
