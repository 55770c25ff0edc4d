"""--workers: how load is split across processes, and a real run over two of them."""

from __future__ import annotations

import json

import pytest
from aiperf._config import build_config
from aiperf._workers import auto_workers, split


def config(**values):
    return build_config({"model": "m", **values})


class TestSplit:
    def test_split_divides_concurrency_and_count_exactly(self) -> None:
        """Shares add up to the whole: 5 in flight and 11 requests over 2 workers."""
        shares = split(config(concurrency=5, request_count=11, warmup_request_count=3), 2)
        assert [3, 2] == [s.concurrency for s in shares]
        assert [6, 5] == [s.request_count for s in shares]
        assert [2, 1] == [s.warmup_request_count for s in shares]

    def test_split_divides_rate(self) -> None:
        """Each worker sends at rate / n."""
        shares = split(config(request_rate=300.0, request_count=30), 3)
        assert [100.0] * 3 == [s.request_rate for s in shares]

    def test_split_drops_workers_with_nothing_to_do(self) -> None:
        """Concurrency 2 over 4 workers: two processes, not four."""
        assert 2 == len(split(config(concurrency=2, request_count=10), 4))

    def test_auto_workers_is_one_on_small_machines(self) -> None:
        """With fewer than 4 cores the client stays in one process."""
        assert 1 == auto_workers(config(concurrency=256), cpus=2)
        assert 4 == auto_workers(config(concurrency=256), cpus=8)
        assert 7 == auto_workers(config(concurrency=1024), cpus=8)
        assert 4 == auto_workers(config(concurrency=256, workers=4), cpus=2)


@pytest.mark.integration
def test_two_workers_give_one_merged_result(aiperf_cli, mock_server, tmp_path) -> None:
    """Two processes, one run directory: every request exactly once, one summary."""
    result = aiperf_cli(
        "profile", "--url", mock_server.url, "-m", "mock-model", "--streaming",
        "--concurrency", "4", "--request-count", "50", "--warmup-request-count", "4",
        "--workers", "2", "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
        "--artifact-dir", str(tmp_path / "run"),
    )
    assert 0 == result.returncode, result.stderr
    summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
    assert 50 == summary["metrics"]["request_count"]["avg"]
    assert 8 == summary["metrics"]["output_sequence_length"]["avg"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()]
    indices = sorted(line["request_index"] for line in lines)
    assert list(range(54)) == indices
    assert 4 == sum(1 for line in lines if line["phase"] == "warmup")
