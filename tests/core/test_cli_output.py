"""What a person (or a log pipeline) sees while a run goes on."""

from __future__ import annotations

import json

import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_server():
    with MockServer(ttft_ms=5, itl_ms=25) as server:
        yield server


def test_progress_line_shows_requests_rate_errors_elapsed(aiperf_cli, slow_server, tmp_path) -> None:
    """--progress prints the live line (done/total, req/s, errors, elapsed) to stderr."""
    result = aiperf_cli(
        "profile", "--url", slow_server.url, "-m", "mock-model", "--streaming", "--progress",
        "--output-tokens-mean", "60", "--request-count", "2", "--artifact-dir", str(tmp_path / "r"),
    )
    assert 0 == result.returncode, result.stderr
    # text mode turns the terminal's \r into line breaks
    frames = [f for f in result.stderr.splitlines() if f.startswith("[profile]")]
    assert frames, result.stderr
    assert "/2 requests" in frames[-1] and "req/s" in frames[-1] and "0 errors" in frames[-1]


def test_progress_line_is_a_sink_that_keeps_the_load_in_process(aiperf_cli, slow_server, tmp_path) -> None:
    """The progress line is a live sink of the built-in plugin that runs in the measuring
    process: with --workers 1 the requests are still sent from the aiperf process itself
    (a worker would stamp its number on each JSONL line), and the line is cleared at the end."""
    result = aiperf_cli(
        "profile", "--url", slow_server.url, "-m", "mock-model", "--streaming", "--progress",
        "--workers", "1", "--output-tokens-mean", "60", "--request-count", "2",
        "--artifact-dir", str(tmp_path / "r"),
    )
    assert 0 == result.returncode, result.stderr
    assert "[profile]" in result.stderr
    assert "\x1b[K" in result.stderr
    summary = json.loads((tmp_path / "r" / "profile_export_aiperf.json").read_text())
    assert [None] == [p["worker"] for p in summary["measurement_health"]["processes"]]


def test_log_format_json_gives_one_json_object_per_line(aiperf_cli, slow_server, tmp_path) -> None:
    """--log-format json: every log line on stderr is a JSON object with level and event."""
    result = aiperf_cli(
        "profile", "--url", slow_server.url, "-m", "mock-model", "--log-format", "json",
        "--request-count", "1", "--output-tokens-mean", "2", "--artifact-dir", str(tmp_path / "r"),
    )
    assert 0 == result.returncode, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert "benchmark_starting" in [e["event"] for e in events]
    assert all("level" in e and "timestamp" in e for e in events)
