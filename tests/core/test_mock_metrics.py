"""The mock server's GET /metrics: its real state in vLLM's Prometheus names."""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest
from aiperf.testing import MockServer


def metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as answer:
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[re.sub(r'model_name="[^"]*",?', "", name).replace("{}", "")] = float(value)
    return out


def chat(url: str, stream: bool = True) -> None:
    body = json.dumps(
        {
            "model": "m",
            "stream": stream,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()
    request = urllib.request.Request(
        url + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


class TestMockMetrics:
    def test_mock_metrics_count_what_the_server_did(self) -> None:
        """Token counters, successes and a TTFT histogram of the answers actually sent."""
        with MockServer(ttft_ms=30) as server:
            for _ in range(3):
                chat(server.url)
            values = metrics(server.url)
            ttft = server.stats()["ttft_ms"]
        assert 3 == values["vllm:request_success_total"]
        assert 12 == values["vllm:generation_tokens_total"]
        assert 3 == values["vllm:time_to_first_token_seconds_count"]
        # Every TTFT was 30 ms and a little: in vLLM's (20, 40] ms bucket, not below it.
        assert 0 == values['vllm:time_to_first_token_seconds_bucket{le="0.02"}']
        assert 3 == values['vllm:time_to_first_token_seconds_bucket{le="0.04"}']
        assert ttft["avg"] * 3 / 1000 == pytest.approx(
            values["vllm:time_to_first_token_seconds_sum"]
        )
        assert 0 == values["vllm:num_requests_running"]
        assert 0 == values["vllm:num_requests_waiting"]

    def test_mock_metrics_running_counts_requests_in_flight(self) -> None:
        with MockServer(ttft_ms=1500) as server:
            threads = [threading.Thread(target=chat, args=(server.url,)) for _ in range(2)]
            for thread in threads:
                thread.start()
            seen = 0.0
            for _ in range(50):
                seen = metrics(server.url)["vllm:num_requests_running"]
                if seen == 2:
                    break
                threading.Event().wait(0.02)
            for thread in threads:
                thread.join()
        assert 2 == seen

    def test_mock_metrics_are_cumulative_across_stats_reset(self) -> None:
        with MockServer() as server:
            chat(server.url, stream=False)
            server.reset_stats()
            assert 1 == metrics(server.url)["vllm:request_success_total"]
