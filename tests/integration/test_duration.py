"""``--benchmark-duration`` with ``--benchmark-grace-period``.

Sending stops at the duration; requests already in flight get the grace period to finish and
are counted when they do. Whatever is still running when the grace period ends is cancelled:
its JSONL line says ``cancelled``, it is left out of the statistics, and a note in the console
and in ``profile_export_aiperf.json`` says how many there were.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration

#: a guard against a hang, never a measurement.
GUARD_S = 180
NOTE = re.compile(r"(\d+) requests were still in flight when the grace period ended")


def run_for(url: str, run_dir: Path, duration: float, grace: float) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], list[dict[str, Any]]]:
    process = subprocess.run(
        [
            sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model",
            "--streaming", "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
            "--concurrency", "4", "--benchmark-duration", str(duration),
            "--benchmark-grace-period", str(grace), "--artifact-dir", str(run_dir),
            "--no-progress", "--random-seed", "1",
        ],
        capture_output=True, text=True, timeout=GUARD_S, check=False,
    )  # fmt: skip
    assert 0 == process.returncode, process.stdout + process.stderr
    summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
    lines = (run_dir / "profile_export.jsonl").read_text().splitlines()
    return process, summary, [json.loads(line) for line in lines if line.strip()]


def cancelled_in(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["error"] and r["error"]["type"] == "cancelled"]


class TestGracePeriod:
    def test_stragglers_after_grace_are_cancelled_and_reported(self, tmp_path: Path) -> None:
        """Requests stalled past the grace period: cancelled, noted, not counted."""
        with MockServer(faults={"stall-mid": 0.4}, stall_seconds=120, seed=2, itl_ms=20) as server:
            process, summary, records = run_for(server.url, tmp_path / "run", duration=1.5, grace=1.0)
            truth = server.stats()["requests"]
        stalled = truth["faults"]["stall-mid"]
        assert stalled > 0
        cancelled = cancelled_in(records)
        # every stalled request was still waiting for the rest of its answer
        assert stalled == len(cancelled)
        (note,) = [n for n in summary["notes"] if NOTE.search(n)]
        assert stalled == int(NOTE.search(note).group(1))  # type: ignore[union-attr]
        assert f"note: {note}" in process.stdout
        assert summary["was_cancelled"] is False
        assert "FINISHED" == summary["status"]
        assert truth["ok"] == summary["metrics"]["request_count"]["avg"]
        assert 0 == summary["metrics"]["error_request_count"]["avg"]
        assert truth["total"] == len(records)
        for record in cancelled:
            # what arrived before the stall is kept in the line
            assert "time_to_first_token" in record["metrics"]

    def test_requests_finishing_within_grace_are_counted(self, tmp_path: Path) -> None:
        """Requests still running at the duration that finish within the grace period count."""
        # ~0.8 s per request, so requests sent late in the 1 s window end after it.
        with MockServer(itl_ms=100) as server:
            _process, summary, records = run_for(server.url, tmp_path / "run", duration=1.0, grace=30.0)
            truth = server.stats()["requests"]
        assert [] == cancelled_in(records)
        assert [] == [n for n in summary["notes"] if NOTE.search(n)]
        assert truth["total"] == truth["ok"] == len(records) == summary["metrics"]["request_count"]["avg"]
        first_start = min(r["start_time_ns"] for r in records)
        last_end = max(r["end_time_ns"] for r in records)
        assert last_end > first_start + 1_000_000_000, "no request outlived the duration"

    def test_zero_grace_cancels_in_flight_at_the_duration(self, tmp_path: Path) -> None:
        """--benchmark-grace-period 0: whatever runs at the duration is cancelled right then."""
        with MockServer(itl_ms=100) as server:
            process, summary, records = run_for(server.url, tmp_path / "run", duration=1.0, grace=0.0)
            truth = server.stats()["requests"]
        cancelled = cancelled_in(records)
        assert len(cancelled) >= 1
        (note,) = [n for n in summary["notes"] if NOTE.search(n)]
        assert len(cancelled) == int(NOTE.search(note).group(1))  # type: ignore[union-attr]
        assert f"note: {note}" in process.stdout
        counted = summary["metrics"]["request_count"]["avg"] + summary["metrics"]["error_request_count"]["avg"]
        assert truth["total"] == len(records) == counted + len(cancelled)
