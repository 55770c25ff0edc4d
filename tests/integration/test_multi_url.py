"""Several --url values: requests spread round-robin over the servers, each line names its URL."""

from __future__ import annotations

import json

import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration


def test_two_servers_each_get_half_the_requests(aiperf_cli, tmp_path) -> None:
    """20 requests (plus 2 warm-up) over two mock servers: 11 each, by their own count."""
    with MockServer() as a, MockServer() as b:
        result = aiperf_cli(
            "profile", "--url", f"{a.url}/v1?api-version=2024-02-01&sig=sig-canary", "--url", b.url,
            "-m", "m", "--streaming", "--isl", "8", "--osl", "4", "--concurrency", "3",
            "--request-count", "20", "--warmup-request-count", "2", "--artifact-dir", "run",
        )
        assert 0 == result.returncode, result.stderr
        assert 11 == a.stats()["requests"]["ok"]
        assert 11 == b.stats()["requests"]["ok"]
    lines = [json.loads(line) for line in (tmp_path / "run/profile_export.jsonl").read_text().splitlines()]
    assert 22 == len(lines)
    shown_a = f"{a.url}/v1/chat/completions?api-version=***&sig=***"
    shown_b = f"{b.url}/v1/chat/completions"
    for line in lines:
        assert (shown_a if line["request_index"] % 2 == 0 else shown_b) == line["url"]
    for path in (tmp_path / "run").iterdir():
        assert "sig-canary" not in path.read_text(), path
        assert "2024-02-01" not in path.read_text(), path
    assert "sig-canary" not in result.stderr + result.stdout


def test_every_url_is_checked_before_the_run(aiperf_cli, tmp_path) -> None:
    """A second URL where nothing listens: one line naming it, nothing sent to the first."""
    from aiperf.testing import free_port

    dead = free_port()
    with MockServer() as a:
        result = aiperf_cli("profile", "--url", a.url, f"http://127.0.0.1:{dead}", "-m", "m", "--artifact-dir", "run")
        assert 0 == a.stats()["requests"]["total"]
    assert 1 == result.returncode
    assert f"cannot reach the server at http://127.0.0.1:{dead}" in result.stderr
