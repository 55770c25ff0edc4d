"""``--ttft-per-inflight-ms``: a mock server whose TTFT grows with the requests in flight."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration

BASE_MS = 300.0
PER_MS = 50.0
#: a chunk may leave late on a busy host; never early.
LATE_MS = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(ttft_ms=BASE_MS, ttft_per_inflight_ms=PER_MS, output_tokens=2) as s:
        yield s


def stream_one(url: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.Client(trust_env=False, timeout=10) as client:
        with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            for _ in response.iter_lines():
                pass


def ttfts(server: MockServer) -> list[float]:
    return sorted(r["ttft_ms"] for r in server.stats(raw=True)["raw"]["requests"])


def test_alone_a_request_gets_the_base_ttft(server: MockServer) -> None:
    server.reset_stats()
    stream_one(server.url)
    stream_one(server.url)
    for ttft in ttfts(server):
        assert BASE_MS <= ttft <= BASE_MS + LATE_MS


def test_each_request_in_flight_adds_to_the_ttft(server: MockServer) -> None:
    """Four at once: the k-th to arrive waits for the k-1 before it, 300/350/400/450 ms."""
    server.reset_stats()
    threads = [threading.Thread(target=stream_one, args=(server.url,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    seen = ttfts(server)
    assert 4 == len(seen)
    for k, ttft in enumerate(seen):
        expected = BASE_MS + k * PER_MS
        assert expected <= ttft <= expected + LATE_MS, seen


def test_the_flag_is_checked() -> None:
    from aiperf import UsageError

    with pytest.raises(UsageError, match="--ttft-per-inflight-ms: must be a number >= 0"):
        MockServer(ttft_per_inflight_ms=-1)
