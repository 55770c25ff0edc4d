"""The mock server's prefix cache: what it reports per request, alone and over HTTP."""

from __future__ import annotations

import httpx
import pytest
from aiperf._mock.config import MockServerConfig
from aiperf._mock.prefix import PrefixCache
from aiperf.testing import MockServer


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


class TestPrefixCache:
    def test_shared_prefix_in_whole_blocks(self) -> None:
        cache = PrefixCache(block_size=4)
        assert 0 == cache.observe(words("a", 10))
        # The same first 8 words, then others: two whole blocks are cached.
        assert 8 == cache.observe(words("a", 8) + " " + words("b", 6))
        # The same 10 words again: two whole blocks (the last 2 words are no block).
        assert 8 == cache.observe(words("a", 10))

    def test_a_block_seen_elsewhere_is_no_prefix(self) -> None:
        """Blocks are keyed with everything before them: a known block after a new one misses."""
        cache = PrefixCache(block_size=4)
        cache.observe(words("a", 8))
        assert 0 == cache.observe(words("z", 4) + " " + words("a", 8))
        assert 0 == cache.observe(words("q", 8))

    def test_full_cache_starts_again(self) -> None:
        cache = PrefixCache(block_size=2, capacity=3)
        cache.observe(words("a", 6))
        assert 3 == len(cache.seen)
        cache.observe(words("b", 2))
        assert (1, 1) == (len(cache.seen), cache.flushes)

    def test_config_flag(self) -> None:
        argv = MockServerConfig(prefix_block_size=0).to_argv()
        assert "0" == argv[argv.index("--prefix-block-size") + 1]
        with pytest.raises(Exception, match="--prefix-block-size: must be >= 0"):
            MockServerConfig(prefix_block_size=-1)


@pytest.mark.integration
def test_per_request_cached_tokens_over_http() -> None:
    """Chat and completions prompts: /stats?raw=1 lists each request's cached prompt tokens,
    the summary their total; /stats/reset empties the cache."""
    shared = words("s", 32)
    with MockServer(prefix_block_size=16) as server, httpx.Client(trust_env=False, timeout=10) as client:

        def chat(text: str) -> None:
            body = {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": text}]}
            assert 200 == client.post(server.url + "/v1/chat/completions", json=body).status_code

        chat(shared + " " + words("x", 10))
        chat(shared + " " + words("y", 20))
        chat(words("u", 40))
        body = {"model": "m", "max_tokens": 2, "prompt": shared}
        assert 200 == client.post(server.url + "/v1/completions", json=body).status_code
        stats = server.stats(raw=True)
        assert [0, 32, 0, 32] == [r["prefix_cached_tokens"] for r in stats["raw"]["requests"]]
        assert 64 == stats["prefix_cache"]["cached_tokens"]
        assert pytest.approx(64 / (42 + 52 + 40 + 32)) == stats["prefix_cache"]["hit_ratio"]
        server.reset_stats()
        chat(shared)
        assert [0] == [r["prefix_cached_tokens"] for r in server.stats(raw=True)["raw"]["requests"]]
