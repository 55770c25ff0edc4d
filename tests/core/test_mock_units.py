"""The mock server's parts without a network: config, statistics and the HTTP parser."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiperf import UsageError
from aiperf._mock.config import MockServerConfig, parse_fault
from aiperf._mock.server import Connection, MockState
from aiperf._mock.stats import RequestTrace, Stats, percentile, summarize
from aiperf.mock_server import FAULT_KINDS, MOCK_WORDS, add_arguments, config_from_args
from hypothesis import given
from hypothesis import strategies as st


def parse(*argv: str) -> MockServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


class TestConfig:
    def test_config_flag_defaults_match_class_defaults(self) -> None:
        """`aiperf mock-server` with no flags is MockServerConfig()."""
        assert MockServerConfig() == parse()

    def test_config_to_argv_round_trips(self) -> None:
        """to_argv() gives flags that parse back to the same config."""
        config = MockServerConfig(
            host="::1",
            port=8123,
            ttft_ms=12.5,
            itl_ms=0.1,
            output_tokens=7,
            tokens_per_chunk=2,
            models=("a", "-dash"),
            embedding_dimensions=3,
            error_rate=0.25,
            error_status=429,
            retry_after=4,
            faults={"reset": 0.1, "stall_mid": 0.2},
            stall_seconds=1.5,
            seed=9,
            stats_capacity=10,
        )
        assert config == parse(*config.to_argv())

    @given(
        ttft=st.floats(0, 1e4, allow_nan=False),
        rates=st.lists(st.floats(0, 0.99 / len(FAULT_KINDS)), min_size=len(FAULT_KINDS), max_size=len(FAULT_KINDS)),
    )
    def test_config_round_trips_any_valid_values(self, ttft: float, rates: list[float]) -> None:
        """Floats survive the trip through flags exactly."""
        config = MockServerConfig(ttft_ms=ttft, faults=dict(zip(FAULT_KINDS, rates)))
        assert config == parse(*config.to_argv())

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"ttft_ms": -1}, "--ttft-ms: must be a number >= 0 (got -1.0)"),
            ({"itl_ms": float("nan")}, "--itl-ms: must be a number >= 0 (got nan)"),
            ({"tokens_per_chunk": 0}, "--tokens-per-chunk: must be >= 1 (got 0)"),
            ({"error_rate": 1.5}, "--error-rate: must be between 0 and 1 (got 1.5)"),
            (
                {"error_status": 200},
                "--error-status: must be an HTTP error status 400-599 (got 200)",
            ),
            ({"port": 70000}, "--port: must be between 0 and 65535 (got 70000)"),
            (
                {"faults": {"reset": 2}},
                "--fault: the rate of reset must be between 0 and 1 (got 2.0)",
            ),
            (
                {"error_rate": 0.6, "faults": {"close": 0.5}},
                "--error-rate and --fault rates add up to 1.1; they must add up to at most 1",
            ),
        ],
    )
    def test_config_rejects_bad_values_naming_the_flag(
        self, options: dict[str, Any], message: str
    ) -> None:
        """Each bad value is one line that names its flag."""
        with pytest.raises(UsageError) as caught:
            MockServerConfig(**options)
        assert message == str(caught.value)

    def test_parse_fault_forms(self) -> None:
        """KIND alone means rate 1; underscores and case are forgiven."""
        assert [("reset", 1.0), ("stall-mid", 0.25)] == [
            parse_fault("reset"),
            parse_fault("Stall_Mid:0.25"),
        ]

    @pytest.mark.parametrize("text", ["bogus", "reset:abc", "reset:"])
    def test_parse_fault_rejects(self, text: str) -> None:
        """Unknown kinds and non-numeric rates are usage errors."""
        with pytest.raises(UsageError, match="--fault"):
            parse_fault(text)

    def test_repeated_fault_kind_is_an_error(self) -> None:
        """The same kind twice is ambiguous."""
        with pytest.raises(UsageError, match="given twice"):
            parse("--fault", "reset:0.1", "--fault", "reset:0.2")

    def test_mock_words_are_plain_distinct_words(self) -> None:
        """The vocabulary: lowercase ASCII letters only, no repeats."""
        assert all(w.isascii() and w.isalpha() and w.islower() for w in MOCK_WORDS)
        assert len(MOCK_WORDS) == len(set(MOCK_WORDS))


class TestStatistics:
    @given(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200),
        st.sampled_from([0, 1, 50, 90, 99, 100]),
    )
    def test_percentile_matches_numpy_linear(self, values: list[float], q: int) -> None:
        """Linear interpolation between closest ranks, as numpy does by default."""
        assert float(np.percentile(values, q)) == pytest.approx(
            percentile(sorted(values), q), rel=1e-9, abs=1e-6
        )

    def test_summarize_empty_has_count_zero_and_nulls(self) -> None:
        """No samples: count 0 and null statistics, never an error."""
        assert {
            "count": 0,
            "avg": None,
            "min": None,
            "max": None,
            "p50": None,
            "p90": None,
            "p99": None,
        } == summarize([])

    def test_stats_ignore_requests_from_before_a_reset(self) -> None:
        """A request in flight across a reset is not counted in the new window."""
        stats = Stats(capacity=10, loop_origin=0.0)
        old = RequestTrace(
            rid=1,
            endpoint="chat",
            model="m",
            stream=True,
            t_received=0.0,
            generation=stats.generation,
        )
        stats.begin(old)
        stats.reset()
        old.chunk_writes = [0.05, 0.06]
        stats.finish(old)
        snapshot = stats.snapshot(raw=True, config={})
        requests = snapshot["requests"]
        assert (0, 0, 0, []) == (
            requests["total"],
            requests["ok"],
            requests["in_flight"],
            snapshot["raw"]["requests"],
        )

    def test_stats_capacity_drops_and_counts(self) -> None:
        """Beyond the capacity, samples are counted as dropped instead of kept."""
        stats = Stats(capacity=2, loop_origin=0.0)
        trace = RequestTrace(
            rid=1,
            endpoint="chat",
            model="m",
            stream=True,
            t_received=0.0,
            generation=stats.generation,
        )
        stats.begin(trace)
        trace.chunk_writes = [0.01, 0.02, 0.03, 0.04]
        trace.t_done = 0.04
        stats.finish(trace)
        snapshot = stats.snapshot(raw=False, config={})
        assert (2, 1) == (snapshot["chunk_gap_ms"]["count"], snapshot["dropped_samples"])


class FakeTransport(asyncio.Transport):
    """Collects what the server writes; records how the connection ended."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.ended: str | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        self.ended = "close"

    def abort(self) -> None:
        self.ended = "abort"

    def is_closing(self) -> bool:
        return self.ended is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def connect(loop: asyncio.AbstractEventLoop, **options: Any) -> tuple[Connection, FakeTransport]:
    # Zero delays: every response is written synchronously from data_received.
    state = MockState(MockServerConfig(**options), loop)
    conn = Connection(state)
    transport = FakeTransport()
    conn.connection_made(transport)
    return conn, transport


def http_request(path: str, body: dict[str, Any] | None = None, *, headers: str = "") -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    method = "GET" if body is None else "POST"
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: test\r\n{headers}content-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream into (status, body) pairs (content-length or chunked)."""
    out = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        fields = dict(line.lower().split(b": ", 1) for line in lines[1:])
        if status < 200:
            body = b""
        elif b"content-length" in fields:
            n = int(fields[b"content-length"])
            body, raw = raw[:n], raw[n:]
        else:
            body = b""
            while True:
                size_line, _, raw = raw.partition(b"\r\n")
                size = int(size_line, 16)
                body, raw = body + raw[:size], raw[size + 2 :]
                if size == 0:
                    break
        out.append((status, body))
    return out


CHAT = {
    "model": "m",
    "messages": [{"role": "user", "content": "a b c"}],
    "max_tokens": 3,
    "stream": True,
}


class TestHttpParser:
    def test_request_split_at_every_byte_gets_one_answer(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """A request that arrives one byte at a time is parsed once, when complete."""
        conn, transport = connect(loop)
        for byte in http_request("/v1/chat/completions", CHAT):
            conn.data_received(bytes([byte]))
        [(status, body)] = responses(bytes(transport.out))
        assert 200 == status
        assert body.endswith(b"data: [DONE]\n\n")
        assert None is transport.ended

    def test_back_to_back_requests_in_one_read(self, loop: asyncio.AbstractEventLoop) -> None:
        """Two requests in one read are answered in order on the same connection."""
        conn, transport = connect(loop)
        conn.data_received(
            http_request("/health")
            + http_request("/v1/completions", {"prompt": "x", "max_tokens": 2})
        )
        answers = responses(bytes(transport.out))
        assert [200, 200] == [status for status, _ in answers]
        assert b'{"status":"ok"}' == answers[0][1]
        assert " the of" == json.loads(answers[1][1])["choices"][0]["text"]

    def test_connection_close_header_closes_after_answer(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """`connection: close` is honoured once the answer is written."""
        conn, transport = connect(loop)
        conn.data_received(
            http_request("/v1/chat/completions", CHAT, headers="connection: close\r\n")
        )
        assert ("close", 1) == (transport.ended, len(responses(bytes(transport.out))))

    @pytest.mark.parametrize(
        ("raw", "status"),
        [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\nno-colon-here\r\n\r\n", 400),
            (b"POST /v1/completions HTTP/1.1\r\ncontent-length: x\r\n\r\n", 400),
            (b"POST /v1/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", 411),
        ],
    )
    def test_malformed_requests_get_status_and_close(
        self, loop: asyncio.AbstractEventLoop, raw: bytes, status: int
    ) -> None:
        """A request the parser cannot use is answered with an error and the connection closed."""
        conn, transport = connect(loop)
        conn.data_received(raw)
        assert ([status], "close") == (
            [s for s, _ in responses(bytes(transport.out))],
            transport.ended,
        )

    def test_expect_continue_gets_100_before_the_body(
        self, loop: asyncio.AbstractEventLoop
    ) -> None:
        """curl's `Expect: 100-continue` is answered so the client sends its body."""
        conn, transport = connect(loop)
        request = http_request(
            "/v1/completions", {"prompt": "x", "max_tokens": 1}, headers="expect: 100-continue\r\n"
        )
        head, _, body = request.partition(b"\r\n\r\n")
        conn.data_received(head + b"\r\n\r\n")
        assert b"HTTP/1.1 100 Continue\r\n\r\n" == bytes(transport.out)
        conn.data_received(body)
        assert [100, 200] == [s for s, _ in responses(bytes(transport.out))]

    def test_client_gone_mid_stream_is_counted(self, loop: asyncio.AbstractEventLoop) -> None:
        """A client that disconnects before the end shows up as a client_disconnect."""
        conn, _ = connect(loop, ttft_ms=1000)
        conn.data_received(http_request("/v1/chat/completions", CHAT))
        conn.connection_lost(None)
        requests = conn.state.stats.snapshot(raw=False, config={})["requests"]
        assert (1, 0, 0) == (requests["client_disconnects"], requests["ok"], requests["in_flight"])
