"""An httpx transport that knows when bytes really left and arrived.

Stamping "request sent" before ``client.send()`` would count httpx's own work (building the
request, taking a connection from the pool, serialising headers) as server time, and stamping
a chunk when ``aiter_bytes()`` yields it would count h11's parsing. So the socket itself is
wrapped: the first ``write`` of a request stamps its start, and every ``read`` stamps the
arrival of the bytes it returned. The stamps land in the :class:`Stamps` of the task that is
sending (a context variable: trio gives every task its own context), so concurrent requests
on different connections never mix their times.

The transport drives httpcore's public API directly, under httpx's client API.
"""

from __future__ import annotations

import contextvars
import socket
import ssl
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import attrs
import httpcore
import httpx
import trio


@attrs.define(slots=True)
class Stamps:
    """Socket-level times of the request being sent by the current task."""

    #: perf_counter_ns of the first write of the request (0 until then).
    first_write_ns: int = 0
    #: perf_counter_ns when the latest read returned bytes.
    last_read_ns: int = 0


current_stamps: contextvars.ContextVar[Stamps | None] = contextvars.ContextVar(
    "aiperf_stamps", default=None
)


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
    """

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self._socket = inner.socket
        self.kernel_stamps = False
        if sys.platform.startswith("linux") and _ANCILLARY_SIZE:
            try:
                self._socket.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                self.kernel_stamps = True
            except OSError:
                pass

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = max_bytes or 65536
        if not self.kernel_stamps:
            data = await self._inner.receive_some(size)
            _stamp_read(time.perf_counter_ns())
            return data
        try:
            data, ancillary, _flags, _addr = await self._socket.recvmsg(size, _ANCILLARY_SIZE)
        except OSError as exc:
            raise trio.BrokenResourceError from exc
        arrived = 0
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
                seconds, nanos = _TIMESPEC.unpack_from(payload)
                # The kernel stamps with the wall clock; move it onto perf_counter's timeline
                # with an offset taken now, so clock adjustments during a run cannot skew it.
                arrived = seconds * 1_000_000_000 + nanos - (time.time_ns() - time.perf_counter_ns())
        _stamp_read(arrived or time.perf_counter_ns())
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


def _stamp_read(arrived: int) -> None:
    stamps = current_stamps.get()
    if stamps is not None:
        stamps.last_read_ns = arrived


class _NetworkStream(httpcore.AsyncNetworkStream):
    """httpcore's view of a trio stream; stamps the request's first write."""

    def __init__(self, stream: trio.abc.Stream, raw: KernelStampedStream) -> None:
        self._stream = stream
        self._raw = raw

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            with trio.fail_after(_inf(timeout)):
                return await self._stream.receive_some(max_bytes)
        except trio.TooSlowError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        stamps = current_stamps.get()
        if stamps is not None and not stamps.first_write_ns:
            stamps.first_write_ns = time.perf_counter_ns()
        try:
            with trio.fail_after(_inf(timeout)):
                await self._stream.send_all(buffer)
        except trio.TooSlowError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # TLS sits on top of the stamped socket, so decrypted bytes keep the kernel's times.
        tls = trio.SSLStream(
            self._stream,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
            https_compatible=True,
        )
        token = current_stamps.set(None)  # handshake bytes are not the request's
        try:
            with trio.fail_after(_inf(timeout)):
                await tls.do_handshake()
        except trio.TooSlowError as exc:
            await self.aclose()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (trio.BrokenResourceError, OSError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        finally:
            current_stamps.reset(token)
        return _NetworkStream(tls, self._raw)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object" and isinstance(self._stream, trio.SSLStream):
            return self._stream._ssl_object  # noqa: SLF001 - what httpcore asks for
        if info == "socket":
            return self._raw._socket  # noqa: SLF001
        if info == "is_readable":
            try:
                return self._raw._socket.is_readable()  # noqa: SLF001
            except OSError:
                return True
        return None


class _Backend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with trio.fail_after(_inf(timeout)):
                stream = await trio.open_tcp_stream(host, port, local_address=local_address)
        except trio.TooSlowError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            stream.setsockopt(*option)
        raw = KernelStampedStream(stream)
        return _NetworkStream(raw, raw)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not supported by aiperf")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


def _inf(timeout: float | None) -> float:
    return float("inf") if timeout is None else timeout


class _ResponseStream(httpx.AsyncByteStream):
    """httpcore's body stream, with its errors (a reset mid-stream) surfacing as httpx's."""

    def __init__(self, inner: Any, request: httpx.Request, on_close: Any) -> None:
        self._inner = inner
        self._request = request
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._inner:
                yield part
        except httpcore.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from exc
        except httpcore.ReadError as exc:
            raise httpx.ReadError(str(exc), request=self._request) from exc
        except httpcore.NetworkError as exc:
            raise httpx.NetworkError(str(exc), request=self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._on_close()


@attrs.define(eq=False)
class _Idle:
    connection: httpcore.AsyncHTTPConnection
    since: float


class StampingTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connections with socket-level stamps, one per request in flight.

    httpcore's connection pool scans every connection for every request (and polls each idle
    socket), which at concurrency 64 cost more CPU than the requests themselves. Here a
    request takes the most recently used idle connection to its origin, or opens one: O(1).
    """

    #: an idle connection older than this is checked (one poll) before reuse: servers close
    #: idle keep-alive connections (uvicorn after 5 s).
    CHECK_AFTER_S = 0.5

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = 60.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._backend = _Backend()
        self._idle: dict[tuple[bytes, bytes, int], list[_Idle]] = {}
        self._all: set[httpcore.AsyncHTTPConnection] = set()

    def _checkout(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        idle = self._idle.get((origin.scheme, origin.host, origin.port))
        now = time.monotonic()
        while idle:
            entry = idle.pop()
            conn = entry.connection
            if not conn.is_available():
                self._all.discard(conn)
                continue
            if now - entry.since > self.CHECK_AFTER_S and conn.has_expired():
                self._all.discard(conn)
                continue
            return conn
        if origin.scheme == b"https" and self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        conn = httpcore.AsyncHTTPConnection(
            origin=origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=self._backend,
        )
        self._all.add(conn)
        return conn

    def _checkin(self, origin: httpcore.Origin, conn: httpcore.AsyncHTTPConnection) -> None:
        if conn.is_available():
            key = (origin.scheme, origin.host, origin.port)
            self._idle.setdefault(key, []).append(_Idle(conn, time.monotonic()))
        else:
            self._all.discard(conn)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = httpcore.Origin(url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        conn = self._checkout(origin)
        try:
            response = await conn.handle_async_request(core_request)
        except BaseException as exc:
            self._all.discard(conn)
            with trio.CancelScope(shield=True):
                await conn.aclose()
            if isinstance(exc, httpcore.TimeoutException):
                raise httpx.TimeoutException(str(exc), request=request) from exc
            if isinstance(exc, httpcore.ConnectError):
                raise httpx.ConnectError(str(exc), request=request) from exc
            if isinstance(exc, httpcore.RemoteProtocolError):
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if isinstance(exc, httpcore.NetworkError):
                raise httpx.NetworkError(str(exc), request=request) from exc
            if isinstance(exc, httpcore.ProtocolError):
                raise httpx.ProtocolError(str(exc), request=request) from exc
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request, lambda: self._checkin(origin, conn)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        connections, self._all, self._idle = self._all, set(), {}
        for conn in connections:
            await conn.aclose()
