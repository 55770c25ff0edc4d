"""A lean HTTP/1.1 client over trio sockets, built for measuring.

Why not a general HTTP library: every layer between the socket and the measurement costs CPU
per request and shapes the load. httpx over httpcore sent a request's headers and body as two
writes (two TCP packets; the body trailed by milliseconds under load, and the server cannot
start before it has the body), and spent more CPU per request than the rest of aiperf. Here:

* the request head is serialised once per run; a request is ``head + length + body``, handed
  to the kernel in one ``send`` (one segment where the size allows);
* responses are parsed by a small incremental parser (status line, headers, Content-Length,
  chunked, read-until-close), linear in the body size however the bytes are cut;
* every read is stamped with the kernel's receive time (SO_TIMESTAMPNS), so the time we
  record is the network's, not the time our loop got around to the socket;
* keep-alive connections are checked before reuse, and a request that provably never reached
  the server is retried once on a fresh connection (see :class:`Pool`).
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import sys
import time
from typing import Any

import attrs
import trio

_now = time.perf_counter_ns

#: a response head (status line and headers) larger than this is not HTTP we can measure.
MAX_HEAD_BYTES = 64 * 1024
#: a chunk-size or trailer line longer than this is garbage, not a chunk header.
_MAX_LINE = 4096
_RECEIVE_SIZE = 65536
_HEX = b"0123456789abcdefABCDEF"


# -- errors: the class name is the error type a request records ---------------------------------


class TransportError(Exception):
    """A request failed below HTTP's semantics; ``error_type`` is what the request records
    (the class name, as httpx named the same failures)."""

    @property
    def error_type(self) -> str:
        return type(self).__name__


class ConnectError(TransportError):
    """No connection (refused, unreachable, name not resolved, TLS handshake failed)."""


class WriteError(TransportError):
    """The request could not be written; ``accepted`` bytes of it had left."""

    accepted = 0


class ReadError(TransportError):
    """The connection failed while reading (a reset)."""


class RemoteProtocolError(TransportError):
    """The peer closed the connection too early, or sent something that is not HTTP/1.1."""


class ClosedBeforeResponse(RemoteProtocolError):
    """The peer closed the connection without sending any byte of a response."""

    @property
    def error_type(self) -> str:
        return "RemoteProtocolError"


class ResponseTooLarge(TransportError):
    """The response body is larger than ``--max-response-bytes``."""

    @property
    def error_type(self) -> str:
        return "response_too_large"


# -- the socket -----------------------------------------------------------------------------------

# Linux (asm-generic) values; Python's socket module does not export them.
_SO_TIMESTAMPNS = 35
_SCM_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


class KernelStampedStream(trio.abc.HalfCloseableStream):
    """A TCP stream whose reads carry the kernel's receive time of the bytes (SO_TIMESTAMPNS).

    Under load, one event loop serves many connections: when 64 streams deliver a token at the
    same instant, the last one is read a few milliseconds late. The kernel stamped every packet
    when it arrived, whatever the loop was doing, so with this option the time we record is the
    network's, not the time our loop got around to the socket. Where the option is missing
    (not Linux), the stamp is taken right after the read returns.

    ``last_read_ns`` is the stamp of the latest read; ``bytes_sent`` counts what the kernel
    accepted, so a failed write knows whether any byte of the request left.
    """

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self.socket = inner.socket
        self.kernel_stamps = False
        self.last_read_ns = 0
        self.last_send_ns = 0
        self.bytes_sent = 0
        # The standard-library socket under trio's, read without trio's wrapper (see
        # receive_some); None where trio no longer keeps it there: then trio's own recvmsg.
        self._plain: socket.socket | None = getattr(self.socket, "_sock", None)
        #: whether the last read may have left bytes in the socket (it filled the buffer).
        self._more = False
        if sys.platform.startswith("linux") and _ANCILLARY_SIZE:
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.kernel_stamps = True
            except OSError:
                pass

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = max_bytes or _RECEIVE_SIZE
        if not self.kernel_stamps:
            data = await self._inner.receive_some(size)
            self.last_read_ns = _now()
            return data
        try:
            if self._plain is None:
                data, ancillary, _flags, _addr = await self.socket.recvmsg(size, _ANCILLARY_SIZE)
            else:
                data, ancillary = await self._receive_plain(self._plain, size)
        except OSError as exc:
            raise trio.BrokenResourceError from exc
        arrived = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack_from(payload)
                # The kernel stamps with the wall clock; move it onto perf_counter's timeline
                # with an offset taken now, so clock adjustments during a run cannot skew it.
                arrived = seconds * 1_000_000_000 + nanos - (time.time_ns() - _now())
        self.last_read_ns = arrived or _now()
        return data

    async def _receive_plain(self, plain: socket.socket, size: int) -> tuple[bytes, list[Any]]:
        """One ``recvmsg``, waiting for the socket first unless bytes may be left in it.

        This is the read of every token, so it is kept to one system call and one trip
        through the scheduler. trio's ``recvmsg`` tries the call first and, when it succeeds,
        yields once more before returning; on a stream the socket is almost always empty
        when we come back to it, so that first try is a wasted call (EAGAIN) and a wasted
        epoll update. Here a read that did not fill the buffer left the socket empty: the
        next one waits for readiness first. A read that filled it yields before returning,
        so one fast connection cannot keep the others from the loop.
        """
        while True:
            if self._more:
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    data, ancillary, _flags, _addr = plain.recvmsg(size, _ANCILLARY_SIZE)
                except BlockingIOError:
                    self._more = False
                    continue
                self._more = len(data) == size
                if self._more:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return data, ancillary
            await trio.lowlevel.wait_readable(plain)
            self._more = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # Our own loop, not SocketStream.send_all: it counts what the kernel accepted (which
        # decides whether a failed request may be retried), and it stamps the moment the
        # last byte was accepted before yielding to the scheduler: trio's send() yields after
        # the syscall, and under load other tasks would run before we could read the clock.
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        total = len(view)
        sent = 0
        try:
            try:
                sent = os.write(self.socket.fileno(), view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            self.bytes_sent += sent
            while sent < total:
                count = await self.socket.send(view[sent:])
                sent += count
                self.bytes_sent += count
            self.last_send_ns = _now()
        except OSError as exc:
            raise trio.BrokenResourceError from exc
        finally:
            view.release()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close_now(self) -> None:
        """Close without waiting (safe in a cancelled scope: no checkpoint)."""
        self.socket.close()


class Connection:
    """One HTTP/1.1 connection: the (maybe TLS) stream, its receive buffer, its history."""

    __slots__ = ("buffer", "closed", "raw", "received", "requests", "stream")

    def __init__(self, stream: trio.abc.Stream, raw: KernelStampedStream) -> None:
        self.stream = stream
        self.raw = raw
        #: bytes received and not yet consumed by the response parser.
        self.buffer = bytearray()
        #: responses completed on this connection (a reused one has at least one).
        self.requests = 0
        #: bytes received since the current request was sent.
        self.received = 0
        self.closed = False

    @property
    def last_read_ns(self) -> int:
        return self.raw.last_read_ns

    async def send(self, data: bytes) -> tuple[int, int]:
        """Send one request in one write; returns the (first, last) byte's send times."""
        self.received = 0
        before = self.raw.bytes_sent
        first = _now()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            error = WriteError(str(exc) or type(exc).__name__)
            error.accepted = self.raw.bytes_sent - before
            raise error from exc
        return first, self.raw.last_send_ns

    async def receive(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        try:
            data = await self.stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ReadError(str(exc) or type(exc).__name__) from exc
        if not data:
            return False
        self.received += len(data)
        self.buffer += data
        return True

    def usable(self) -> bool:
        """An idle connection is only reused while the peer has neither closed it nor sent
        anything unasked: readable means one of the two."""
        if self.closed:
            return False
        try:
            return not self.raw.socket.is_readable()
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.raw.close_now()


# -- responses ----------------------------------------------------------------------------------


@attrs.define(slots=True)
class Response:
    status: int
    #: header names lower-cased, values as sent (latin-1).
    headers: dict[str, str]
    keep_alive: bool

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_head(conn: Connection) -> Response:
    """Read the status line and headers (skipping 1xx interim responses)."""
    while True:
        buffer = conn.buffer
        searched = 0
        while True:
            end = buffer.find(b"\r\n\r\n", max(searched - 3, 0))
            if end >= 0:
                break
            if len(buffer) > MAX_HEAD_BYTES:
                raise RemoteProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            searched = len(buffer)
            if not await conn.receive():
                if buffer or conn.received:
                    raise RemoteProtocolError("peer closed the connection in the response head")
                raise ClosedBeforeResponse("peer closed the connection without sending a response")
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        response = _parse_head(head)
        if 100 <= response.status < 200 and response.status != 101:
            continue
        return response


def _parse_head(head: bytes) -> Response:
    lines = head.split(b"\r\n")
    status_line = lines[0]
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise RemoteProtocolError(f"not an HTTP/1.1 status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise RemoteProtocolError(f"malformed header line: {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        if key in headers:
            # Repeated fields fold into one list (RFC 9110 5.3).
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text
    connection = headers.get("connection", "").lower()
    if version == b"HTTP/1.0":
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
    return Response(status=int(code), headers=headers, keep_alive=keep_alive)


_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(7)


class BodyReader:
    """The body of one response, piece by piece, as the socket delivers it.

    :meth:`next` returns the next piece of body bytes (``b""`` at the end); after it returns,
    ``conn.last_read_ns`` is the arrival time of the read that completed the piece. Every
    byte is copied out of the buffer once and never searched twice, so the work is linear in
    the body size.
    """

    __slots__ = ("_conn", "_limit", "_remaining", "_state", "size")

    def __init__(self, conn: Connection, response: Response, limit: int, *, head: bool = False) -> None:
        self._conn = conn
        self._limit = limit
        #: body bytes delivered so far.
        self.size = 0
        self._remaining = 0
        status = response.status
        headers = response.headers
        if head or status in (204, 304) or 100 <= status < 200:
            self._state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise RemoteProtocolError(
                    f"bad content-length: {headers['content-length'][:40]!r}"
                ) from None
            if length < 0:
                raise RemoteProtocolError(f"bad content-length: {length}")
            if length > limit:
                raise ResponseTooLarge(f"response of {length} bytes is over the {limit}-byte limit")
            self._remaining = length
            self._state = _LENGTH if length else _DONE
        else:
            # No framing: the body runs until the peer closes (HTTP/1.0 style).
            self._state = _UNTIL_CLOSE
            response.keep_alive = False

    @property
    def done(self) -> bool:
        return self._state == _DONE

    async def next(self) -> bytes:
        while True:
            piece = self._take()
            if piece is not None:
                return piece
            if not await self._conn.receive():
                if self._state == _UNTIL_CLOSE:
                    self._state = _DONE
                    return b""
                raise RemoteProtocolError(self._cut_short())

    async def read_all(self) -> bytes:
        """The whole body (bounded by the response size limit)."""
        parts = bytearray()
        while piece := await self.next():
            parts += piece
        return bytes(parts)

    def finish_buffered(self) -> bool:
        """Consume what is already buffered without reading more; True if the body ended.

        After ``data: [DONE]`` the request is over; if the rest of the body (the chunked
        terminator) already arrived with it, the connection can serve the next request.
        """
        while self._state != _DONE:
            if self._take() is None:
                return False
        return True

    def _cut_short(self) -> str:
        if self._state == _LENGTH:
            return f"peer closed the connection mid-body ({self._remaining} bytes missing)"
        return "peer closed the connection mid-body (chunked body not terminated)"

    def _take(self) -> bytes | None:
        """The next piece from the buffer, ``b""`` at the end, None if more bytes are needed."""
        buffer = self._conn.buffer
        if self._state == _CHUNK_SIZE:
            piece = self._whole_chunk(buffer)
            if piece is not None:
                return piece
        while True:
            state = self._state
            if state == _CHUNK_DATA or state == _LENGTH:
                if not buffer:
                    return None
                count = min(len(buffer), self._remaining)
                piece = bytes(buffer[:count])
                del buffer[:count]
                self._remaining -= count
                if not self._remaining:
                    self._state = _CHUNK_END if state == _CHUNK_DATA else _DONE
                return self._count(piece)
            if state == _CHUNK_SIZE:
                line = self._line(buffer)
                if line is None:
                    return None
                size = _chunk_size(line.split(b";", 1)[0].strip())
                if size is None:
                    raise RemoteProtocolError(f"bad chunk size line: {line[:40]!r}")
                if size == 0:
                    self._state = _TRAILER
                else:
                    if self.size + size > self._limit:
                        raise ResponseTooLarge(f"response over the {self._limit}-byte limit")
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_END:
                line = self._line(buffer)
                if line is None:
                    return None
                if line:
                    raise RemoteProtocolError("chunk data longer than its size line said")
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                line = self._line(buffer)
                if line is None:
                    return None
                if not line:
                    self._state = _DONE
            elif state == _UNTIL_CLOSE:
                if not buffer:
                    return None
                piece = bytes(buffer)
                buffer.clear()
                return self._count(piece)
            else:
                return b""

    def _whole_chunk(self, buffer: bytearray) -> bytes | None:
        """A whole chunk at the front of the buffer (size line of bare hex digits, data,
        CRLF) taken in one step, as a stream's token chunks arrive; None leaves anything
        else (a partial chunk, an extension, the last chunk, bad framing) to the state
        machine, which gives the same pieces and the same errors."""
        end = buffer.find(b"\r\n", 0, 18)
        size = _chunk_size(bytes(buffer[:end])) if end >= 0 else None
        if not size:
            return None
        start = end + 2
        total = start + size + 2
        if len(buffer) < total or buffer[total - 2 : total] != b"\r\n":
            return None
        piece = bytes(buffer[start : start + size])
        del buffer[:total]
        return self._count(piece)  # over the response limit: the same error as the state machine's

    @staticmethod
    def _line(buffer: bytearray) -> bytes | None:
        end = buffer.find(b"\n", 0, _MAX_LINE)
        if end < 0:
            if len(buffer) >= _MAX_LINE:
                raise RemoteProtocolError("chunk header line too long")
            return None
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _count(self, piece: bytes) -> bytes:
        self.size += len(piece)
        if self.size > self._limit:
            raise ResponseTooLarge(f"response over the {self._limit}-byte limit")
        return piece


def _chunk_size(text: bytes) -> int | None:
    """A chunk size line's number (its extension cut off): 1 to 16 hex digits, else None."""
    if not text or text.strip(_HEX) or len(text) > 16:
        return None
    return int(text, 16)


# -- connections ----------------------------------------------------------------------------------


class Pool:
    """Keep-alive connections to one origin, most recently used first: O(1) per request.

    Servers close idle keep-alive connections whenever they like (uvicorn after 5 s, some
    proxies after a fraction of a second). A connection is therefore checked (one poll: is it
    readable, i.e. closed by the peer?) every time before it is reused, and a request that
    provably never reached the server is retried once on a fresh connection by the caller.
    """

    def __init__(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self._idle: list[Connection] = []
        #: connections opened over the run, and idle ones found closed by the peer.
        self.opened = 0
        self.stale = 0

    async def acquire(self) -> Connection:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            self.stale += 1
            conn.close()
        return await self.connect()

    def release(self, conn: Connection) -> None:
        """Give a connection whose response was read to the end back to the pool."""
        conn.requests += 1
        if not conn.closed and not conn.buffer:
            self._idle.append(conn)
        else:
            conn.close()

    async def connect(self) -> Connection:
        try:
            tcp = await trio.open_tcp_stream(self.host, self.port)
        except OSError as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw = KernelStampedStream(tcp)
        stream: trio.abc.Stream = raw
        if self.ssl_context is not None:
            tls = trio.SSLStream(
                raw, self.ssl_context, server_hostname=self.host, https_compatible=True
            )
            try:
                await tls.do_handshake()
            except BaseException as exc:
                raw.close_now()
                if isinstance(exc, trio.BrokenResourceError | OSError):
                    raise ConnectError(str(exc.__cause__ or exc) or type(exc).__name__) from exc
                raise
            stream = tls
        self.opened += 1
        return Connection(stream, raw)

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def never_reached(conn: Connection, exc: TransportError) -> bool:
    """Whether a failed request provably never reached the server, so a retry cannot send it
    twice: no byte of it was accepted by the kernel, or the peer closed a *reused* connection
    before sending any byte of a response (the keep-alive race: the server closed the idle
    connection while the request was on its way)."""
    if isinstance(exc, WriteError):
        return exc.accepted == 0 or conn.requests > 0
    if conn.requests == 0 or conn.received:
        return False
    return isinstance(exc, ReadError | ClosedBeforeResponse)
