"""The request path against small scripted servers on loopback: one write per request, how
streams end, typed errors for odd answers, keep-alive retries, and no response that can end a
run. Each server here answers each request with the bytes the test gives it."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
from aiperf._endpoints import CHAT, COMPLETIONS
from aiperf._http import Sender, request_head
from aiperf._transport import Pool
from aiperf._types import Phase, RequestRecord

pytestmark = pytest.mark.integration

#: a guard against a hang, never a measurement.
GUARD_S = 10

Answer = bytes | Callable[[trio.SocketStream], Awaitable[None]]


def sse(*events: Any, done: bool = True) -> bytes:
    out = b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(text: str | None = None, *, finish: str | None = None, role: bool = False) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if text is not None:
        delta["content"] = text
    return {"id": "x", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def usage_chunk(completion: Any = 2) -> dict[str, Any]:
    return {"id": "x", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": completion}}


def chunked(body: bytes, *, end: bool = True) -> bytes:
    return (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + (b"0\r\n\r\n" if end else b"")


def stream_response(body: bytes, *, end: bool = True, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    return head + extra + b"\r\n" + chunked(body, end=end)


def plain(status: int, body: bytes, *, ctype: bytes = b"application/json", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %d X\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
        % (status, ctype, len(body), extra, body)
    )


async def hold(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


def then_hold(data: bytes) -> Answer:
    async def answer(stream: trio.SocketStream) -> None:
        await stream.send_all(data)
        await trio.sleep_forever()

    return answer


async def close_now(stream: trio.SocketStream) -> None:
    await stream.aclose()


@attrs.define
class Scripted:
    """A loopback server that answers request k with ``answers[k]``."""

    answers: list[Answer]
    requests: list[bytes] = attrs.field(factory=list)
    #: bytes of the first recv() of each request (what arrived together).
    first_reads: list[bytes] = attrs.field(factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buf = b""
        try:
            while True:
                first = b""
                while b"\r\n\r\n" not in buf:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    first = first or data
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                length = int(match[1]) if match else 0
                while len(rest) < length:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    rest += data
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                self.first_reads.append(first or buf)
                buf = rest[length:]
                answer = self.answers.pop(0) if self.answers else close_now
                if isinstance(answer, bytes):
                    await stream.send_all(answer)
                else:
                    await answer(stream)
                    return
        except trio.BrokenResourceError:
            return


@pytest.fixture
async def serve(nursery: trio.Nursery) -> Callable[..., Awaitable[Scripted]]:
    async def start(*answers: Answer) -> Scripted:
        server = Scripted(list(answers))
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        return server

    return start


def make_sender(server: Scripted, *, streaming: bool = True, endpoint: Any = CHAT, **kw: Any) -> Sender:
    url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
    head = request_head(url, {"Content-Type": "application/json", "Authorization": "Bearer k"})
    return Sender(pool=Pool("127.0.0.1", server.port), head=head, endpoint=endpoint,
                  streaming=streaming, timeout_s=kw.pop("timeout_s", 60), **kw)  # fmt: skip


async def send(sender: Sender, index: int = 0, max_tokens: int | None = 4) -> RequestRecord:
    record = RequestRecord(index=index, phase=Phase.PROFILE, max_tokens=max_tokens)
    with trio.fail_after(GUARD_S):
        await sender.send(record, b'{"model":"m","stream":true}')
    return record


GOOD = sse(chunk(role=True), chunk("Hello"), chunk(" world", finish="stop"), usage_chunk())


class TestOneWrite:
    async def test_head_and_body_leave_in_one_send(
        self, serve: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The whole request is handed to the kernel in one write, head and body together."""
        server = await serve(stream_response(GOOD), stream_response(GOOD))
        sender = make_sender(server)
        conn = await sender.pool.connect()
        fd = conn.raw.socket.fileno()
        sends: list[int] = []
        real_write, real_socket = os.write, conn.raw.socket

        def write(target: int, data: Any) -> int:
            if target == fd:
                sends.append(len(data))
            return real_write(target, data)

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_socket, name)

            async def send(self, data: Any) -> int:
                sends.append(len(data))
                return await real_socket.send(data)

        monkeypatch.setattr(os, "write", write)
        conn.raw.socket = Counting()  # type: ignore[assignment]
        sender.pool._idle.append(conn)  # noqa: SLF001 - the connection the next request takes
        for i in range(2):
            record = await send(sender, i)
            assert record.ok, record.error
            assert record.start_ns <= record.sent_end_ns
        assert 2 == len(sends)
        assert sends == [len(r) for r in server.requests]
        # what was sent is one well-formed request with its body
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"\r\nContent-Length: %d" % len(body) in head
        assert b'{"model":"m","stream":true}' == body
        # loopback, one small send: it arrives as one piece
        assert server.first_reads[0] == server.requests[0]


class TestStreamEndings:
    async def test_done_ends_the_request_while_the_server_holds_the_connection(self, serve: Any) -> None:
        """[DONE] then nothing (no chunked terminator, no close): the request ends at [DONE]."""
        server = await serve(then_hold(stream_response(GOOD, end=False)))
        record = await send(make_sender(server))
        assert record.ok, record.error
        assert "Hello world" == record.output_text
        assert 2 == len(record.chunk_ns)
        assert 2 == record.usage.completion_tokens

    async def test_finish_reason_then_end_of_body_is_complete(self, serve: Any) -> None:
        """No [DONE]: a finish_reason chunk (and a usage chunk) then the end of the body."""
        body = sse(chunk(role=True), chunk("Hi"), chunk(" there", finish="length"), usage_chunk(), done=False)
        server = await serve(stream_response(body), stream_response(body))
        sender = make_sender(server)
        for i in range(2):
            record = await send(sender, i)
            assert record.ok, record.error
            assert "Hi there" == record.output_text
        assert 1 == server.connections  # the connection was reused

    async def test_no_done_no_finish_reason_is_incomplete(self, serve: Any) -> None:
        server = await serve(stream_response(sse(chunk("Hi"), chunk(" there"), done=False)))
        record = await send(make_sender(server))
        assert "incomplete_stream" == record.error.type
        assert 2 == len(record.chunk_ns)  # the timing it had is kept

    async def test_text_after_done_is_ignored(self, serve: Any) -> None:
        body = GOOD + sse(chunk(" more"), done=False)
        server = await serve(stream_response(body))
        record = await send(make_sender(server))
        assert record.ok and "Hello world" == record.output_text

    async def test_bom_at_stream_start_is_not_an_event(self, serve: Any) -> None:
        server = await serve(stream_response(b"\xef\xbb\xbf" + GOOD))
        record = await send(make_sender(server))
        assert record.ok, record.error
        assert "Hello world" == record.output_text

    async def test_role_only_and_usage_only_chunks_are_not_content(self, serve: Any) -> None:
        """OpenAI's shape: role-only first chunk, usage-only last chunk with empty choices."""
        server = await serve(stream_response(GOOD))
        record = await send(make_sender(server))
        assert record.ok
        assert 2 == len(record.chunk_ns)
        assert "Hello" == record.first_chunk_text
        assert (3, 2) == (record.usage.prompt_tokens, record.usage.completion_tokens)

    async def test_stream_without_content_is_empty_response(self, serve: Any) -> None:
        body = sse(chunk(role=True), chunk(finish="stop"))
        server = await serve(stream_response(body))
        record = await send(make_sender(server))
        assert "empty_response" == record.error.type

    async def test_chunked_body_split_at_every_byte(self, serve: Any) -> None:
        """The server writes the response one byte at a time: same answer."""
        data = stream_response(GOOD)

        async def trickle(stream: trio.SocketStream) -> None:
            for i in range(len(data)):
                await stream.send_all(data[i : i + 1])
            await trio.sleep_forever()

        server = await serve(trickle)
        record = await send(make_sender(server))
        assert record.ok, record.error
        assert "Hello world" == record.output_text


class TestOddAnswers:
    @pytest.mark.parametrize(
        ("answer", "kind"),
        [
            (b"HTTP/1.1 204 No Content\r\n\r\n", "no_content"),
            (plain(301, b"", extra=b"location: https://elsewhere/v1\r\n"), "redirect"),
            (plain(200, b'{"error": {"message": "model overloaded"}}'), "server_error_body"),
            (stream_response(sse({"error": {"message": "boom"}})), "server_error_body"),
            (plain(503, b'{"error": "busy"}'), "503"),
        ],
        ids=["204", "301", "json-error-body", "error-event", "503"],
    )
    async def test_typed_errors(self, serve: Any, answer: bytes, kind: str) -> None:
        server = await serve(answer, stream_response(GOOD))
        sender = make_sender(server)
        record = await send(sender)
        assert kind == record.error.type, record.error
        if kind == "redirect":
            assert "https://elsewhere/v1" in record.error.message
        if kind == "server_error_body":
            assert "overloaded" in record.error.message or "boom" in record.error.message
        # the connection (or a fresh one) serves the next request normally
        assert (await send(sender, 1)).ok

    async def test_non_streamed_json_error_body(self, serve: Any) -> None:
        server = await serve(plain(200, b'{"error": {"message": "no such model"}}'))
        record = await send(make_sender(server, streaming=False))
        assert "server_error_body" == record.error.type

    @pytest.mark.parametrize(
        "event",
        [
            b'{"choices":[{"delta":{"content":"x"}}],"usage":{"completion_tokens":NaN}}',
            b'{"choices":[{"delta":{"content":"x"}}],"deep":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"choices":[{"delta":{"content":7}}]}',
            b'{"choices":"nope"}',
            b"[1, 2]",
        ],
        ids=["nan", "deep", "content-int", "choices-str", "array"],
    )
    async def test_bad_events_are_parse_errors(self, serve: Any, event: bytes) -> None:
        server = await serve(stream_response(sse(chunk("a"), event)), stream_response(GOOD))
        sender = make_sender(server)
        record = await send(sender)
        assert "parse_error" == record.error.type, record.error
        assert record.error.message
        assert (await send(sender, 1)).ok

    @pytest.mark.parametrize(
        "body",
        [b"\xff\xfe not utf-8", b"[" * 100_000],
        ids=["not-utf8", "deep"],
    )
    async def test_bad_bodies_are_parse_errors(self, serve: Any, body: bytes) -> None:
        server = await serve(plain(200, body))
        record = await send(make_sender(server, streaming=False))
        assert "parse_error" == record.error.type, record.error

    @pytest.mark.parametrize(
        "raw", [b'"5"', b"[5]", b"%d" % 10**30, b"-1"], ids=["string", "list", "huge", "negative"]
    )
    async def test_absurd_usage_is_kept_raw_for_the_metrics_step(self, serve: Any, raw: bytes) -> None:
        """Reading never judges a usage: the request stands, and the metrics step ignores
        the count with a note (tests/core/test_usage_counts.py)."""
        event = b'{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"completion_tokens":' + raw + b"}}"
        server = await serve(stream_response(sse(event)))
        record = await send(make_sender(server))
        assert record.ok, record.error
        assert json.loads(raw) == record.usage.completion_tokens

    async def test_response_over_the_cap_is_typed(self, serve: Any) -> None:
        big = sse(chunk("x" * 5000), chunk("y", finish="stop"))
        server = await serve(plain(200, b"x" * 5000), stream_response(big))
        record = await send(make_sender(server, streaming=False, max_response_bytes=4096))
        assert "response_too_large" == record.error.type
        record = await send(make_sender(server, max_response_bytes=4096))
        assert "response_too_large" == record.error.type

    async def test_completions_stream(self, serve: Any) -> None:
        body = sse({"choices": [{"text": "a"}]}, {"choices": [{"text": "b", "finish_reason": "stop"}]}, done=False)
        server = await serve(stream_response(body))
        record = await send(make_sender(server, endpoint=COMPLETIONS))
        assert record.ok and "ab" == record.output_text


class TestKeepAlive:
    async def test_reused_connection_closed_before_any_response_byte_is_retried(self, serve: Any) -> None:
        """The keep-alive race: the server closes a reused connection without answering."""
        server = await serve(stream_response(GOOD), close_now, stream_response(GOOD))
        sender = make_sender(server)
        assert (await send(sender, 0)).ok
        record = await send(sender, 1)
        assert record.ok, record.error
        assert 1 == record.retries == sender.retries
        assert 2 == server.connections

    async def test_fresh_connection_closed_without_answer_is_not_retried(self, serve: Any) -> None:
        """On a fresh connection the server saw the request: no retry, an error."""
        server = await serve(close_now, stream_response(GOOD))
        sender = make_sender(server)
        record = await send(sender)
        assert "RemoteProtocolError" == record.error.type
        assert 0 == sender.retries

    async def test_connection_closed_by_peer_while_idle_is_not_reused(self, serve: Any) -> None:
        async def answer_then_close(stream: trio.SocketStream) -> None:
            await stream.send_all(stream_response(GOOD))
            await stream.aclose()

        server = await serve(answer_then_close, stream_response(GOOD))
        sender = make_sender(server)
        assert (await send(sender, 0)).ok
        await trio.sleep(0.1)  # the FIN reaches the idle connection
        record = await send(sender, 1)
        assert record.ok and 0 == record.retries
        assert 1 == sender.pool.stale

    async def test_timeout_and_cancellation_close_the_connection(self, serve: Any) -> None:
        server = await serve(hold, stream_response(GOOD))
        sender = make_sender(server, timeout_s=0.2)
        record = await send(sender)
        assert "timeout" == record.error.type
        assert [] == sender.pool._idle  # noqa: SLF001
        with trio.CancelScope() as scope:
            scope.deadline = trio.current_time() + 0.1
            server.answers.insert(0, hold)
            await make_sender(server).send(RequestRecord(index=2, phase=Phase.PROFILE), b"{}")
        assert scope.cancelled_caught


class TestRequestHead:
    def test_userinfo_is_basic_auth_and_never_in_host(self) -> None:
        head = request_head("http://us%40er:p%3Aw@127.0.0.1:9/v1/chat/completions?x=1", {})
        assert head.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
        assert b"\r\nAuthorization: Basic dXNAZXI6cDp3\r\n" in head  # base64("us@er:p:w")
        assert head.endswith(b"\r\nContent-Length: ")

    def test_explicit_header_wins_and_framing_is_ours(self) -> None:
        head = request_head(
            "http://u:p@h/v1", {"authorization": "Bearer k", "Content-Length": "5", "X-A": "b"}
        )
        assert b"Basic" not in head and b"\r\nauthorization: Bearer k\r\n" in head
        assert 1 == head.lower().count(b"content-length")
        assert b"\r\nX-A: b\r\n" in head

    @pytest.mark.parametrize("headers", [{"X-A": "b\r\nEvil: 1"}, {"X A:": "b"}, {"X-A": "☃"}])
    def test_header_injection_and_non_latin1_are_usage_errors(self, headers: dict[str, str]) -> None:
        from aiperf._types import UsageError

        with pytest.raises(UsageError):
            request_head("http://h/v1", headers)


class TestAfterDone:
    async def test_garbage_framing_after_done_does_not_fail_the_request(self, serve: Any) -> None:
        """The answer is complete at [DONE]; broken chunk framing after it only costs the
        connection."""
        data = stream_response(GOOD, end=False) + b"zz\r\n"
        server = await serve(data, stream_response(GOOD))
        sender = make_sender(server)
        record = await send(sender)
        assert record.ok, record.error
        assert (await send(sender, 1)).ok
        assert 2 == server.connections
