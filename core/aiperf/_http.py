"""Sending one request and stamping its bytes as they arrive.

A request is written in one ``send`` (head and body together) on a keep-alive connection from
:class:`aiperf._transport.Pool`, and its response is read piece by piece as the socket
delivers it. Whatever goes wrong with one response (the network, HTTP, the stream's format,
its JSON, a bug in a parser) ends that request as an error record and nothing more.

How a stream ends (see docs/reliability.md): ``data: [DONE]`` ends the request at once,
whatever the server does with the connection afterwards; a body that ends after a chunk with
a ``finish_reason`` is complete too (several engines never send ``[DONE]``); a body that ends
with neither is ``incomplete_stream``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import trio

from aiperf._endpoints import IGNORED, ParseError, ServerErrorBody
from aiperf._sse import SSEParser
from aiperf._transport import (
    BodyReader,
    Connection,
    Pool,
    Response,
    TransportError,
    never_reached,
    read_head,
)
from aiperf._types import EndpointType, ErrorInfo, RequestRecord, ResponseData, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig

_now = time.perf_counter_ns
DONE = "[DONE]"
#: default of ``--max-response-bytes``.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: how much of an error body a message quotes.
_QUOTE = 300
#: the error type a request closed on purpose by the client carries in the JSONL.
CLIENT_CANCELLED = "request_cancelled"
#: how every request head ends (its length follows).
_LENGTH = b"Content-Length: "


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for the run: NaN and Infinity (which Python's json accepts) are not JSON, and a
# token count of NaN would poison every statistic it reached.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_scan: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``, minus its two whitespace searches when there is none.

    Every stream event goes through here; an event's JSON nearly always fills its data line
    exactly, so the scanner is called directly (a third less time per event). Anything else
    (leading or trailing whitespace, extra data, invalid JSON) takes the full decode, which
    accepts or rejects it with the standard error.
    """
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return _DECODER.decode(text)
    if end != len(text):
        return _DECODER.decode(text)
    return value


class _Failure(Exception):
    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def network_error_message(exc: BaseException) -> str:
    """What the operating system said, not only the wrapper's name: a reset reads
    ``ReadError`` / ``BrokenResourceError`` up the chain and ``Connection reset by peer`` at
    its root."""
    from aiperf.urls import os_reason

    message = str(exc) or type(exc).__name__
    reason = os_reason(exc)
    if reason and reason not in message:
        weak = message in (type(exc).__name__, "BrokenResourceError", "ClosedResourceError")
        message = reason if weak else f"{message}: {reason}"
    return message


def request_url(config: ProfileConfig, endpoint: EndpointType) -> str:
    """Where requests go: ``--url`` plus ``--endpoint`` (or the type's default path), then
    the URL's query string (``http://h/v1?api-version=2`` -> ``.../v1/chat/completions?api-version=2``)."""
    base, _, query = config.url.partition("?")
    path = endpoint.default_path
    if config.streaming and endpoint.streaming_path:
        path = endpoint.streaming_path
    return _with_path(base.rstrip("/"), config.endpoint, path) + (f"?{query}" if query else "")


def _with_path(base: str, explicit: str | None, path: str) -> str:
    if explicit:
        return base + explicit
    if base.endswith(path):
        return base
    if base.endswith("/v1") and path.startswith("/v1/"):
        return base + path[3:]
    return base + path


def request_headers(config: ProfileConfig, endpoint: EndpointType | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if config.streaming:
        headers["Accept"] = "text/event-stream"
    if endpoint is not None and endpoint.headers is not None:
        # The API's own way to carry the key (the Messages API's x-api-key), not Bearer.
        headers.update(endpoint.headers(config))
    elif config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(dict(config.headers))
    return headers


#: headers the client owns: the body's framing is ours to state.
_FRAMING = frozenset(("content-length", "transfer-encoding"))


def request_head(url: str, headers: dict[str, str]) -> bytes:
    """The request head up to ``Content-Length: ``, serialised once for the whole run."""
    from aiperf import __version__

    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.netloc.rpartition("@")[2]
    base: list[tuple[str, str]] = [
        ("Host", host),
        ("User-Agent", f"aiperf/{__version__}"),
        # No compression: a measured stream must arrive as the server made it.
        ("Accept-Encoding", "identity"),
    ]
    if parts.username is not None:
        # ``http://user:password@host`` means HTTP Basic authentication (as httpx did);
        # an explicit Authorization header below still wins.
        import base64
        from urllib.parse import unquote

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        base.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
    fields: dict[str, tuple[str, str]] = {}
    for name, value in (*base, *headers.items()):
        if name.lower() not in _FRAMING:
            fields[name.lower()] = (name, value)
    lines = [f"POST {target} HTTP/1.1"]
    for name, value in fields.values():
        if any(c in value or c in name for c in "\r\n\0") or not name.strip() or ":" in name:
            raise UsageError(f"header {name!r}: names and values must be one line without ':' in the name")
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: ")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise UsageError("header values must be ASCII (or Latin-1) text") from None


def make_pool(config: ProfileConfig) -> Pool:
    """One pool for the run; a connection per request in flight, reused while it lives."""
    parts = urlsplit(config.url)
    context = None
    if parts.scheme == "https":
        # Loading the CA store costs about 20 ms: only for servers that need it.
        import ssl

        context = ssl.create_default_context(
            cafile=str(config.ca_bundle) if config.ca_bundle is not None else None
        )
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Pool(host, port, ssl_context=context)


def make_sender(config: ProfileConfig, endpoint: EndpointType) -> Sender:
    return Sender(
        pool=make_pool(config),
        head=request_head(request_url(config, endpoint), request_headers(config, endpoint)),
        endpoint=endpoint,
        streaming=config.streaming,
        timeout_s=config.request_timeout_seconds,
        max_response_bytes=config.max_response_bytes,
    )


@attrs.define
class Sender:
    pool: Pool
    #: the serialised request head, ending in ``Content-Length: ``.
    head: bytes
    endpoint: EndpointType
    streaming: bool
    timeout_s: float
    max_response_bytes: int = MAX_RESPONSE_BYTES
    #: requests sent a second time because the first try provably never reached the server.
    retries: int = 0

    def close(self) -> None:
        self.pool.close()

    async def send(
        self,
        record: RequestRecord,
        body: bytes,
        extra_head: bytes = b"",
        cancel_after: float | None = None,
        sent: trio.Event | None = None,
    ) -> None:
        """Send ``body`` and fill ``record``; every failure becomes ``record.error``.

        ``extra_head`` is header lines (each ending in CRLF) for this request alone (a
        session's id). With ``cancel_after``, the connection is closed that many seconds after
        the request was fully sent unless the response is complete by then: the record is
        marked ``client_cancelled``. ``sent`` (optional) is set once the request's bytes are
        with the kernel, or once it failed before that: a schedule uses it to keep requests in
        order on the wire.

        Cancellation (Ctrl-C, the end of the grace period) is never caught here: it passes
        through every read, closes the connection and reaches the caller.
        """
        record.start_ns = _now()
        # A bare CancelScope rather than trio.fail_after: the same deadline without a
        # generator-based context manager around it, which took a tenth of a request's CPU.
        deadline = trio.CancelScope(deadline=trio.current_time() + self.timeout_s)
        try:
            with deadline:
                if cancel_after is None:
                    await self._exchange(record, body, extra_head, sent=sent)
                else:
                    with trio.CancelScope() as abort:
                        await self._exchange(record, body, extra_head, abort, cancel_after, sent)
                    if abort.cancelled_caught:
                        record.end_ns = _now()
                        record.client_cancelled = True
                        record.error = ErrorInfo(
                            type=CLIENT_CANCELLED,
                            message=f"closed by the client {cancel_after:g} s after the request was "
                            "sent (--request-cancellation-rate)",
                        )
            if deadline.cancelled_caught:
                record.end_ns = _now()
                record.error = ErrorInfo(
                    type="timeout", message=f"no complete response within {self.timeout_s:g} s"
                )
        except _Failure as exc:
            record.error = exc.info
        except TransportError as exc:
            record.error = ErrorInfo(type=exc.error_type, message=network_error_message(exc))
        except Exception as exc:  # noqa: BLE001 - one response must never end the run
            record.error = ErrorInfo(
                type="parse_error", message=f"{type(exc).__name__}: {exc}"[:_QUOTE]
            )
        finally:
            if sent is not None:
                sent.set()
            if record.end_ns is None:
                record.end_ns = _now()

    async def _exchange(
        self,
        record: RequestRecord,
        body: bytes,
        extra_head: bytes = b"",
        abort: trio.CancelScope | None = None,
        cancel_after: float = 0.0,
        sent: trio.Event | None = None,
    ) -> None:
        # One write: head, length and body together (see the module docstring of _transport).
        head = self.head
        if extra_head:
            cut = len(head) - len(_LENGTH)
            head = head[:cut] + extra_head + head[cut:]
        payload = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        pool = self.pool
        conn = await pool.acquire()
        try:
            try:
                record.start_ns, record.sent_end_ns = await conn.send(payload)
                if abort is not None:
                    abort.deadline = trio.current_time() + cancel_after
                if sent is not None:
                    sent.set()
                response = await read_head(conn)
            except TransportError as exc:
                conn.close()
                if not never_reached(conn, exc):
                    raise
                # The server closed this keep-alive connection while the request was on its
                # way; it never saw the request, so sending it again cannot count it twice.
                self.retries += 1
                record.retries += 1
                conn = await pool.connect()
                record.start_ns, record.sent_end_ns = await conn.send(payload)
                if abort is not None:
                    abort.deadline = trio.current_time() + cancel_after
                response = await read_head(conn)
            reusable = await self._response(record, conn, response)
        except BaseException:
            # Cancelled, timed out or failed mid-response: the connection's state is unknown.
            conn.close()
            raise
        if reusable:
            pool.release(conn)
        else:
            conn.close()

    async def _response(self, record: RequestRecord, conn: Connection, response: Response) -> bool:
        """Read the response into ``record``; True when the connection may serve another."""
        status = response.status
        record.status_code = status
        record.response_ns = conn.last_read_ns or _now()
        reader = BodyReader(conn, response, self.max_response_bytes)
        if status >= 300 or status < 200 or status == 204:
            body = await reader.read_all()
            record.end_ns = conn.last_read_ns or _now()
            record.error = _status_error(status, response, body)
        elif self.streaming and response.content_type != "application/json":
            if await self._read_stream(record, conn, reader):
                # The answer ended at [DONE]; whatever follows decides only whether the
                # connection can be reused, never the request's outcome.
                try:
                    return response.keep_alive and reader.finish_buffered()
                except TransportError:
                    return False
        else:
            await self._read_body(record, conn, reader)
        return response.keep_alive and reader.done

    async def _read_body(self, record: RequestRecord, conn: Connection, reader: BodyReader) -> None:
        body = await reader.read_all()
        end = record.end_ns = conn.last_read_ns or _now()
        if not body.strip():
            raise _Failure(ErrorInfo(type="empty_response", message="HTTP 200 with an empty body"))
        try:
            data = self.endpoint.parse_response(_decode(body.decode("utf-8")))
        except ServerErrorBody as exc:
            raise _Failure(ErrorInfo(type="server_error_body", message=str(exc))) from None
        except (ValueError, RecursionError, ParseError) as exc:
            raise _Failure(
                ErrorInfo(type=_error_type(exc), message=f"bad response body: {_reason(exc)}")
            ) from None
        if data.values:
            record.values = {**record.values, **data.values} if record.values else data.values
        if data.text or data.reasoning:
            record.first_chunk_text = data.text or data.reasoning
            if self.streaming:
                # A server that ignored stream=true: its one body is its one chunk.
                record.chunk_ns.append(end)
        elif self._wants_tokens(record):
            raise _Failure(
                ErrorInfo(type="empty_response", message="the response carried no content")
            )
        record.output_text = data.text
        record.reasoning_text = data.reasoning
        if data.text and record.chunk_ns:
            record.first_answer_chunk = 0
        if data.reasoning and record.chunk_ns:
            record.first_reasoning_chunk = 0
        record.usage = data.usage
        record.response_model = data.model

    async def _read_stream(
        self, record: RequestRecord, conn: Connection, reader: BodyReader
    ) -> bool:
        """Read an SSE stream; True if it ended with ``[DONE]`` (the rest of the body is
        not read: the request is over)."""
        parser = SSEParser()
        endpoint = self.endpoint
        stream = _Stream(
            endpoint.new_stream_parser() if endpoint.new_stream_parser else endpoint.parse_chunk,
            record,
        )
        done = False
        try:
            while not done:
                piece = await reader.next()
                if not piece:
                    break
                # When the socket read returned these bytes, not when we got to parse them.
                arrived = conn.last_read_ns
                for event in parser.feed(piece):
                    if event.data == DONE:
                        done = True
                        break  # anything after [DONE] is not part of the answer
                    stream.event(event.data, arrived)
            if not done:
                arrived = conn.last_read_ns
                for event in parser.close():
                    if event.data == DONE:
                        done = True
                        break
                    stream.event(event.data, arrived)
        finally:
            record.output_text = "".join(stream.texts)
            record.reasoning_text = "".join(stream.reasoning)
        record.end_ns = conn.last_read_ns or _now()
        if not done and not stream.finished and not endpoint.complete_at_body_end:
            raise _Failure(
                ErrorInfo(
                    type="incomplete_stream",
                    message="stream ended without data: [DONE] or a finish_reason",
                )
            )
        if not record.chunk_ns and self._wants_tokens(record):
            raise _Failure(
                ErrorInfo(type="empty_response", message="the stream carried no content")
            )
        return done

    def _wants_tokens(self, record: RequestRecord) -> bool:
        return self.endpoint.produces_tokens and record.max_tokens != 0


@attrs.define(slots=True)
class _Stream:
    """What one stream has delivered so far."""

    #: the endpoint's parser of one event (a fresh one per stream for ordered APIs).
    parse: Callable[[Any], ResponseData]
    record: RequestRecord
    texts: list[str] = attrs.field(factory=list)
    reasoning: list[str] = attrs.field(factory=list)
    #: a chunk with a non-null finish_reason arrived.
    finished: bool = False

    def event(self, text: str, arrived: int) -> None:
        try:
            data = self.parse(_decode(text))
        except ServerErrorBody as exc:
            raise _Failure(ErrorInfo(type="server_error_body", message=str(exc))) from None
        except (ValueError, RecursionError, ParseError) as exc:
            raise _Failure(
                ErrorInfo(type=_error_type(exc), message=f"bad stream event: {_reason(exc)}")
            ) from None
        record = self.record
        if data.text or data.reasoning:
            chunks = record.chunk_ns
            if not chunks:
                record.first_chunk_text = data.text or data.reasoning
            chunks.append(arrived)
            if data.text:
                if not self.texts:
                    record.first_answer_chunk = len(chunks) - 1
                self.texts.append(data.text)
            if data.reasoning:
                if not self.reasoning:
                    record.first_reasoning_chunk = len(chunks) - 1
                self.reasoning.append(data.reasoning)
        elif data is IGNORED:
            record.ignored_events += 1
        if data.values:
            record.values = {**record.values, **data.values} if record.values else data.values
        if data.usage is not None:
            record.usage = data.usage
        if data.model:
            record.response_model = data.model
        if data.finish_reason:
            self.finished = True


def _error_type(exc: BaseException) -> str:
    return exc.error_type if isinstance(exc, ParseError) else "parse_error"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, RecursionError):
        text = "JSON nested too deeply"
    return text[:_QUOTE]


def _status_error(status: int, response: Response, body: bytes) -> ErrorInfo:
    if status == 204:
        return ErrorInfo(type="no_content", message="HTTP 204: the server answered with no content")
    if 300 <= status < 400:
        where = response.headers.get("location", "")[:200]
        return ErrorInfo(
            type="redirect",
            message=f"HTTP {status}: redirected to {where or '(no location)'}; aiperf does not "
            "follow redirects, pass the final URL with --url",
        )
    text = body[:_QUOTE].decode("utf-8", errors="replace").strip()
    return ErrorInfo(type=str(status), message=f"HTTP {status}: {text}")
