"""The run judges its own timing: the ``measurement_health`` block and its console line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from support.fake_plugins import install_fake_distribution

pytestmark = pytest.mark.integration

#: a record processor that blocks the loop for 30 ms on every fourth request: what a slow
#: plugin (a synchronous call, a lock) does to the process that reads the responses.
BLOCKING_PLUGIN = """
import time
from aiperf import hookimpl

class Block:
    name = "block_loop"
    order = 50
    def process(self, record, values, run):
        if record.index % 4 == 0:
            time.sleep(0.030)

@hookimpl
def aiperf_register_record_processors(register):
    register(Block())
"""


@pytest.fixture(scope="module")
def server():
    with MockServer(ttft_ms=5, itl_ms=5) as server:
        yield server


def profile(aiperf_cli, server: MockServer, run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    result = aiperf_cli(
        "profile", "--url", server.url, "-m", "mock-model", "--streaming",
        "--synthetic-input-tokens-mean", "32", "--output-tokens-mean", "12",
        "--artifact-dir", str(run_dir), "--random-seed", "3", *extra, env=env,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
    return result, summary


def health_line(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("Measurement health:")]
    assert 1 == len(lines), stdout
    return lines[0]


def test_block_present_with_sane_values(aiperf_cli, server, tmp_path: Path) -> None:
    result, summary = profile(
        aiperf_cli, server, tmp_path / "r", "--concurrency", "8", "--request-count", "120"
    )
    block = summary["measurement_health"]
    assert block["verdict"] in ("ok", "warning")
    assert 1 == block["load_processes"] == len(block["processes"])
    lag = block["loop_lag_ms"]
    # one tick per 10 ms over a phase of several hundred ms (late ticks are fewer)
    assert lag["count"] >= 10
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert block["overhead_p99_ms"] == lag["p99"]
    process = block["processes"][0]
    assert process["worker"] is None
    assert 0 < process["loop_cpu_s"] <= process["cpu_s"] + 0.05
    assert 0 < process["loop_busy_pct"] <= 100
    assert process["cpu_wait_pct"] is None or 0 <= process["cpu_wait_pct"] <= 100
    assert block["cpus_available"] >= 1
    assert 0.2 < process["wall_s"] < 60
    assert block["send_lag_p99_ms"] is None  # closed loop: nothing scheduled
    # the console says the same as the block, in one line
    assert block["message"] == health_line(result.stdout)
    if block["verdict"] == "ok":
        assert f"client overhead below {lag['p99']:.2f} ms at p99" in block["message"]


def test_a_blocked_loop_gives_the_warning_naming_the_figure(aiperf_cli, server, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-block", "aiperf_block_plugin", BLOCKING_PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    result, summary = profile(
        aiperf_cli, server, tmp_path / "r", "--concurrency", "4", "--request-count", "80", env=env
    )
    block = summary["measurement_health"]
    assert "warning" == block["verdict"]
    # 20 stalls of 30 ms over about 2 s of ticks: well inside the top 1 %
    assert block["overhead_p99_ms"] >= 20.0
    assert block["loop_lag_ms"]["max"] >= 25.0
    line = health_line(result.stdout)
    assert line.startswith(f"Measurement health: WARNING: event-loop lag p99 {block['overhead_p99_ms']:.1f} ms")
    assert "TTFT and ITL may read up to" in line
    assert "--workers N" in line


def test_each_worker_reports_and_the_worst_is_shown(aiperf_cli, server, tmp_path: Path) -> None:
    result, summary = profile(
        aiperf_cli, server, tmp_path / "r", "--concurrency", "8", "--request-count", "120",
        "--workers", "2",
    )  # fmt: skip
    block = summary["measurement_health"]
    processes = block["processes"]
    assert [0, 1] == [p["worker"] for p in processes]
    assert all(p["loop_lag_ms"]["count"] >= 10 for p in processes)
    worst = max(processes, key=lambda p: p["loop_lag_ms"]["p99"])
    assert block["overhead_p99_ms"] == worst["loop_lag_ms"]["p99"]
    assert block["worst_worker"] == worst["worker"]
    assert block["message"] == health_line(result.stdout)


def test_memory_per_stream_with_300_streams_in_flight(aiperf_cli, tmp_path: Path) -> None:
    """300 streams held open for two seconds each: the block says what one costs. The bounds
    are loose on purpose (a stream here costs about 17 KiB, the kept records a few hundred
    bytes a request); what matters is that the figure is read, and is per stream."""
    with MockServer(ttft_ms=2000, itl_ms=1) as slow:
        _result, summary = profile(
            aiperf_cli, slow, tmp_path / "r", "--concurrency", "300", "--request-count", "300"
        )
    block = summary["measurement_health"]
    memory = block["processes"][0]["memory"]
    assert 250 <= memory["in_flight_peak"] <= 300
    assert memory["rss_before_load_mib"] < memory["rss_peak_mib"]
    assert 1024 <= block["bytes_per_in_flight_stream"] <= 1024 * 1024
    assert block["bytes_per_in_flight_stream"] == memory["bytes_per_in_flight_stream"]
