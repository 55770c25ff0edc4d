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
import ssl
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import attrs
import httpcore
import httpx

_now = time.perf_counter_ns


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


class _StampingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        stamps = current_stamps.get()
        if stamps is not None:
            stamps.last_read_ns = _now()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        stamps = current_stamps.get()
        if stamps is not None and not stamps.first_write_ns:
            stamps.first_write_ns = _now()
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # The TLS handshake's own writes must not count as the request's first byte.
        token = current_stamps.set(None)
        try:
            inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        finally:
            current_stamps.reset(token)
        return _StampingStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _StampingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _StampingStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _StampingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ResponseStream(httpx.AsyncByteStream):
    """httpcore's body stream, with its errors (a reset mid-stream) surfacing as httpx's."""

    def __init__(self, inner: Any, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

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
        await self._inner.aclose()


class StampingTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over a pool sized by the caller, with socket-level stamps."""

    def __init__(
        self,
        *,
        max_connections: int | None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = 60.0,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or ssl.create_default_context(),
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=_StampingBackend(httpcore.TrioBackend()),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme,
                host=url.raw_host,
                port=url.port,
                target=url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,  # type: ignore[arg-type]
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except httpcore.TimeoutException as exc:
            raise httpx.TimeoutException(str(exc), request=request) from exc
        except httpcore.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except httpcore.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except httpcore.NetworkError as exc:
            raise httpx.NetworkError(str(exc), request=request) from exc
        except httpcore.ProtocolError as exc:
            raise httpx.ProtocolError(str(exc), request=request) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
