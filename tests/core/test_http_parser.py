"""The response parser fed the way sockets deliver bytes: any cut, same head and body; and the
SSE parser's work stays linear in the bytes fed."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio
from aiperf import _sse
from aiperf._sse import SSEParser
from aiperf._transport import (
    BodyReader,
    Connection,
    RemoteProtocolError,
    ResponseTooLarge,
    read_head,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None)


class _Pieces(trio.abc.Stream):
    """A stream that returns the given pieces, one per read, then end of stream."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = [p for p in pieces if p]
        self.last_read_ns = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.last_read_ns += 1
        return self.pieces.pop(0) if self.pieces else b""

    async def send_all(self, data: Any) -> None:
        raise AssertionError("not used")

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def close_now(self) -> None:
        pass


def connection(pieces: list[bytes]) -> Connection:
    stream = _Pieces(pieces)
    return Connection(stream, stream)  # type: ignore[arg-type]


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted(set(cuts))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


async def read_response(pieces: list[bytes], limit: int = 1 << 20) -> tuple[int, bytes, bool]:
    conn = connection(pieces)
    response = await read_head(conn)
    reader = BodyReader(conn, response, limit)
    body = await reader.read_all()
    return response.status, body, response.keep_alive and reader.done


def encode_chunked(parts: list[bytes], extensions: bool) -> bytes:
    out = b""
    for i, part in enumerate(parts):
        ext = b";name=v%d" % i if extensions else b""
        out += b"%x%s\r\n%s\r\n" % (len(part), ext, part)
    return out + b"0\r\nx-trailer: 1\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class TestChunked:
    @FUZZ
    @given(st.lists(st.binary(min_size=1, max_size=60), max_size=8), st.booleans(),
           st.lists(st.integers(0, 2000), max_size=12))  # fmt: skip
    @example(parts=[b"data: x\r\n\r\n", b"0\r\n"], extensions=True, cuts=[])
    def test_any_cut_gives_the_same_body(self, parts: list[bytes], extensions: bool, cuts: list[int]) -> None:
        data = HEAD + encode_chunked(parts, extensions) + b"HTTP/1.1 next response"
        status, body, reusable = trio.run(read_response, cut(data, cuts))
        assert (200, b"".join(parts), True) == (status, body, reusable)

    async def test_split_at_every_byte(self) -> None:
        parts = [b"data: {\"a\": 1}\n\n", b"x" * 300, b"\r\n0\r\n"]
        data = HEAD + encode_chunked(parts, True)
        status, body, reusable = await read_response([data[i : i + 1] for i in range(len(data))])
        assert (200, b"".join(parts), True) == (status, body, reusable)

    @pytest.mark.parametrize(
        "raw",
        [b"zz\r\nab\r\n0\r\n\r\n", b"-1\r\n", b"+1\r\na\r\n0\r\n\r\n", b"1_0\r\n", b"2\r\nabc\r\n0\r\n\r\n",
         b"00000000000000001\r\na\r\n0\r\n\r\n", b"1\r\nab\r\n0\r\n\r\n"],
        ids=["not-hex", "negative", "plus", "underscore", "too-long", "size-line-of-17-digits", "data-past-its-size"],
    )
    async def test_bad_chunk_framing_is_a_protocol_error(self, raw: bytes) -> None:
        with pytest.raises(RemoteProtocolError):
            await read_response([HEAD + raw])

    async def test_end_of_stream_mid_body_is_a_protocol_error(self) -> None:
        with pytest.raises(RemoteProtocolError, match="mid-body"):
            await read_response([HEAD + b"10\r\nonly a little"])

    async def test_chunked_over_the_limit(self) -> None:
        with pytest.raises(ResponseTooLarge):
            await read_response([HEAD + encode_chunked([b"x" * 100] * 3, False)], limit=250)


class TestFraming:
    async def test_content_length_any_cut(self) -> None:
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        for i in range(len(data) + 1):
            assert (200, b"hello", True) == await read_response(cut(data, [i]))

    async def test_read_until_close_is_not_reusable(self) -> None:
        data = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"a\": 1}"
        assert (200, b'{"a": 1}', False) == await read_response(cut(data, [20, 40]))

    async def test_connection_close_header_is_not_reusable(self) -> None:
        data = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
        assert (200, b"ok", False) == await read_response([data])

    async def test_interim_100_continue_is_skipped(self) -> None:
        data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\nx"
        assert (201, b"x", True) == await read_response([data])

    async def test_content_length_over_the_limit_before_reading_it(self) -> None:
        with pytest.raises(ResponseTooLarge):
            await read_response([b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"], limit=999)

    @pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"])
    async def test_not_http_is_a_protocol_error(self, raw: bytes) -> None:
        with pytest.raises(RemoteProtocolError):
            await read_response([raw])


class _CountingPattern:
    """Stands in for the SSE parser's line-end pattern and counts the bytes it searches."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.searched = 0

    def search(self, buffer: bytearray, pos: int = 0) -> re.Match[bytes] | None:
        match = self.pattern.search(buffer, pos)
        self.searched += (match.end() if match else len(buffer)) - pos
        return match


class _CountingBuffer(bytearray):
    """The SSE parser's buffer, counting the bytes its splits go over."""

    searched = 0

    def split(self, *args: Any, **kwargs: Any) -> list[bytearray]:  # type: ignore[override]
        type(self).searched += len(self)
        return super().split(*args, **kwargs)


def searched_bytes(monkeypatch: pytest.MonkeyPatch, size: int, eol: bytes, piece: int = 65536) -> int:
    """Bytes the parser searched for line ends while one ``size``-byte event arrived."""
    counter = _CountingPattern(_sse._EOL)  # noqa: SLF001
    monkeypatch.setattr(_sse, "_EOL", counter)
    monkeypatch.setattr(_CountingBuffer, "searched", 0)
    data = b"data: " + b"x" * size + eol + eol
    parser = SSEParser(buffer=_CountingBuffer())
    events = []
    for start in range(0, len(data), piece):
        events += parser.feed(data[start : start + piece])
    assert 1 == len(events) and size == len(events[0].data)
    return counter.searched + _CountingBuffer.searched


class TestSSELinear:
    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    def test_one_huge_event_is_searched_once(self, monkeypatch: pytest.MonkeyPatch, eol: bytes) -> None:
        """A 10 MB event in 64 KiB reads: the buffer is searched for line ends at most once
        per byte (besides one look at each new piece as it arrives), so the work is linear; a
        parser that re-scanned its buffer on every read would search ~80 times the bytes."""
        for size in (1_250_000, 10_000_000):
            assert searched_bytes(monkeypatch, size, eol) <= size + 16
