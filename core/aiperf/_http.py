"""Sending one request and stamping its bytes as they arrive."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import attrs

# httpx imports its command-line tool, and click with it, whenever click is installed (MLflow
# brings it); aiperf never uses that tool, and it is a quarter of httpx's import time.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402
import trio  # noqa: E402

from aiperf._endpoints import ParseError  # noqa: E402
from aiperf._sse import SSEParser  # noqa: E402
from aiperf._transport import StampingTransport, Stamps, current_stamps  # noqa: E402
from aiperf._types import EndpointType, ErrorInfo, RequestRecord  # noqa: E402

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig

_now = time.perf_counter_ns
DONE = "[DONE]"


class _StreamError(Exception):
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def network_error_message(exc: BaseException) -> str:
    """What the operating system said, not only the wrapper's name: a reset reads
    ``ReadError`` / ``BrokenResourceError`` up the chain and ``Connection reset by peer`` at
    its root."""
    message = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.strerror:
            if cause.strerror not in message:
                weak = message in (type(exc).__name__, "BrokenResourceError", "ClosedResourceError")
                message = cause.strerror if weak else f"{message}: {cause.strerror}"
            break
        group = cause.exceptions if isinstance(cause, BaseExceptionGroup) else ()
        cause = group[0] if group else (cause.__cause__ or cause.__context__)
    return message


def request_url(config: ProfileConfig, endpoint: EndpointType) -> str:
    """Where requests go: ``--url`` plus ``--endpoint`` (or the type's default path), then
    the URL's query string (``http://h/v1?api-version=2`` -> ``.../v1/chat/completions?api-version=2``)."""
    base, _, query = config.url.partition("?")
    return _with_path(base.rstrip("/"), config.endpoint, endpoint) + (f"?{query}" if query else "")


def _with_path(base: str, explicit: str | None, endpoint: EndpointType) -> str:
    if explicit:
        return base + explicit
    path = endpoint.default_path
    if base.endswith(path):
        return base
    if base.endswith("/v1") and path.startswith("/v1/"):
        return base + path[3:]
    return base + path


def request_headers(config: ProfileConfig) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if config.streaming:
        headers["Accept"] = "text/event-stream"
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(dict(config.headers))
    return headers


def make_client(config: ProfileConfig, max_connections: int | None) -> httpx.AsyncClient:
    """One client for the whole run, its pool sized for the load so no request queues for a
    connection inside httpx (that wait would be counted as server time)."""
    context = None
    if config.url.startswith("https:"):
        # Loading the CA store costs about 20 ms: only for servers that need it.
        import ssl

        context = ssl.create_default_context(
            cafile=str(config.ca_bundle) if config.ca_bundle is not None else None
        )
    transport = StampingTransport(max_connections=max_connections, ssl_context=context)
    # Timeouts are enforced per request with trio (--request-timeout-seconds) so that one
    # deadline covers connect, headers and the whole stream.
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(None), trust_env=False)


@attrs.define
class Sender:
    client: httpx.AsyncClient
    url: str
    headers: dict[str, str]
    endpoint: EndpointType
    streaming: bool
    timeout_s: float

    async def send(self, record: RequestRecord, body: bytes) -> None:
        """Send ``body`` and fill ``record``; every failure becomes ``record.error``."""
        request = self.client.build_request("POST", self.url, content=body, headers=self.headers)
        stamps = Stamps()
        token = current_stamps.set(stamps)
        try:
            with trio.fail_after(self.timeout_s):
                record.start_ns = _now()
                response = await self.client.send(request, stream=True)
                # The socket knows better than we do when the request left.
                record.start_ns = stamps.first_write_ns or record.start_ns
                record.response_ns = stamps.last_read_ns or _now()
                record.status_code = response.status_code
                try:
                    if response.status_code >= 400:
                        await self._http_error(record, response)
                    elif self.streaming:
                        await self._read_stream(record, response, stamps)
                    else:
                        await self._read_body(record, response, stamps)
                finally:
                    await response.aclose()
        except trio.TooSlowError:
            record.end_ns = _now()
            record.error = ErrorInfo(
                type="timeout", message=f"no complete response within {self.timeout_s:g} s"
            )
        except _StreamError as exc:
            record.end_ns = record.end_ns or _now()
            record.error = exc.info
        except (httpx.HTTPError, OSError, trio.BrokenResourceError) as exc:
            record.end_ns = _now()
            record.error = ErrorInfo(type=type(exc).__name__, message=network_error_message(exc))
        finally:
            current_stamps.reset(token)
            if stamps.first_write_ns:
                record.start_ns = stamps.first_write_ns

    async def _http_error(self, record: RequestRecord, response: httpx.Response) -> None:
        body = await response.aread()
        record.end_ns = _now()
        text = body[:300].decode("utf-8", errors="replace").strip()
        record.error = ErrorInfo(
            type=str(response.status_code), message=f"HTTP {response.status_code}: {text}"
        )

    async def _read_body(
        self, record: RequestRecord, response: httpx.Response, stamps: Stamps
    ) -> None:
        body = await response.aread()
        record.end_ns = stamps.last_read_ns or _now()
        try:
            data = self.endpoint.parse_response(json.loads(body))
        except (ValueError, ParseError) as exc:
            raise _StreamError(ErrorInfo(type="parse_error", message=f"bad response body: {exc}")) from None
        if data.text or data.reasoning:
            record.first_chunk_text = data.text or data.reasoning
        record.output_text = data.text
        record.reasoning_text = data.reasoning
        record.usage = data.usage
        record.response_model = data.model

    async def _read_stream(
        self, record: RequestRecord, response: httpx.Response, stamps: Stamps
    ) -> None:
        parser = SSEParser()
        texts: list[str] = []
        reasoning: list[str] = []
        done = False
        chunks = record.chunk_ns
        parse = self.endpoint.parse_chunk
        try:
            async for raw in response.aiter_bytes():
                # When the socket read returned these bytes, not when we got to parse them.
                arrived = stamps.last_read_ns or _now()
                for event in parser.feed(raw):
                    if event.data == DONE:
                        done = True
                        continue
                    try:
                        data = parse(json.loads(event.data))
                    except (ValueError, ParseError) as exc:
                        raise _StreamError(
                            ErrorInfo(type="parse_error", message=f"bad stream event: {exc}")
                        ) from None
                    if data.text or data.reasoning:
                        if not chunks:
                            record.first_chunk_text = data.text or data.reasoning
                        chunks.append(arrived)
                        if data.text:
                            texts.append(data.text)
                        if data.reasoning:
                            reasoning.append(data.reasoning)
                    if data.usage is not None:
                        record.usage = data.usage
                    if data.model:
                        record.response_model = data.model
        finally:
            record.output_text = "".join(texts)
            record.reasoning_text = "".join(reasoning)
        record.end_ns = _now()
        for event in parser.close():
            if event.data == DONE:
                done = True
        if not done:
            raise _StreamError(
                ErrorInfo(type="incomplete_stream", message="stream ended before data: [DONE]")
            )
