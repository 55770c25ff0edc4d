"""Worker processes that die or hang, and requests cancelled in worker mode.

A worker that raises, exits, is SIGKILLed (as the OOM killer would) or stops talking ends the
run ``FAILED``, exit 1, with one line naming the worker, its pid and how it ended, and every
export written from what the coordinator received, marked partial. Cancelled requests (Ctrl-C,
end of the grace period) each get their JSONL line in worker mode too.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from support.fake_plugins import install_fake_distribution
from support.live_run import Profile, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_server() -> Iterator[MockServer]:
    """About 0.2 s per request: a run is always mid-flight when something happens to it."""
    with MockServer(ttft_ms=20, itl_ms=20) as server:
        yield server


@pytest.fixture(scope="module")
def very_slow_server() -> Iterator[MockServer]:
    """About 3 s per request: every request is still in flight a second after it was sent."""
    with MockServer(ttft_ms=20, itl_ms=300) as server:
        yield server


@pytest.fixture
def profile_runs() -> Iterator[list[Profile]]:
    """Every run started by a test is killed at the end, whatever the test did."""
    runs: list[Profile] = []
    yield runs
    for run in runs:
        run.kill()
        for pid in run.worker_pids():
            _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


#: a record processor that ends its process on request 7 (a worker: odd indices are worker 1's),
#: and a load strategy that raises on the first odd index from 9 on.
CRASH_PLUGIN = """
import os
import trio
from aiperf import LoadStrategyType, hookimpl

@hookimpl
def aiperf_add_options(command, parser):
    if command == "profile":
        parser.add_argument_group("crash").add_argument("--crash-exit", type=int, default=0)

class Exit:
    name = "crash_exit"
    order = 50
    def process(self, record, values, run):
        code = run.config.plugin_options.get("crash_exit") or 0
        if code and record.index == 7:
            os._exit(code)

@hookimpl
def aiperf_register_record_processors(register):
    import multiprocessing
    if os.environ.get("CRASH_IN_SETUP") and multiprocessing.current_process().name != "MainProcess":
        raise RuntimeError("setup boom in the worker")
    register(Exit())

class Boom:
    async def drive(self, ctx):
        async with trio.open_nursery() as nursery:
            while (index := ctx.claim()) is not None:
                if index >= 9 and index % 2 == 1:
                    raise RuntimeError("boom from the load strategy")
                nursery.start_soon(ctx.execute, index)
                await trio.sleep(0.05)

@hookimpl
def aiperf_register_load_strategies(register):
    register(LoadStrategyType(name="boom", create=lambda config: Boom()))
"""


@pytest.fixture
def crash_site(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-crash", "aiperf_crash_plugin", CRASH_PLUGIN)
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}


def completed(server: MockServer) -> int:
    return int(server.stats()["requests"]["ok"])


def received(server: MockServer) -> int:
    return int(server.stats()["requests"]["total"])


def metadata(run: Profile) -> dict[str, Any]:
    return json.loads((run.run_dir / "metadata.json").read_text())


def assert_failed_partial(run: Profile, code: int, *named: str) -> str:
    """Exit 1, one line naming the worker, FAILED and partial everywhere; returns the line."""
    assert 1 == code, run.stderr
    lines = [line for line in run.stderr.splitlines() if "aiperf: worker" in line]
    assert 1 == len(lines), run.stderr
    for text in named:
        assert text in lines[0], lines[0]
    summary = run.summary()
    assert "FAILED" == summary["status"]
    assert summary["partial"] is True
    assert summary["partial_reason"] in lines[0]
    meta = metadata(run)
    assert ("FAILED", True) == (meta["status"], meta["partial"])
    assert (run.run_dir / "profile_export_aiperf.csv").is_file()
    assert "(partial)" in run.stdout
    assert "Traceback" not in run.stderr
    # every record the coordinator received is in the results, whole
    records = run.records()
    ok = [r for r in records if r["error"] is None]
    assert len(ok) == summary["metrics"]["request_count"]["avg"] > 0
    return lines[0]


class TestDeadWorker:
    def test_sigkilled_worker_fails_the_run_with_partial_results(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """SIGKILL one of two workers: the run stops, FAILED, exit 1, the worker named."""
        slow_server.reset_stats()
        run = Profile(slow_server.url, tmp_path / "run", "--workers", "2")
        profile_runs.append(run)
        wait_until(lambda: completed(slow_server) >= 6 and len(run.worker_pids()) == 2)
        victim = run.worker_pids()[-1]
        os.kill(victim, signal.SIGKILL)
        assert_failed_partial(run, run.wait(), f"(pid {victim})", "was killed by SIGKILL")
        # The other worker was stopped and wrote its requests in flight as cancelled; only what
        # the killed one did in its last batch interval (50 ms) can be missing.
        assert len(run.records()) >= received(slow_server) - 2

    def test_worker_that_exits_fails_the_run(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path, crash_site: dict[str, str]
    ) -> None:
        """A worker whose process exits (here: code 3, from a plugin) is named with its code."""
        run = Profile(slow_server.url, tmp_path / "run", "--workers", "2", "--crash-exit", "3", env=crash_site)
        profile_runs.append(run)
        assert_failed_partial(run, run.wait(), "worker 1 ", "exited with code 3")

    def test_worker_that_raises_fails_the_run(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path, crash_site: dict[str, str]
    ) -> None:
        """An exception in a worker: its type and message, once, and exit code 1."""
        run = Profile(
            slow_server.url, tmp_path / "run", "--workers", "2", "--request-rate", "20",
            "--request-rate-mode", "boom", env=crash_site,
        )  # fmt: skip
        profile_runs.append(run)
        line = assert_failed_partial(run, run.wait(), "worker 1 ", "RuntimeError: boom from the load strategy")
        assert "exited with code 1" in line

    def test_worker_that_fails_before_its_loop_runs(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path, crash_site: dict[str, str]
    ) -> None:
        """A worker that cannot even set up (a plugin raising in it) is named with the error."""
        run = Profile(slow_server.url, tmp_path / "run", "--workers", "2", env={**crash_site, "CRASH_IN_SETUP": "1"})
        profile_runs.append(run)
        code = run.wait()
        assert 1 == code, run.stderr
        assert "RuntimeError: setup boom in the worker (exited with code 1)" in run.stderr
        assert "Traceback" not in run.stderr
        assert run.summary()["partial"] is True

    def test_live_sink_worker_killed(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """With a live sink on, the load runs in one worker: its death is noticed the same way."""
        from support.otlp_receiver import OtlpReceiver

        with OtlpReceiver() as collector:
            slow_server.reset_stats()
            run = Profile(slow_server.url, tmp_path / "run", "--otel-url", collector.url)
            profile_runs.append(run)
            wait_until(lambda: completed(slow_server) >= 4 and len(run.worker_pids()) == 1)
            victim = run.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            assert_failed_partial(run, run.wait(), f"worker 0 (pid {victim})", "SIGKILL")

    def test_stalled_worker_is_killed(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """A worker that stops talking (SIGSTOP) is killed after the stall timeout; the
        requests it had in flight are written as worker_lost."""
        slow_server.reset_stats()
        run = Profile(
            slow_server.url, tmp_path / "run", "--workers", "2",
            env={"AIPERF_WORKER_STALL_TIMEOUT": "2"},
        )  # fmt: skip
        profile_runs.append(run)
        wait_until(lambda: completed(slow_server) >= 6 and len(run.worker_pids()) == 2)
        victim = run.worker_pids()[0]
        os.kill(victim, signal.SIGSTOP)
        assert_failed_partial(run, run.wait(), f"(pid {victim})", "sent nothing for 2 s")
        lost = [r for r in run.records() if r["error"] and r["error"]["type"] == "worker_lost"]
        assert 1 == len(lost)  # concurrency 1 in that worker: its one request in flight


class TestCancelledWithWorkers:
    def test_sigint_with_workers_writes_a_line_per_request_sent(
        self, very_slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """Ctrl-C with two workers: the requests in flight are written as cancelled."""
        very_slow_server.reset_stats()
        run = Profile(very_slow_server.url, tmp_path / "run", "--workers", "2", "--concurrency", "4")
        profile_runs.append(run)
        wait_until(lambda: received(very_slow_server) >= 4)
        run.signal_group(signal.SIGINT)
        assert 130 == run.wait(), run.stderr
        records = run.records()
        cancelled = [r for r in records if r["error"] and r["error"]["type"] == "cancelled"]
        assert received(very_slow_server) == len(records)
        assert 4 <= len(cancelled)
        assert run.summary()["partial"] is False

    def test_grace_period_end_with_workers_writes_a_line_per_request_sent(
        self, very_slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """--benchmark-duration 1 --benchmark-grace-period 0 against 3 s requests: every request
        is cut at the end of the duration, and each has its line."""
        very_slow_server.reset_stats()
        run = Profile(
            very_slow_server.url, tmp_path / "run", "--workers", "2", "--concurrency", "4",
            "--benchmark-duration", "1", "--benchmark-grace-period", "0",
        )  # fmt: skip
        profile_runs.append(run)
        run.wait()
        records = run.records()
        assert received(very_slow_server) == len(records) >= 4
        assert all(r["error"]["type"] == "cancelled" for r in records)
        assert f"{len(records)} requests were still in flight" in run.stdout

    def test_sigint_with_a_live_sink_writes_a_line_per_request_sent(
        self, very_slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """With a live sink on (the load in one worker), Ctrl-C too: one line per request."""
        from support.otlp_receiver import OtlpReceiver

        with OtlpReceiver() as collector:
            very_slow_server.reset_stats()
            run = Profile(very_slow_server.url, tmp_path / "run", "--concurrency", "3", "--otel-url", collector.url)
            profile_runs.append(run)
            wait_until(lambda: received(very_slow_server) >= 3)
            run.signal_group(signal.SIGINT)
            assert 130 == run.wait(), run.stderr
        records = run.records()
        assert received(very_slow_server) == len(records)
        assert 3 <= len([r for r in records if r["error"] and r["error"]["type"] == "cancelled"])
