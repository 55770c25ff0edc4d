"""The mock server, as a real process on loopback, spoken to over HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import time
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import Any

import httpx
import pytest
from aiperf.mock_server import MOCK_WORDS
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration

PROMPT = "say something nice about benchmarks please"


def text_of(n: int, start: int = 0) -> str:
    return "".join(" " + MOCK_WORDS[i % len(MOCK_WORDS)] for i in range(start, start + n))


def chat(
    max_tokens: int | None = 8, *, stream: bool = True, usage: bool = False, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "my-model",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": stream,
        **extra,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def completion(max_tokens: int = 8, *, stream: bool = True) -> dict[str, Any]:
    return {"model": "my-model", "prompt": PROMPT, "max_tokens": max_tokens, "stream": stream}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    # trust_env=False: a proxy configured in the environment must never see this traffic.
    with httpx.Client(trust_env=False, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[..., MockServer]]:
    """``servers(**options)``: a running server with those options and fresh /stats.

    Servers are started once per option set and shared by this module's tests (each start is
    a new Python process); every call resets the statistics so tests stay independent.
    """
    with contextlib.ExitStack() as stack:
        running: dict[str, MockServer] = {}

        def get(**options: Any) -> MockServer:
            key = repr(sorted(options.items()))
            if key not in running:
                running[key] = stack.enter_context(MockServer(**options))
            running[key].reset_stats()
            return running[key]

        yield get


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(ttft_ms=0, itl_ms=0, output_tokens=6, models=("my-model", "other-model")) as s:
        yield s


class Stream:
    """What a client saw of one streamed response, kept even when the stream broke."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: httpx.Headers = httpx.Headers()
        self.lines: list[str] = []
        self.error: Exception | None = None
        self.arrivals: list[float] = []

    @property
    def data(self) -> list[str]:
        return [line[len("data: ") :] for line in self.lines if line.startswith("data: ")]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self.data if d != "[DONE]"]

    def contents(self, key: str = "content") -> list[str]:
        """Non-empty content deltas (chat) or texts (completions), in order."""
        out = []
        for chunk in self.chunks:
            for choice in chunk["choices"]:
                value = choice["delta"].get("content") if "delta" in choice else choice.get("text")
                if value:
                    out.append(value)
        return out


def read_stream(
    client: httpx.Client, url: str, body: dict[str, Any], *, read_timeout: float = 10
) -> Stream:
    seen = Stream()
    timeout = httpx.Timeout(10, read=read_timeout)
    try:
        with client.stream("POST", url, json=body, timeout=timeout) as response:
            seen.status, seen.headers = response.status_code, response.headers
            for line in response.iter_lines():
                seen.arrivals.append(time.perf_counter())
                if line:
                    seen.lines.append(line)
    except httpx.TransportError as exc:
        seen.error = exc
    return seen


class TestInfo:
    def test_health_answers_ok(self, server: MockServer, client: httpx.Client) -> None:
        """GET /health is 200 with a JSON status."""
        response = client.get(server.url + "/health")
        assert (200, {"status": "ok"}) == (response.status_code, response.json())

    def test_models_lists_configured_names(self, server: MockServer, client: httpx.Client) -> None:
        """GET /v1/models lists every --model."""
        data = client.get(server.url + "/v1/models").json()
        assert ["my-model", "other-model"] == [m["id"] for m in data["data"]]

    def test_unknown_path_is_404_and_wrong_method_405(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """Routing errors carry the right status."""
        assert 404 == client.get(server.url + "/v2/nothing").status_code
        response = client.get(server.url + "/v1/chat/completions")
        assert (405, "POST") == (response.status_code, response.headers["allow"])


class TestChat:
    def test_chat_stream_role_chunk_then_content_then_done(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """A role-only first chunk, one content delta per token, finish_reason on the last, [DONE]."""
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(5))
        assert 200 == seen.status
        assert "text/event-stream" == seen.headers["content-type"]
        first = seen.chunks[0]["choices"][0]
        assert ({"role": "assistant", "content": ""}, None) == (
            first["delta"],
            first["finish_reason"],
        )
        assert [" " + w for w in MOCK_WORDS[:5]] == seen.contents()
        reasons = [c["choices"][0]["finish_reason"] for c in seen.chunks[1:]]
        assert [None, None, None, None, "length"] == reasons
        assert "[DONE]" == seen.data[-1]
        assert {"my-model"} == {c["model"] for c in seen.chunks}
        assert None is seen.error

    def test_chat_stream_usage_chunk_only_when_asked(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """include_usage adds a final chunk with empty choices and the token counts."""
        asked = read_stream(client, server.url + "/v1/chat/completions", chat(7, usage=True))
        usage_chunk = asked.chunks[-1]
        assert [] == usage_chunk["choices"]
        expected = {"prompt_tokens": len(PROMPT.split()), "completion_tokens": 7}
        expected["total_tokens"] = expected["prompt_tokens"] + 7
        assert expected == usage_chunk["usage"]
        plain = read_stream(client, server.url + "/v1/chat/completions", chat(7))
        assert all("usage" not in c for c in plain.chunks)

    def test_chat_non_stream_has_message_and_usage(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """Without stream, one body with the whole answer and usage."""
        body = client.post(server.url + "/v1/chat/completions", json=chat(4, stream=False)).json()
        assert "chat.completion" == body["object"]
        assert "my-model" == body["model"]
        choice = body["choices"][0]
        assert ({"role": "assistant", "content": text_of(4)}, "length") == (
            choice["message"],
            choice["finish_reason"],
        )
        assert {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10} == body["usage"]

    def test_chat_max_completion_tokens_wins_over_max_tokens(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """max_completion_tokens is the newer name and takes precedence."""
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(9, max_completion_tokens=3)
        )
        assert 3 == len(seen.contents())

    def test_chat_default_length_ends_with_stop(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """No limit in the request: --output-tokens words, finish_reason stop."""
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(None, ignore_eos=True, min_tokens=2)
        )
        assert text_of(6) == "".join(seen.contents())
        assert "stop" == seen.chunks[-1]["choices"][0]["finish_reason"]

    def test_chat_zero_tokens_finishes_without_content(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """max_tokens 0: a finish chunk, no content, then [DONE]."""
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(0, usage=True))
        assert [] == seen.contents()
        assert "length" == seen.chunks[1]["choices"][0]["finish_reason"]
        assert 0 == seen.chunks[-1]["usage"]["completion_tokens"]
        assert "[DONE]" == seen.data[-1]

    def test_chat_bad_requests_are_400(self, server: MockServer, client: httpx.Client) -> None:
        """Invalid JSON, missing messages and a negative max_tokens are client errors."""
        url = server.url + "/v1/chat/completions"
        statuses = [
            client.post(url, content=b"{not json").status_code,
            client.post(url, json={"model": "m"}).status_code,
            client.post(url, json=chat(-1)).status_code,
        ]
        assert [400, 400, 400] == statuses
        error = client.post(url, json=chat(-1)).json()["error"]
        assert "max_tokens" in error["message"]


class TestCompletions:
    def test_completions_stream_uses_text(self, server: MockServer, client: httpx.Client) -> None:
        """Completions stream choices[0].text, no role chunk, [DONE] at the end."""
        seen = read_stream(client, server.url + "/v1/completions", completion(4))
        assert [" " + w for w in MOCK_WORDS[:4]] == seen.contents()
        assert {"text_completion"} == {c["object"] for c in seen.chunks}
        assert "length" == seen.chunks[-1]["choices"][0]["finish_reason"]
        assert "[DONE]" == seen.data[-1]

    def test_completions_non_stream(self, server: MockServer, client: httpx.Client) -> None:
        """Without stream, choices[0].text holds the whole answer."""
        body = client.post(server.url + "/v1/completions", json=completion(3, stream=False)).json()
        assert (text_of(3), 3) == (body["choices"][0]["text"], body["usage"]["completion_tokens"])


class TestEmbeddings:
    def test_embeddings_one_vector_per_input(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """A vector per input, of the requested dimensions, and prompt-token usage."""
        body = client.post(
            server.url + "/v1/embeddings",
            json={"model": "e", "input": ["a b", "c d e"], "dimensions": 8},
        ).json()
        assert [0, 1] == [d["index"] for d in body["data"]]
        assert [8, 8] == [len(d["embedding"]) for d in body["data"]]
        assert {"prompt_tokens": 5, "total_tokens": 5} == body["usage"]
        assert "e" == body["model"]

    def test_embeddings_base64_matches_float(
        self, server: MockServer, client: httpx.Client
    ) -> None:
        """encoding_format base64 carries the same little-endian float32 vector."""
        url = server.url + "/v1/embeddings"
        floats = client.post(url, json={"model": "e", "input": "x"}).json()["data"][0]["embedding"]
        encoded = client.post(
            url, json={"model": "e", "input": "x", "encoding_format": "base64"}
        ).json()
        raw = base64.b64decode(encoded["data"][0]["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert floats == pytest.approx(decoded, abs=1e-6)


class TestTokensPerChunk:
    def test_tokens_per_chunk_groups_words(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """--tokens-per-chunk 3 with 10 tokens: chunks of 3, 3, 3 and 1 words."""
        server = servers(ttft_ms=0, itl_ms=0, tokens_per_chunk=3)
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(10, usage=True))
        assert [3, 3, 3, 1] == [len(c.split()) for c in seen.contents()]
        assert text_of(10) == "".join(seen.contents())
        assert 10 == seen.chunks[-1]["usage"]["completion_tokens"]


class TestKeepAlive:
    def test_two_requests_on_one_connection(self, server: MockServer) -> None:
        """HTTP/1.1 keep-alive: a second request on the same socket gets its own answer."""
        body = json.dumps(chat(2, stream=False)).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            answers = []
            for _ in range(2):
                sock.sendall(request)
                answers.append(_read_http_response(sock))
        assert [200, 200] == [status for status, _ in answers]
        ids = [json.loads(payload)["id"] for _, payload in answers]
        assert ids[0] != ids[1]


def _read_http_response(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ")[1]), rest[:length]


class TestStats:
    def test_stats_count_requests_and_reset(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """/stats counts by endpoint and streaming; /stats/reset starts a new window."""
        server = servers(ttft_ms=0, itl_ms=0)
        read_stream(client, server.url + "/v1/chat/completions", chat(4))
        read_stream(client, server.url + "/v1/chat/completions", chat(4))
        client.post(server.url + "/v1/completions", json=completion(3, stream=False))
        stats = server.stats()
        assert {"chat": 2, "completions": 1} == stats["requests"]["by_endpoint"]
        assert (3, 3, 2) == (
            stats["requests"]["total"],
            stats["requests"]["ok"],
            stats["requests"]["streaming"],
        )
        assert {"prompt": 18, "completion": 11} == stats["tokens"]
        assert (2, 6) == (stats["ttft_ms"]["count"], stats["chunk_gap_ms"]["count"])
        assert 3 == stats["request_latency_ms"]["count"]
        assert "raw" not in stats
        server.reset_stats()
        after = server.stats()
        assert (0, 0, None) == (
            after["requests"]["total"],
            after["ttft_ms"]["count"],
            after["ttft_ms"]["p50"],
        )

    def test_stats_raw_lists_each_request(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """?raw=1 adds the samples and one record per request, matching the response id."""
        server = servers(ttft_ms=0, itl_ms=0)
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(3))
        raw = server.stats(raw=True)["raw"]
        record = raw["requests"][0]
        assert f"chatcmpl-mock-{record['id']}" == seen.chunks[0]["id"]
        assert ("chat", True, "ok", 3, 3) == (
            record["endpoint"],
            record["stream"],
            record["outcome"],
            record["completion_tokens"],
            record["chunks"],
        )
        assert [record["ttft_ms"]] == raw["ttft_ms"]
        assert record["chunk_gaps_ms"] == raw["chunk_gap_ms"]

    def test_stats_summary_matches_raw_samples(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """Summary fields are computed from exactly the raw samples."""
        server = servers(ttft_ms=1, itl_ms=1)
        for _ in range(3):
            read_stream(client, server.url + "/v1/chat/completions", chat(5))
        stats = server.stats(raw=True)
        gaps = stats["raw"]["chunk_gap_ms"]
        summary = stats["chunk_gap_ms"]
        assert (12, min(gaps), max(gaps)) == (summary["count"], summary["min"], summary["max"])
        assert sum(gaps) / len(gaps) == pytest.approx(summary["avg"])
        assert (
            sorted(gaps)[summary["count"] // 2]
            >= summary["p50"]
            >= sorted(gaps)[summary["count"] // 2 - 1]
        )


class TestErrors:
    @pytest.mark.parametrize("status", [500, 503])
    def test_error_rate_one_answers_every_request_with_status(
        self, status: int, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """--error-rate 1: each inference request gets --error-status with an OpenAI error body."""
        server = servers(error_rate=1.0, error_status=status)
        responses = [
            client.post(server.url + "/v1/chat/completions", json=chat(3)) for _ in range(3)
        ]
        health = client.get(server.url + "/health")
        stats = server.stats()
        assert [status] * 3 == [r.status_code for r in responses]
        assert {"server_error"} == {r.json()["error"]["type"] for r in responses}
        assert 200 == health.status_code
        assert ({str(status): 3}, 0) == (stats["requests"]["errors"], stats["requests"]["ok"])

    def test_429_carries_retry_after(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """An injected 429 says when to retry."""
        server = servers(error_rate=1.0, error_status=429, retry_after=7)
        response = client.post(server.url + "/v1/completions", json=completion(2))
        assert (429, "7", "rate_limit_exceeded") == (
            response.status_code,
            response.headers["retry-after"],
            response.json()["error"]["type"],
        )

    def test_error_rate_half_mixes_errors_and_answers(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """With rate 0.5 and a seed, some requests fail and the rest succeed, and /stats agrees."""
        server = servers(error_rate=0.5, seed=7, ttft_ms=0, itl_ms=0)
        codes = [
            client.post(
                server.url + "/v1/completions", json=completion(2, stream=False)
            ).status_code
            for _ in range(40)
        ]
        stats = server.stats()
        assert {200, 500} == set(codes)
        assert (codes.count(500), codes.count(200)) == (
            stats["requests"]["errors"]["500"],
            stats["requests"]["ok"],
        )


FAULT_TOKENS = 10
HALF = FAULT_TOKENS // 2


def fault_options(kind: str, **options: Any) -> dict[str, Any]:
    # Chunks 1 ms apart: every chunk before the fault reaches the client well before it.
    return {"ttft_ms": 1, "itl_ms": 1, "faults": {kind: 1.0}, **options}


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll until predicate() holds (the server notices a client's close asynchronously)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


class TestStreamFaults:
    def test_fault_reset_aborts_mid_stream(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """reset: half the content arrives, then the connection is reset; no [DONE]."""
        server = servers(**fault_options("reset"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        stats = server.stats()
        assert HALF == len(seen.contents())
        assert isinstance(seen.error, httpx.ReadError | httpx.RemoteProtocolError)
        assert "[DONE]" not in seen.data
        assert ({"reset": 1}, 0) == (stats["requests"]["faults"], stats["requests"]["ok"])

    def test_fault_reset_sends_tcp_rst(self, servers: Callable[..., MockServer]) -> None:
        """reset really is a TCP reset, not an orderly close."""
        server = servers(**fault_options("reset"))
        body = json.dumps(chat(FAULT_TOKENS)).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            with pytest.raises(ConnectionResetError):
                while sock.recv(65536):
                    pass

    def test_fault_close_ends_body_cleanly_without_done(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """close: a well-formed end of the HTTP body after half the content, no finish, no [DONE]."""
        server = servers(**fault_options("close"))
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS, usage=True)
        )
        stats = server.stats()
        assert (None, HALF) == (seen.error, len(seen.contents()))
        assert "[DONE]" not in seen.data
        assert all(c["choices"] and c["choices"][0]["finish_reason"] is None for c in seen.chunks)
        assert {"close": 1} == stats["requests"]["faults"]

    def test_fault_disconnect_truncates_the_body(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """disconnect: the connection closes mid-body, which the client sees as incomplete."""
        server = servers(**fault_options("disconnect"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        assert HALF == len(seen.contents())
        assert isinstance(seen.error, httpx.RemoteProtocolError)

    def test_fault_malformed_sse_merges_two_events(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """malformed-sse: a data line without its blank line, so an SSE parser gets non-JSON data."""
        server = servers(**fault_options("malformed-sse"))
        body = json.dumps(completion(FAULT_TOKENS)).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/completions HTTP/1.1\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            raw = _read_chunked_body(sock)
        events = [event for event in raw.decode().split("\n\n") if event]
        bad = [e for e in events if e.count("data:") > 1]
        assert 1 == len(bad)
        data = "\n".join(line[len("data: ") :] for line in bad[0].split("\n"))
        with pytest.raises(json.JSONDecodeError):
            json.loads(data)
        # The broken event sits where content chunk HALF would be, and the stream goes on.
        assert HALF == events.index(bad[0])
        assert "data: [DONE]" == events[-1]

    def test_fault_malformed_json_chunk(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """malformed-json: one data line is truncated JSON; the rest of the stream is intact."""
        server = servers(**fault_options("malformed-json"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        stats = server.stats()
        broken = []
        for index, data in enumerate(seen.data):
            try:
                json.loads(data) if data != "[DONE]" else None
            except json.JSONDecodeError:
                broken.append(index)
        assert [1 + HALF] == broken  # after the role chunk and HALF content chunks
        assert (FAULT_TOKENS + 3, "[DONE]") == (len(seen.data), seen.data[-1])
        assert {"malformed-json": 1} == stats["requests"]["faults"]

    def test_fault_stall_first_sends_nothing(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """stall-first: not even the status line within the client's read timeout."""
        server = servers(**fault_options("stall-first", stall_seconds=30))
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS), read_timeout=0.3
        )
        assert (0, [], True) == (
            seen.status,
            seen.lines,
            isinstance(seen.error, httpx.ReadTimeout),
        )
        # The client hung up; the server counts the fault and frees the request once it notices.
        expected = ({"stall-first": 1}, 0)
        wait_for(lambda: expected == itemgetter("faults", "in_flight")(server.stats()["requests"]))

    def test_fault_stall_mid_stops_after_half(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """stall-mid: half the content, then silence longer than the read timeout."""
        server = servers(**fault_options("stall-mid", stall_seconds=30))
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS), read_timeout=0.3
        )
        assert (200, HALF) == (seen.status, len(seen.contents()))
        assert isinstance(seen.error, httpx.ReadTimeout)

    def test_fault_stall_resumes_after_stall_seconds(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """A short stall-mid delays the second half by --stall-seconds and then completes."""
        server = servers(**fault_options("stall-mid", stall_seconds=0.2))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        record = server.stats(raw=True)["raw"]["requests"][0]
        assert (FAULT_TOKENS, "[DONE]") == (len(seen.contents()), seen.data[-1])
        # The server's own clock: chunk HALF left no earlier than its deadline plus the stall.
        written = record["ttft_ms"] + sum(record["chunk_gaps_ms"][:HALF])
        assert written >= 1 + HALF * 1 + 200 - 0.001

    def test_fault_rate_applies_to_a_share(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """Rates below 1 fault some requests and leave the others whole."""
        server = servers(ttft_ms=0, itl_ms=0, faults={"close": 0.5}, seed=3)
        streams = [
            read_stream(client, server.url + "/v1/chat/completions", chat(4)) for _ in range(30)
        ]
        stats = server.stats()
        # Each fault hits its own request only: no follow-up request fails on a closed connection.
        assert [None] * 30 == [s.error for s in streams]
        done = ["[DONE]" in s.data for s in streams]
        assert {True, False} == set(done)
        assert (done.count(False), done.count(True)) == (
            stats["requests"]["faults"]["close"],
            stats["requests"]["ok"],
        )


class TestBadAnswerFaults:
    """The faults that send a complete answer with one bad part (issue: one bad response must
    never end a run): each is checked on the wire, streamed and not."""

    def test_usage_string_sends_counts_as_strings(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """usage-string: a usage event even unasked, with "6" where 6 belongs; content whole."""
        server = servers(**fault_options("usage-string"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        body = client.post(server.url + "/v1/completions", json=completion(4, stream=False)).json()
        assert (FAULT_TOKENS, "[DONE]") == (len(seen.contents()), seen.data[-1])
        assert str(FAULT_TOKENS) == seen.chunks[-1]["usage"]["completion_tokens"]
        assert "4" == body["usage"]["completion_tokens"]
        assert {"usage-string": 2} == server.stats()["requests"]["faults"]

    def test_nan_is_a_bare_nan_mid_stream(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """nan: one event holds a bare NaN (not JSON); the stream then goes on to [DONE]."""
        server = servers(**fault_options("nan"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        bad = [d for d in seen.data if "NaN" in d]
        assert 1 == len(bad)
        with pytest.raises(ValueError):
            json.loads(bad[0], parse_constant=_refuse)
        assert (1 + HALF, "[DONE]") == (seen.data.index(bad[0]), seen.data[-1])
        raw = client.post(server.url + "/v1/completions", json=completion(4, stream=False))
        assert b'"completion_tokens":NaN' in raw.content

    def test_deep_json_nests_a_thousand_arrays(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """deep-json: one event (or the whole body) nested 1000 arrays deep."""
        server = servers(**fault_options("deep-json"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        deep = [d for d in seen.data if d.startswith('{"choices":[[')]
        assert 1 == len(deep)
        assert 1000 == deep[0].count("[") == deep[0].count("]")
        with pytest.raises(RecursionError):  # Python's own json gives up at this depth
            json.loads(deep[0])
        seen.lines.remove("data: " + deep[0])
        assert (FAULT_TOKENS, "[DONE]") == (len(seen.contents()), seen.data[-1])
        raw = client.post(server.url + "/v1/completions", json=completion(4, stream=False))
        assert raw.content.startswith(b'{"choices":' + b"[" * 1000 + b"]")

    def test_huge_event_is_one_event_of_megabytes(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """huge-event: one event over 2 MiB without content; the answer is otherwise whole."""
        server = servers(**fault_options("huge-event"))
        seen = read_stream(client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS))
        sizes = sorted(len(d) for d in seen.data)
        assert sizes[-1] > 2 * 1024 * 1024 > sizes[-2]
        assert [] == seen.chunks[1 + HALF]["choices"]
        assert (FAULT_TOKENS, "[DONE]") == (len(seen.contents()), seen.data[-1])
        body = client.post(server.url + "/v1/completions", json=completion(4, stream=False))
        assert len(body.content) > 2 * 1024 * 1024
        assert 4 == body.json()["usage"]["completion_tokens"]

    def test_no_done_ends_after_the_finish_reason(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """no-done: the whole answer, finish_reason and usage, and no [DONE] (not an error)."""
        server = servers(**fault_options("no-done"))
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS, usage=True)
        )
        assert (None, FAULT_TOKENS) == (seen.error, len(seen.contents()))
        assert "[DONE]" not in seen.data
        assert "length" == seen.chunks[-2]["choices"][0]["finish_reason"]
        assert FAULT_TOKENS == seen.chunks[-1]["usage"]["completion_tokens"]

    def test_empty_has_a_finish_reason_and_no_content(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """empty: a finish_reason, usage of 0 tokens and no content, whatever was asked for."""
        server = servers(**fault_options("empty"))
        seen = read_stream(
            client, server.url + "/v1/chat/completions", chat(FAULT_TOKENS, usage=True)
        )
        body = client.post(server.url + "/v1/chat/completions", json=chat(4, stream=False)).json()
        assert ([], "[DONE]") == (seen.contents(), seen.data[-1])
        assert "length" == seen.chunks[-2]["choices"][0]["finish_reason"]
        assert 0 == seen.chunks[-1]["usage"]["completion_tokens"]
        assert ("", 0) == (body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"])


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_chunked_body(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    _, _, rest = data.partition(b"\r\n\r\n")
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest = body + rest[:size], rest[size + 2 :]
    return body


class TestBodyFaults:
    """Faults on non-streamed answers."""

    def test_fault_close_after_head(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """close: the response head, then the connection closes before the body."""
        server = servers(**fault_options("close"))
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(server.url + "/v1/completions", json=completion(4, stream=False))

    @pytest.mark.parametrize("kind", ["reset", "disconnect"])
    def test_fault_breaks_connection_mid_body(
        self, kind: str, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """reset and disconnect: half a body, then the connection is gone."""
        server = servers(**fault_options(kind))
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.post(server.url + "/v1/chat/completions", json=chat(4, stream=False))

    def test_fault_malformed_json_body(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """malformed-json: 200 with a body that is not JSON."""
        server = servers(**fault_options("malformed-json"))
        response = client.post(server.url + "/v1/embeddings", json={"model": "e", "input": "hi"})
        assert 200 == response.status_code
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.content)

    def test_fault_stall_first_times_out(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """stall-first: the client's read timeout fires."""
        server = servers(**fault_options("stall-first", stall_seconds=30))
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                server.url + "/v1/completions",
                json=completion(4, stream=False),
                timeout=httpx.Timeout(5, read=0.3),
            )


class TestSchedule:
    """Tokens leave on an absolute schedule, measured by the server and seen by the client.

    Tolerances. A chunk is never written before its deadline: the deadline and the write time
    come from the same server clock, so that bound is exact (up to float rounding). A chunk is
    written late by the timer's wake-up latency, about 0.1 ms on an idle machine; the *median*
    lateness must stay under ``MEDIAN_LATE_MS``, which leaves room for a loaded host (2 ms seen
    with a load average of 3.6 on 2 cores) but not for a schedule that is off. Any single
    chunk may be later when a busy host deschedules the server for a time slice (up to 14 ms
    seen on that machine), hence ``LATE_MS`` per chunk. That bound does not grow with the chunk index, which
    is the point: with relative sleeps each wake-up's lateness would add up along the stream.
    """

    LATE_MS = 30.0
    MEDIAN_LATE_MS = 5.0
    #: the client sees the last chunk after the server wrote it, plus loopback, httpx and its
    #: own scheduling, which on a busy host can take a time slice too.
    CLIENT_MS = 50.0

    def lateness(self, record: dict[str, Any], ttft_ms: float, step_ms: float) -> list[float]:
        """How late each content chunk was written, in ms after its deadline."""
        offsets = [record["ttft_ms"]]
        for gap in record["chunk_gaps_ms"]:
            offsets.append(offsets[-1] + gap)
        return [written - (ttft_ms + k * step_ms) for k, written in enumerate(offsets)]

    def check(self, late: list[float]) -> None:
        assert min(late) >= -0.001, late
        assert max(late) <= self.LATE_MS, late
        assert sorted(late)[len(late) // 2] <= self.MEDIAN_LATE_MS, late

    def test_ttft_and_gaps_follow_the_schedule(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """ttft 50 ms, itl 10 ms, 20 tokens: chunk k at 50 + 10k ms, and the client agrees."""
        server = servers(ttft_ms=50, itl_ms=10)
        seen = []
        for _ in range(3):
            start = time.perf_counter()
            stream = read_stream(client, server.url + "/v1/chat/completions", chat(20))
            seen.append((stream.arrivals[-1] - start) * 1e3)
        stats = server.stats(raw=True)
        records = stats["raw"]["requests"]
        assert [20, 20, 20] == [r["chunks"] for r in records]
        late = []
        for record, client_total in zip(records, seen):
            late += self.lateness(record, 50, 10)
            # The client cannot see the end before the server wrote it, nor much later.
            assert record["latency_ms"] <= client_total <= record["latency_ms"] + self.CLIENT_MS
        self.check(late)
        assert 10.0 == pytest.approx(stats["chunk_gap_ms"]["p50"], abs=1.0)

    def test_delays_do_not_accumulate_over_a_long_stream(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """1000 tokens 0.5 ms apart: the last leaves at ~500 ms, not 1000 wake-ups later."""
        server = servers(ttft_ms=0, itl_ms=0.5)
        seen = read_stream(client, server.url + "/v1/completions", completion(1000))
        record = server.stats(raw=True)["raw"]["requests"][0]
        assert (1000, 1000) == (len(seen.contents()), record["chunks"])
        self.check(self.lateness(record, 0, 0.5))

    def test_tokens_per_chunk_stretches_the_gap(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """With 4 tokens per chunk, chunks are 4 x itl apart."""
        server = servers(ttft_ms=5, itl_ms=5, tokens_per_chunk=4)
        read_stream(client, server.url + "/v1/chat/completions", chat(16))
        record = server.stats(raw=True)["raw"]["requests"][0]
        assert 4 == record["chunks"]
        self.check(self.lateness(record, 5, 20))

    def test_non_stream_body_leaves_when_last_token_is_due(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """A non-streamed answer is written at ttft + (n-1) x itl."""
        server = servers(ttft_ms=20, itl_ms=5)
        client.post(server.url + "/v1/chat/completions", json=chat(5, stream=False))
        latency = server.stats()["request_latency_ms"]["max"]
        assert 40 - 0.001 <= latency <= 40 + self.LATE_MS


class TestDistinctReplies:
    """--distinct-replies, --record-header, --record-bodies: what a conversation test needs."""

    def test_same_body_same_answer_other_body_other_answer(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """A streamed and a whole answer to one body agree; another body gets other words."""
        server = servers(distinct_replies=True)
        url = server.url + "/v1/chat/completions"
        first = "".join(read_stream(client, url, chat(12)).contents())
        again = "".join(read_stream(client, url, chat(12)).contents())
        whole = client.post(url, json=chat(12, stream=False)).json()["choices"][0]["message"]["content"]
        other = "".join(read_stream(client, url, chat(12, temperature=0.5)).contents())
        assert first == again
        assert 12 == len(first.split()) == len(other.split())
        assert first != other
        assert first != text_of(12)  # not the shared default sequence
        # The whole body answers the same words (its body differs only in "stream").
        assert 12 == len(whole.split())
        assert set(whole.split()) <= set(MOCK_WORDS)

    def test_default_answers_are_the_shared_sequence(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """Without the flag every answer is the same word sequence, whatever the body."""
        server = servers()
        url = server.url + "/v1/chat/completions"
        assert text_of(6) == "".join(read_stream(client, url, chat(6, temperature=0.1)).contents())
        assert text_of(6) == "".join(read_stream(client, url, chat(6, temperature=0.9)).contents())

    def test_recorded_headers_bodies_and_answers(
        self, servers: Callable[..., MockServer], client: httpx.Client
    ) -> None:
        """/stats?raw=1 keeps the named header (any case), the JSON body and the answer text."""
        server = servers(distinct_replies=True, record_headers=("X-Session-Id",), record_bodies=True)
        url = server.url + "/v1/chat/completions"
        with client.stream("POST", url, json=chat(5), headers={"x-session-id": "s-1", "X-Other": "no"}) as r:
            text = "".join(
                json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                for line in r.iter_lines()
                if line.startswith("data: {")
            )
        (record,) = server.stats(raw=True)["raw"]["requests"]
        assert {"x-session-id": "s-1"} == record["headers"]
        assert chat(5) == record["body"]
        assert text == record["reply"]
