"""aiperf's numbers against the mock server's own ground truth (what it wrote, when).

The tolerances: the server measures TTFT from the first request byte it read to the first
content chunk it wrote; aiperf from its first socket write to the socket read that returned
that chunk. The difference is two loopback hops plus event-loop wake-ups on both sides, about
0.1-0.3 ms on an idle 2-core machine. 1 ms at p50 leaves room for a busy CI machine while
still catching any real overhead (httpx's request building alone was about 1 ms before the
socket-level stamps). ITL is an average over many gaps, so its p50 is tighter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration

TTFT_MS = 50.0
ITL_MS = 10.0


def profile(aiperf_cli, server: MockServer, tmp_path: Path, concurrency: int, count: int) -> dict:
    server.reset_stats()
    run_dir = tmp_path / f"c{concurrency}"
    result = aiperf_cli(
        "profile", "--url", server.url, "-m", "mock-model", "--endpoint-type", "chat",
        "--streaming", "--synthetic-input-tokens-mean", "64", "--output-tokens-mean", "24",
        "--concurrency", str(concurrency), "--request-count", str(count),
        "--artifact-dir", str(run_dir), "--random-seed", "7",
    )
    assert 0 == result.returncode, result.stderr
    return json.loads((run_dir / "profile_export_aiperf.json").read_text())


@pytest.fixture(scope="module")
def timed_server():
    with MockServer(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as server:
        yield server


@pytest.mark.parametrize(("concurrency", "count"), [(1, 40), (16, 160)])
def test_ttft_and_itl_agree_with_server_truth(aiperf_cli, timed_server, tmp_path, concurrency, count) -> None:
    """Reported TTFT and ITL p50 are within a millisecond of what the server measured."""
    summary = profile(aiperf_cli, timed_server, tmp_path, concurrency, count)
    truth = timed_server.stats()
    metrics = summary["metrics"]

    assert count == metrics["request_count"]["avg"] == truth["requests"]["ok"]
    assert abs(metrics["time_to_first_token"]["p50"] - truth["ttft_ms"]["p50"]) < 1.0
    # ITL: (last chunk - first chunk) / (tokens - 1) per request; the server's gaps are
    # exactly those intervals, so their medians must agree.
    assert abs(metrics["inter_token_latency"]["p50"] - truth["chunk_gap_ms"]["avg"]) < 0.5
    assert abs(metrics["inter_chunk_latency"]["p50"] - truth["chunk_gap_ms"]["p50"]) < 1.0
    # the server's truth is itself on schedule (absolute deadlines)
    assert abs(truth["ttft_ms"]["p50"] - TTFT_MS) < 2.0
    assert 24 == metrics["output_sequence_length"]["avg"]
    assert 64 == metrics["input_sequence_length"]["avg"]
