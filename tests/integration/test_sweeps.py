"""Sweeps, repeats and the search as a user runs them: ``python -m aiperf profile`` against
the mock server, and what the sweep directory holds afterwards."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from support.cli_run import CORE_FILES, GUARD_S, child_env

pytestmark = pytest.mark.integration

STATS = ("avg", "p50", "p90", "p99")


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(ttft_ms=2, itl_ms=1) as s:
        yield s


def argv(url: str, out: Path, *extra: str, count: int = 16) -> list[str]:
    return [
        sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model", "--streaming",
        "--isl", "16", "--osl", "4", "--request-count", str(count), "--no-progress",
        "--random-seed", "3", "--artifact-dir", str(out), *extra,
    ]  # fmt: skip


def profile(url: str, out: Path, *extra: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(url, out, *extra, **kwargs), capture_output=True, text=True, timeout=GUARD_S,
        env=child_env(), check=False,
    )  # fmt: skip


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def own_summary(run_dir: Path) -> dict[str, Any]:
    return read(run_dir / "profile_export_aiperf.json")


class TestSweep:
    def test_three_points_and_a_summary_equal_to_each_points_own(
        self, server: MockServer, tmp_path: Path
    ) -> None:
        out = tmp_path / "sweep"
        done = profile(server.url, out, "--concurrency", "1,4,16")
        assert 0 == done.returncode, done.stderr
        assert "Traceback" not in done.stderr
        names = ["concurrency_1", "concurrency_4", "concurrency_16"]
        for name in names:
            for core in CORE_FILES:
                assert (out / name / core).is_file(), (name, core)
        summary = read(out / "sweep_summary.json")
        assert (summary["kind"], summary["sweep_type"], summary["parameters"]) == ("sweep", "grid", ["concurrency"])
        assert summary["status"] == "complete"
        assert [p["run_dir"] for p in summary["points"]] == names
        assert [p["values"] for p in summary["points"]] == [{"concurrency": c} for c in (1, 4, 16)]
        assert [p["index"] for p in summary["points"]] == [0, 1, 2]
        csv_rows = list(csv.DictReader(io.StringIO((out / "sweep_summary.csv").read_text())))
        assert len(csv_rows) == 3
        for point, row in zip(summary["points"], csv_rows):
            assert point["status"] == "ok"
            own = own_summary(out / point["run_dir"])
            # Each point's own load, and the same seed for all.
            assert own["load_setting"] == f"concurrency{point['values']['concurrency']}"
            assert own["input_config"]["random_seed"] == 3
            expected = {
                tag: {s: stats[s] for s in STATS if s in stats}
                for tag, stats in own["metrics"].items()
                if any(s in stats for s in STATS)
            }
            assert point["metrics"] == expected
            assert float(row["time_to_first_token.p99"]) == own["metrics"]["time_to_first_token"]["p99"]
            assert float(row["request_throughput.avg"]) == own["metrics"]["request_throughput"]["avg"]
        # The console table: one line per point as it finished.
        lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
        assert [line.split("|")[2].strip() for line in lines[1:]] == ["1", "4", "16"]
        assert "Sweep: 3 points, 3 ok." in done.stdout

    def test_grid_of_two_lists_names_points_by_both(self, server: MockServer, tmp_path: Path) -> None:
        out = tmp_path / "grid"
        done = profile(server.url, out, "--concurrency", "1,2", "--isl", "8,16", count=4)
        assert 0 == done.returncode, done.stderr
        summary = read(out / "sweep_summary.json")
        assert [p["run_dir"] for p in summary["points"]] == [
            "concurrency_1-isl_8", "concurrency_1-isl_16", "concurrency_2-isl_8", "concurrency_2-isl_16",
        ]  # fmt: skip
        isl = own_summary(out / "concurrency_2-isl_8")["input_config"]["synthetic_input_tokens_mean"]
        assert isl == 8

    def test_a_failed_point_is_marked_and_the_sweep_goes_on(
        self, server: MockServer, tmp_path: Path
    ) -> None:
        """The middle point cannot have its directory (a file is in the way)."""
        out = tmp_path / "failing"
        out.mkdir()
        (out / "concurrency_2").write_text("in the way\n")
        done = profile(server.url, out, "--concurrency", "1,2,3", count=4)
        assert 1 == done.returncode, done.stderr
        assert "Traceback" not in done.stderr
        assert "aiperf: concurrency_2 failed: cannot write" in done.stderr
        summary = read(out / "sweep_summary.json")
        assert [p["status"] for p in summary["points"]] == ["ok", "failed", "ok"]
        assert "cannot write" in summary["points"][1]["error"]
        assert (out / "concurrency_3" / "profile_export_aiperf.json").is_file()

    def test_ctrl_c_ends_the_sweep_with_what_finished(self, server: MockServer, tmp_path: Path) -> None:
        """Ctrl-C in the cooldown after the first point: exit 130, that point summarized."""
        out = tmp_path / "stopped"
        process = subprocess.Popen(
            argv(server.url, out, "--concurrency", "1,2,4", "--sweep-cooldown-seconds", "60", count=4),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + GUARD_S
            while time.monotonic() < deadline:
                path = out / "sweep_summary.json"
                if path.is_file() and read(path)["points"]:
                    break
                assert process.poll() is None, process.communicate()
                time.sleep(0.1)
            os.killpg(process.pid, signal.SIGINT)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert 130 == process.returncode, stderr
        assert "Traceback" not in stderr
        summary = read(out / "sweep_summary.json")
        assert summary["status"] == "interrupted"
        assert [p["run_dir"] for p in summary["points"]] == ["concurrency_1"]
        assert not (out / "concurrency_2").exists()

    def test_a_second_sweep_sets_the_first_aside(self, server: MockServer, tmp_path: Path) -> None:
        out = tmp_path / "twice"
        assert 0 == profile(server.url, out, "--concurrency", "1,2", count=4).returncode
        first = read(out / "sweep_summary.json")["sweep_id"]
        done = profile(server.url, out, "--concurrency", "3,4", count=4)
        assert 0 == done.returncode, done.stderr
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["concurrency_3", "concurrency_4", "previous"]
        moved = out / "previous" / first
        assert read(moved / "sweep_summary.json")["sweep_id"] == first
        assert (moved / "concurrency_1" / "profile_export_aiperf.json").is_file()


class TestRepeat:
    def test_trials_and_an_aggregate_of_them(self, server: MockServer, tmp_path: Path) -> None:
        out = tmp_path / "repeat"
        done = profile(
            server.url, out, "--concurrency", "2", "--num-profile-runs", "3",
            "--confidence-level", "0.9", "--warmup-request-count", "2",
            "--profile-run-disable-warmup-after-first",
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr
        marker = read(out / "repeat_summary.json")
        assert marker["kind"] == "repeat"
        assert [p["run_dir"] for p in marker["points"]] == ["trial_1", "trial_2", "trial_3"]
        assert marker["aggregate"]["json"] == "aggregate/profile_export_aiperf_aggregate.json"
        warmups = [own_summary(out / f"trial_{n}")["input_config"]["warmup_request_count"] for n in (1, 2, 3)]
        assert warmups == [2, 0, 0]
        data = read(out / "aggregate" / "profile_export_aiperf_aggregate.json")
        assert (data["confidence_level"], data["trials_ok"]) == (0.9, 3)
        values = [own_summary(out / f"trial_{n}")["metrics"]["request_latency"]["p90"] for n in (1, 2, 3)]
        entry = data["metrics"]["request_latency"]["p90"]
        assert entry["values"] == values
        assert entry["mean"] == pytest.approx(sum(values) / 3)
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"]
        assert data["metrics"]["request_latency"]["unit"] == "ms"
        rows = list(csv.reader(io.StringIO((out / "aggregate" / "profile_export_aiperf_aggregate.csv").read_text())))
        assert ["request_latency", "ms", "p90"] in [r[:3] for r in rows]
        assert "Mean over 3 runs, 90% interval" in done.stdout

    def test_confidence_level_alone_is_an_error(self, server: MockServer, tmp_path: Path) -> None:
        done = profile(server.url, tmp_path / "x", "--confidence-level", "0.9")
        assert 2 == done.returncode
        assert done.stderr.strip() == (
            "aiperf: error: --confidence-level: only applies with --num-profile-runs greater than 1"
        )
        assert not (tmp_path / "x").exists()


class TestSearch:
    #: each request in flight adds 40 ms of TTFT: with an SLO of 820 ms the 21st request
    #: in flight still makes it (800 ms) and the 22nd does not (840 ms). At concurrency 20
    #: (760 ms) a busy host has 60 ms of slack before the answer is off by more than a step.
    PER_MS, SLO_MS, KNEE = 40, 820, 21

    def test_search_finds_the_knee(self, tmp_path: Path) -> None:
        out = tmp_path / "search"
        with MockServer(ttft_per_inflight_ms=self.PER_MS, itl_ms=1) as degrading:
            done = profile(
                degrading.url, out, "--search", "max-concurrency",
                "--goodput", f"time_to_first_token:{self.SLO_MS}", count=66,
            )  # fmt: skip
        assert 0 == done.returncode, done.stderr + done.stdout
        summary = read(out / "sweep_summary.json")
        assert (summary["kind"], summary["parameters"]) == ("search", ["concurrency"])
        search = summary["search"]
        resolution = search["resolution"]
        assert abs(search["result"] - self.KNEE) <= resolution, done.stdout
        # Every probe is a point of the directory, passed or not.
        for point in summary["points"]:
            assert (out / point["run_dir"] / "profile_export_aiperf.json").is_file()
            assert point["passed"] == (point["goodput_fraction"] >= 0.95)
        probed = [p["values"]["concurrency"] for p in summary["points"]]
        assert probed[:5] == [1, 2, 4, 8, 16]
        assert search["result_run_dir"] == f"concurrency_{search['result']}"
        assert f"Largest concurrency with 95% of requests within 'time_to_first_token:{self.SLO_MS}': {search['result']}" in done.stdout

    def test_search_needs_goodput(self, server: MockServer, tmp_path: Path) -> None:
        done = profile(server.url, tmp_path / "x", "--search", "max-rate")
        assert 2 == done.returncode
        assert done.stderr.startswith("aiperf: error: --search: needs --goodput")
