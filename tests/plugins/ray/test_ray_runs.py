"""aiperf profile --ray-address against a Ray cluster of two load nodes on this machine, and
the built-in mock server with its own ground truth: the run is the same run as a local
``--workers 2`` one, its requests come from both nodes, a lost node ends it partial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from support.cli_run import Run, child_env, profile, profile_argv

pytestmark = pytest.mark.integration

TTFT_MS = 20.0
ITL_MS = 2.0


@pytest.fixture(scope="module")
def mock() -> Any:
    with MockServer(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as server:
        yield server


def _keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON document (list items by position left out)."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(prefix + key)
            out |= _keys(item, prefix + key + ".")
    return out


def _summary_shape(run: Run) -> set[str]:
    # Where the runs differ by nature, not by shape: the command line (metadata), per-process
    # health figures (lists), the run's own ids.
    return {k for k in _keys(run.summary) if not k.startswith(("input_config", "cli_command"))}


def test_ray_run_is_a_local_run_spread_over_nodes(ray_cluster: Any, mock: Any, tmp_path: Path) -> None:
    """Same load, same request count, same summary shape as --workers 2; every node sent
    requests and each line names its node; TTFT p50 within 1 ms of the server's truth."""
    count = 60
    mock.reset_stats()
    local = profile(mock.url, tmp_path / "local", "--workers", "2", count=count)
    local_truth = mock.stats()
    mock.reset_stats()
    ray = profile(mock.url, tmp_path / "ray", "--ray-address", ray_cluster.address, count=count)
    truth = mock.stats()

    assert 0 == ray.code, ray.output
    ray.assert_complete()
    metrics = ray.summary["metrics"]
    assert count == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    assert _summary_shape(local) == _summary_shape(ray)

    records = ray.records()
    assert list(range(count)) == sorted(r["request_index"] for r in records)
    by_node = Counter(r["node"] for r in records)
    assert 2 == len(by_node), by_node  # both load nodes, each named
    assert {count // 2} == set(by_node.values())
    assert {0, 1} == {r["worker"] for r in records}
    assert all("node" not in r for r in local.records())  # a local run's lines are unchanged

    ray_error = abs(metrics["time_to_first_token"]["p50"] - truth["ttft_ms"]["p50"])
    local_error = abs(local.summary["metrics"]["time_to_first_token"]["p50"] - local_truth["ttft_ms"]["p50"])
    assert ray_error < 1.0, (ray_error, local_error)
    # Times moved onto the coordinator's clock: each request's wall-clock start is between
    # the run's start and end as this machine saw them.
    starts = [r["start_time_ns"] for r in records]
    assert max(starts) - min(starts) < 60e9


def test_constant_rate_is_one_schedule_across_nodes(ray_cluster: Any, mock: Any, tmp_path: Path) -> None:
    """20 requests/s over two actors on two nodes: the actors start at one instant and
    request i is due at i / rate, whichever node sends it (split by index, not by clock)."""
    rate, count = 20.0, 30
    ray = profile(
        mock.url, tmp_path / "ray", "--ray-address", ray_cluster.address,
        "--request-rate", str(rate), "--request-rate-mode", "constant", count=count,
    )  # fmt: skip
    assert 0 == ray.code, ray.output
    records = sorted(ray.records(), key=lambda r: r["request_index"])
    assert 2 == len({r["node"] for r in records})
    intended = [r["intended_start_time_ns"] for r in records]
    gaps_ms = [(b - a) / 1e6 for a, b in zip(intended, intended[1:])]
    assert all(abs(gap - 1000 / rate) < 5.0 for gap in gaps_ms), gaps_ms


def test_workers_per_node(ray_cluster: Any, mock: Any, tmp_path: Path) -> None:
    """--ray-workers-per-node 2 on two nodes: four actors, two on each node."""
    ray = profile(mock.url, tmp_path / "ray", "--ray-address", ray_cluster.address, "--ray-workers-per-node", "2", count=40)
    assert 0 == ray.code, ray.output
    pairs = {(r["worker"], r["node"]) for r in ray.records()}
    assert [0, 1, 2, 3] == sorted(w for w, _ in pairs)
    assert [2, 2] == sorted(Counter(node for _, node in pairs).values())


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::LoadActor"):
            pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actor's process in /proc")
def test_a_dead_actor_ends_the_run_partial_naming_it(ray_cluster: Any, tmp_path: Path) -> None:
    """An actor killed mid-run (as the OOM killer would): the run stops, exits 1, marked
    partial; one line names the worker and its node; its requests in flight are written as
    worker_lost, and what both actors finished is kept."""
    with MockServer(ttft_ms=TTFT_MS, itl_ms=5) as server:
        process = subprocess.Popen(
            profile_argv(server.url, tmp_path / "run", "--ray-address", ray_cluster.address, count=5000)
            + ["--output-tokens-mean", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while server.stats()["requests"]["ok"] < 8:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.2)
            pids = _actor_pids()
            assert 2 == len(pids), pids
            os.kill(pids[0], signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    run = Run(process=subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), run_dir=tmp_path / "run")
    assert 1 == run.code, run.output
    lost = [line for line in stderr.splitlines() if line.startswith("aiperf: worker ")]
    assert 1 == len(lost), stderr
    assert "(Ray actor on node " in lost[0] and "was lost" in lost[0] and "results will be partial" in lost[0]
    assert "Traceback" not in stderr
    summary = run.summary
    assert summary["partial"] is True
    assert lost[0].removeprefix("aiperf: ").split(";")[0] == summary["partial_reason"]
    records = run.records()
    assert run.error_types()["worker_lost"] >= 1
    assert 2 == len({r["node"] for r in records if r["error"] is None})


def test_an_address_where_no_cluster_listens_is_one_line(mock: Any, tmp_path: Path) -> None:
    from aiperf.testing import free_port

    port = free_port()
    run = profile(mock.url, tmp_path / "run", "--ray-address", f"127.0.0.1:{port}", count=4)
    assert 1 == run.code
    lines = [line for line in run.process.stderr.splitlines() if line.startswith("aiperf")]
    assert [f"aiperf: error: cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused"] == lines
    assert "Traceback" not in run.output


def test_ctrl_c_stops_every_actor_and_keeps_what_they_finished(ray_cluster: Any, tmp_path: Path) -> None:
    """Ctrl-C to the coordinator: both actors are told to stop, their requests in flight are
    cancelled and written, what finished is kept, exit 130, no traceback."""
    with MockServer(ttft_ms=TTFT_MS, itl_ms=5) as server:
        process = subprocess.Popen(
            profile_argv(server.url, tmp_path / "run", "--ray-address", ray_cluster.address, count=5000)
            + ["--output-tokens-mean", "100"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while server.stats()["requests"]["ok"] < 8:
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.2)
            os.killpg(process.pid, signal.SIGINT)
            stdout, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        in_flight = server.stats()["requests"]["in_flight"]
    run = Run(process=subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), run_dir=tmp_path / "run")
    assert 130 == run.code, run.output
    assert "Traceback" not in stderr
    assert run.summary["was_cancelled"] is True
    records = run.records()
    assert 2 == len({r["node"] for r in records if r["error"] is None})
    assert run.error_types()["cancelled"] >= 1  # the requests in flight at the stop
    assert 0 == run.error_types()["worker_lost"]
    assert 0 == in_flight
