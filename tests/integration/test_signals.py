"""Ctrl-C and SIGTERM: a real signal to a real ``aiperf profile`` process.

The first signal stops sending, cancels what is in flight and writes every export with what
completed (``was_cancelled: true``), exit 130 (SIGINT) or 143 (SIGTERM). A second Ctrl-C
exits at once. Each run is started in its own session so that a signal sent to its process
group reaches it (and its workers) the way a terminal's Ctrl-C would, and nothing else.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiperf.testing import MockServer
from support.live_run import MANY, Profile, wait_until

pytestmark = pytest.mark.integration

@pytest.fixture
def profile_runs() -> Iterator[list[Profile]]:
    """Every run started by a test is killed at the end, whatever the test did."""
    runs: list[Profile] = []
    yield runs
    for run in runs:
        run.kill()


@pytest.fixture(scope="module")
def slow_server() -> Iterator[MockServer]:
    """Each request takes about 0.2 s, so a run is always mid-flight when signalled."""
    with MockServer(ttft_ms=20, itl_ms=20) as server:
        yield server


def completed(server: MockServer) -> int:
    return int(server.stats()["requests"]["ok"])


class TestFirstSignal:
    @pytest.mark.parametrize(
        ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
    )
    def test_signal_writes_exports_of_what_completed(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path, signum: int, code: int
    ) -> None:
        """Stop mid-run: exit 128+signal, every export written, the counts match the server."""
        slow_server.reset_stats()
        run = Profile(slow_server.url, tmp_path / "run")
        profile_runs.append(run)
        wait_until(lambda: completed(slow_server) >= 4)
        run.signal_group(signum)
        assert code == run.wait(), run.stderr

        for name in ("profile_export_aiperf.json", "profile_export_aiperf.csv", "profile_export.jsonl",
                     "inputs.json", "metadata.json"):  # fmt: skip
            assert (run.run_dir / name).is_file(), name
        summary = run.summary()
        assert summary["was_cancelled"] is True
        assert "KILLED" == summary["status"]
        assert "KILLED" == json.loads((run.run_dir / "metadata.json").read_text())["status"]

        truth = slow_server.stats()["requests"]
        records = run.records()
        ok = [r for r in records if r["error"] is None]
        cancelled = [r for r in records if r["error"] and r["error"]["type"] == "cancelled"]
        # Every request the server completed is in the results; the ones cut short by the
        # signal are in the JSONL as cancelled and left out of the statistics.
        assert truth["ok"] == len(ok) == summary["metrics"]["request_count"]["avg"]
        assert 0 == summary["metrics"]["error_request_count"]["avg"]
        assert truth["total"] == len(records)
        assert len(ok) + len(cancelled) == len(records)
        assert len(ok) < MANY
        assert "stopping" in run.stderr
        assert "Traceback" not in run.stderr
        assert "(cancelled)" in run.stdout

    def test_sigterm_to_the_process_alone_stops_it(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """`kill PID` (SIGTERM to the process, not its group) is enough."""
        slow_server.reset_stats()
        run = Profile(slow_server.url, tmp_path / "run")
        profile_runs.append(run)
        wait_until(lambda: completed(slow_server) >= 2)
        run.process.send_signal(signal.SIGTERM)
        assert 143 == run.wait(), run.stderr
        assert run.summary()["was_cancelled"] is True

    @pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGHUP, 129)])
    def test_signal_with_workers_stops_every_worker(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path, signum: int, code: int
    ) -> None:
        """--workers 2: Ctrl-C (or a hangup, which reaches the whole group too) stops both load
        processes once, through the coordinator, and the results merge what finished."""
        slow_server.reset_stats()
        run = Profile(slow_server.url, tmp_path / "run", "--workers", "2")
        profile_runs.append(run)
        wait_until(lambda: completed(slow_server) >= 4)
        run.signal_group(signum)
        assert code == run.wait(), run.stderr
        summary = run.summary()
        assert summary["was_cancelled"] is True
        assert summary["partial"] is False
        assert "KILLED" == summary["status"]
        ok = [r for r in run.records() if r["error"] is None]
        assert slow_server.stats()["requests"]["ok"] == len(ok) == summary["metrics"]["request_count"]["avg"]
        assert 0 == slow_server.stats()["requests"]["in_flight"]


class TestSecondSignal:
    def test_second_sigint_exits_at_once(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """While the first Ctrl-C waits for a collector that never answers, a second one exits."""
        from support.otlp_receiver import OtlpReceiver

        slow_server.reset_stats()
        with OtlpReceiver() as collector:
            # Answers nothing for a minute: the final flush after the first Ctrl-C hangs.
            collector.respond_with(delay_s=60)
            run = Profile(
                slow_server.url, tmp_path / "run", "--otel-url", collector.url,
                "--otel-export-interval", "60",
            )  # fmt: skip
            profile_runs.append(run)
            wait_until(lambda: completed(slow_server) >= 3)
            run.signal_group(signal.SIGINT)
            run.wait_for_stderr("stopping")
            # The flush is stuck on the collector: the process is still there...
            time.sleep(1.0)
            assert run.process.poll() is None, run.stderr
            run.signal_group(signal.SIGINT)
            # ...and the second Ctrl-C ends it without waiting for anything.
            assert 130 == run.wait(), run.stderr
        assert "interrupted again" in run.stderr
        assert "Traceback" not in run.stderr
        # The requests that had finished are on disk even so.
        ok = [r for r in run.records() if r["error"] is None]
        assert 3 <= len(ok)


class TestSinksOnSignal:
    def test_sigint_ends_the_mlflow_run_killed(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """A cancelled run is KILLED in MLflow, with the results of what completed."""
        store = f"sqlite:///{tmp_path / 'mlflow.db'}"
        run = Profile(
            slow_server.url, tmp_path / "run", "--mlflow-tracking-uri", store,
            env={"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
        )  # fmt: skip
        profile_runs.append(run)
        wait_until(lambda: (run.run_dir / "mlflow_export.json").is_file() or run.process.poll() is not None)
        slow_server.reset_stats()
        wait_until(lambda: completed(slow_server) >= 3)
        run.signal_group(signal.SIGINT)
        assert 130 == run.wait(), run.stderr

        run_id = json.loads((run.run_dir / "mlflow_export.json").read_text())["run_id"]
        from mlflow.tracking import MlflowClient

        stored = MlflowClient(tracking_uri=store).get_run(run_id)
        assert "KILLED" == stored.info.status

    def test_sigint_flushes_otel(
        self, slow_server: MockServer, profile_runs: list[Profile], tmp_path: Path
    ) -> None:
        """Every request that finished before Ctrl-C reaches the collector."""
        from support.otlp_receiver import OtlpReceiver

        with OtlpReceiver() as collector:
            run = Profile(
                slow_server.url, tmp_path / "run", "--otel-url", collector.url,
                "--otel-export-interval", "60",
            )  # fmt: skip
            profile_runs.append(run)
            slow_server.reset_stats()
            wait_until(lambda: completed(slow_server) >= 3)
            run.signal_group(signal.SIGINT)
            assert 130 == run.wait(), run.stderr
            finished = [r for r in run.records() if r["phase"] == "profile" and r["error"] is None]
            received = collector.histogram(
                "gen_ai.client.operation.duration", where={"error.type": None}
            )
        assert len(finished) == received.count
