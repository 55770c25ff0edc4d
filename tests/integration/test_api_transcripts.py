"""Bad and odd answers of the other API shapes, replayed byte for byte through a whole run:
one bad answer costs its request (with a typed error), never the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.api_transcripts import load
from support.replay_server import ReplayServer

pytestmark = pytest.mark.integration


def _run(url: str, run_dir: Path, endpoint_type: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "m", "--endpoint-type", endpoint_type,
        "--streaming", "--isl", "8", "--osl", "8", "--request-count", "2", "--artifact-dir", str(run_dir),
        "--no-progress", "--random-seed", "1",
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_out_of_order_events_are_typed_errors(tmp_path) -> None:
    """A delta before message_start: every request fails with event_order; the run ends cleanly."""
    with ReplayServer(load("bad-messages-event-order"), gap_s=0.01) as server:
        result = _run(server.url, tmp_path, "messages")
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in (tmp_path / "profile_export.jsonl").read_text().splitlines()]
    assert ["event_order", "event_order"] == [line["error"]["type"] for line in lines]
    assert 1 == result.returncode, result.stderr


def test_unknown_events_skipped_with_a_note(tmp_path) -> None:
    """Unknown event types cost nothing but a note; the text around them is measured."""
    with ReplayServer(load("edge-responses-unknown-events"), first_delay_s=0.05, gap_s=0.02) as server:
        result = _run(server.url, tmp_path, "responses")
    assert 0 == result.returncode, result.stderr
    summary = json.loads((tmp_path / "profile_export_aiperf.json").read_text())
    assert 2 == summary["metrics"]["output_sequence_length"]["avg"]
    assert "skipped 4 stream events" in result.stderr + json.dumps(summary)
    for line in (tmp_path / "profile_export.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["error"] is None
        assert 1 == len(record["metrics"]["inter_chunk_latency"])  # two text chunks
