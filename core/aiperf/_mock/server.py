"""The mock server: asyncio, one ``Protocol`` per connection, a small HTTP/1.1 parser.

Timing model. A request's clock starts when its first byte is read (``t0``). Streamed content
chunk ``k`` is due at ``t0 + ttft + k * itl * tokens_per_chunk`` and is written by a timer set
for that absolute deadline, so a late wake-up delays one chunk and never the ones after it.
The time each content chunk is handed to the socket is what ``/stats`` reports.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import select
import selectors
import signal
import socket
import struct
import sys
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import structlog

from aiperf._mock import apis, payloads
from aiperf._mock.config import MockServerConfig
from aiperf._mock.metrics import CONTENT_TYPE, PromMetrics
from aiperf._mock.prefix import PrefixCache
from aiperf._mock.stats import RequestTrace, Stats
from aiperf.mock_server import LISTENING_PREFIX

log = structlog.get_logger()

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
# A timer may fire up to the loop's clock resolution before its deadline; chunks due within
# this margin of "now" go out in the current write.
_EPS = 1e-6
# How far the wall-minus-loop clock offset may rise per reading (see MockState.wall_offset).
_OFFSET_SLEW = 1e-5
_INFERENCE = {
    b"/v1/chat/completions": "chat",
    b"/v1/completions": "completions",
    b"/v1/embeddings": "embeddings",
    **apis.ROUTES,
}
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"server: aiperf-mock\r\ntransfer-encoding: chunked\r\n"
)
_CHUNKED_END = b"0\r\n\r\n"
_CONNECTION_FAULTS = frozenset(("reset", "close", "disconnect"))
#: stream faults that act when content chunk ``mid`` is due; the others shape the whole answer.
_MID_FAULTS = frozenset(
    (*_CONNECTION_FAULTS, "malformed-sse", "malformed-json", "stall-mid", "nan", "deep-json",
     "huge-event")
)  # fmt: skip


def _frame(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk of the chunked transfer coding."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


@functools.cache
def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return b"HTTP/1.1 %d %s\r\n" % (status, reason.encode())


def _response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    content_type: bytes = b"application/json",
    extra: bytes = b"",
) -> bytes:
    return b"".join(
        (
            _status_line(status),
            b"content-type: ",
            content_type,
            b"\r\ncontent-length: %d\r\n" % len(body),
            b"server: aiperf-mock\r\n",
            extra,
            b"" if keep_alive else b"connection: close\r\n",
            b"\r\n",
            body,
        )
    )


class _PreciseEpollSelector(selectors.EpollSelector):
    """An epoll selector whose timeouts have microsecond, not millisecond, granularity.

    epoll rounds its timeout up to whole milliseconds, so a chunk due in 0.2 ms would go out
    up to a millisecond late. ``select()`` on the epoll descriptor itself waits with
    microsecond precision; the ready events are then collected without blocking.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            try:
                select.select([self.fileno()], [], [], timeout)
            except (OSError, ValueError):
                return super().select(timeout)
            return super().select(0)
        return super().select(timeout)


# Linux (asm-generic) values; Python's socket module does not export them.
_SO_TIMESTAMPNS = 35
_SCM_TIMESTAMPNS = 35
_ANCILLARY_SIZE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0


def _kernel_stamped_reader(
    transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, on_readable: Any
) -> socket.socket | None:
    """Take over reading from the transport to learn when each request really arrived.

    The ground truth for TTFT starts when the request reached this machine. When many clients
    send at the same instant, the loop reads them one after another, a millisecond or more
    apart; the kernel stamped each packet on arrival (SO_TIMESTAMPNS), so reading with
    recvmsg gives the time the client's bytes landed, whatever this loop was busy with. Writes
    stay with the transport. Without the option (not Linux), reading stays with asyncio.
    """
    sock = transport.get_extra_info("socket")
    if sock is None or not sys.platform.startswith("linux") or not _ANCILLARY_SIZE:
        return None
    try:
        rx = socket.socket(fileno=os.dup(sock.fileno()))
        rx.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return None
    transport.pause_reading()
    loop.add_reader(rx.fileno(), on_readable)
    return rx


def _new_loop() -> asyncio.AbstractEventLoop:
    if hasattr(selectors, "EpollSelector"):
        return asyncio.SelectorEventLoop(_PreciseEpollSelector())
    return asyncio.new_event_loop()


class MockState:
    """What all connections share: config, statistics and the outcome draw."""

    def __init__(self, config: MockServerConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.stats = Stats(capacity=config.stats_capacity, loop_origin=loop.time())
        self.prom = PromMetrics(self.stats, config.models[0])
        self.stats.on_finish = self.prom.observe
        self.prefix = PrefixCache(config.prefix_block_size) if config.prefix_block_size else None
        mono = loop.time()
        self._offset = time.time() - mono
        self.rng = random.Random(config.seed)
        self.next_rid = 0
        self.connections: set[Connection] = set()
        self.ttft = config.ttft_ms / 1e3
        self.ttft_per_inflight = config.ttft_per_inflight_ms / 1e3
        self.chunk_step = config.itl_ms / 1e3 * config.tokens_per_chunk
        self.config_dict = config.as_dict()
        self.created = int(time.time())
        #: --record-header names, lower-case, as they are compared on the wire.
        self.record_headers = frozenset(name.lower().encode("latin-1") for name in config.record_headers)
        # One uniform draw per request picks at most one outcome: [0, error_rate) is an error,
        # then each fault's interval, the rest is a normal answer.
        edges: list[tuple[float, str]] = []
        edge = 0.0
        for name, rate in (("error", config.error_rate), *config.faults):
            if rate > 0:
                edge += rate
                edges.append((edge, name))
        self.outcome_edges = edges

    def wall_offset(self, mono: float) -> float:
        """The wall clock minus the loop's clock, read now (``mono`` is the loop's time).

        Read as ``time.time() - mono``, it can only come out too large (by however long the
        process was preempted between the two readings), so the smallest recent reading is
        kept; it may rise by :data:`_OFFSET_SLEW` per reading, to follow the wall clock's
        adjustments. A preemption between the readings would otherwise move a request's
        arrival earlier by that long.
        """
        measured = time.time() - mono
        self._offset = min(measured, self._offset + _OFFSET_SLEW)
        return self._offset

    def draw_outcome(self) -> str:
        if not self.outcome_edges:
            return "ok"
        u = self.rng.random()
        for edge, name in self.outcome_edges:
            if u < edge:
                return name
        return "ok"

    def new_trace(self, endpoint: str, model: str, stream: bool, t0: float) -> RequestTrace:
        self.next_rid += 1
        trace = RequestTrace(
            rid=self.next_rid,
            endpoint=endpoint,
            model=model,
            stream=stream,
            t_received=t0,
            generation=self.stats.generation,
        )
        self.stats.begin(trace)
        return trace


class Connection(asyncio.Protocol):
    """One client connection: parse requests, hand each to a response, keep alive."""

    def __init__(self, state: MockState) -> None:
        self.state = state
        self.loop = state.loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        #: when the first byte of the request being read arrived.
        self.t0: float | None = None
        self.job: _Job | None = None
        self.closed = False
        self.continue_sent = False
        self.processing = False
        #: a second handle on the socket, read with recvmsg for kernel receive times.
        self.rx: socket.socket | None = None
        #: closes the connection when it has been idle for --idle-timeout.
        self.idle_handle: asyncio.TimerHandle | None = None
        #: with --record-header: the values of those headers in the request being handled.
        self.recorded: dict[str, str] | None = None

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state.connections.add(self)
        self.rx = _kernel_stamped_reader(transport, self.loop, self._on_readable)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        self.state.connections.discard(self)
        if self.rx is not None:
            self.loop.remove_reader(self.rx.fileno())
            self.rx.close()
            self.rx = None
        if self.job is not None:
            self.job.abandon()
            self.job = None

    def _on_readable(self) -> None:
        """Read with the kernel's receive time (see _kernel_stamped_reader)."""
        assert self.rx is not None and self.transport is not None
        try:
            data, ancillary, _flags, _addr = self.rx.recvmsg(262144, _ANCILLARY_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.transport.abort()
            return
        if not data:
            self.transport.close()
            return
        arrived = self.loop.time()
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SCM_TIMESTAMPNS and len(payload) >= 16:
                seconds, nanos = struct.unpack_from("@qq", payload)
                # wall clock of the kernel -> the loop's monotonic clock
                arrived = seconds + nanos / 1e9 - self.state.wall_offset(arrived)
        self._received(data, arrived)

    def data_received(self, data: bytes) -> None:
        self._received(data, self.loop.time())

    def _received(self, data: bytes, arrived: float) -> None:
        if self.idle_handle is not None:
            self.idle_handle.cancel()
            self.idle_handle = None
        if self.t0 is None:
            self.t0 = arrived
        self.buf += data
        if self.job is None:
            self._process()
        elif len(self.buf) > _MAX_HEAD + _MAX_BODY:
            # A client that keeps sending while its answer is still streaming.
            self.job.abandon()
            self.job = None
            self.reset()

    # -- parsing -------------------------------------------------------------------------------

    def _process(self) -> None:
        # A response that finishes at once calls back into job_done from inside this loop;
        # the flag keeps that from recursing (the loop picks up the next request itself).
        if self.processing:
            return
        self.processing = True
        try:
            self._process_buffer()
        finally:
            self.processing = False

    def _process_buffer(self) -> None:
        while self.job is None and not self.closed and self.buf:
            if self.buf[:2] == b"\r\n":
                del self.buf[:2]
                continue
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buf) > _MAX_HEAD:
                    self._fail(431, "request head too large")
                return
            lines = bytes(self.buf[:head_end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._fail(400, "malformed request line")
                return
            method, target, version = parts
            keep_alive = version == b"HTTP/1.1"
            length = 0
            expect_continue = False
            recording = self.state.record_headers
            self.recorded = {} if recording else None
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    self._fail(400, "malformed header line")
                    return
                name = name.strip().lower()
                if recording and name in recording and self.recorded is not None:
                    self.recorded[name.decode("latin-1")] = value.strip().decode("latin-1")
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        self._fail(400, "bad content-length")
                        return
                    if length < 0:
                        self._fail(400, "bad content-length")
                        return
                elif name == b"connection":
                    token = value.strip().lower()
                    if b"close" in token:
                        keep_alive = False
                    elif b"keep-alive" in token:
                        keep_alive = True
                elif name == b"transfer-encoding":
                    self._fail(411, "send the body with content-length")
                    return
                elif name == b"expect":
                    expect_continue = value.strip().lower() == b"100-continue"
            if length > _MAX_BODY:
                self._fail(413, "request body too large")
                return
            body_start = head_end + 4
            if len(self.buf) < body_start + length:
                if expect_continue and not self.continue_sent and self.transport is not None:
                    self.continue_sent = True
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return
            body = bytes(self.buf[body_start : body_start + length])
            del self.buf[: body_start + length]
            self.continue_sent = False
            t0 = self.t0 if self.t0 is not None else self.loop.time()
            self.t0 = None
            try:
                self._dispatch(method, target, body, keep_alive, t0)
            except Exception:
                log.exception("mock_server_request_failed", target=target.decode("latin-1"))
                if self.job is None and not self.closed:
                    self._fail(500, "mock server failure (see its log)")
            if self.buf and self.t0 is None:
                self.t0 = self.loop.time()

    def _fail(self, status: int, message: str) -> None:
        self.write(_response(status, payloads.error_body(status, message), keep_alive=False))
        self.close()

    # -- routing -------------------------------------------------------------------------------

    def _dispatch(
        self, method: bytes, target: bytes, body: bytes, keep_alive: bool, t0: float
    ) -> None:
        path, _, query = target.partition(b"?")
        endpoint = _INFERENCE.get(path)
        if endpoint is not None:
            if method != b"POST":
                self._reply(
                    405, payloads.error_body(405, "use POST"), keep_alive, extra=b"allow: POST\r\n"
                )
                return
            self._inference(endpoint, body, keep_alive, t0)
            return
        state = self.state
        if path == b"/health":
            if method != b"GET":
                self._reply(
                    405, payloads.error_body(405, "use GET"), keep_alive, extra=b"allow: GET\r\n"
                )
                return
            self._reply(200, b'{"status":"ok"}', keep_alive)
        elif path == b"/v1/models":
            if method != b"GET":
                self._reply(
                    405, payloads.error_body(405, "use GET"), keep_alive, extra=b"allow: GET\r\n"
                )
                return
            self._reply(200, payloads.models_body(state.config.models, state.created), keep_alive)
        elif path == b"/stats":
            if method != b"GET":
                self._reply(
                    405, payloads.error_body(405, "use GET"), keep_alive, extra=b"allow: GET\r\n"
                )
                return
            raw = parse_qs(query.decode("latin-1")).get("raw", ["0"])[-1] not in ("", "0", "false")
            snapshot = state.stats.snapshot(raw=raw, config=state.config_dict)
            self._reply(200, json.dumps(snapshot).encode(), keep_alive)
        elif path == b"/metrics":
            if method != b"GET":
                self._reply(
                    405, payloads.error_body(405, "use GET"), keep_alive, extra=b"allow: GET\r\n"
                )
                return
            self.write(
                _response(200, state.prom.render(), keep_alive=keep_alive, content_type=CONTENT_TYPE)
            )
            if not keep_alive:
                self.close()
        elif path == b"/stats/reset":
            if method != b"POST":
                self._reply(
                    405, payloads.error_body(405, "use POST"), keep_alive, extra=b"allow: POST\r\n"
                )
                return
            state.stats.reset()
            if state.prefix is not None:
                state.prefix.clear()
            self._reply(200, b'{"status":"reset"}', keep_alive)
        else:
            self._reply(
                404, payloads.error_body(404, f"no route {path.decode('latin-1')}"), keep_alive
            )

    def _reply(self, status: int, body: bytes, keep_alive: bool, *, extra: bytes = b"") -> None:
        self.write(_response(status, body, keep_alive=keep_alive, extra=extra))
        if not keep_alive:
            self.close()

    def _inference(self, endpoint: str, body: bytes, keep_alive: bool, t0: float) -> None:
        state = self.state
        try:
            parse = apis.parse_request if endpoint in apis.NAMES else payloads.parse_request
            req = parse(endpoint, body, state.config.models[0])
        except payloads.BadRequest as exc:
            trace = state.new_trace(endpoint, "", False, t0)
            trace.status, trace.outcome = 400, "error"
            self._reply(400, payloads.error_body(400, str(exc)), keep_alive)
            trace.t_done = self.loop.time()
            state.stats.finish(trace)
            return
        trace = state.new_trace(endpoint, req.model, req.stream, t0)
        trace.prompt_tokens = req.prompt_tokens
        trace.headers = self.recorded
        if state.config.record_bodies:
            trace.body = json.loads(body)
        words = payloads.words
        if state.config.distinct_replies and endpoint in ("chat", "completions"):
            words = payloads.Reply(body).words
        text = getattr(req, "prompt_text", None)
        if state.prefix is not None and text:
            trace.cached_tokens = state.prefix.observe(text)
        outcome = state.draw_outcome()
        if outcome == "error":
            self._injected_error(trace, keep_alive)
            return
        trace.outcome = outcome
        fault = None if outcome == "ok" else outcome
        if req.stream:
            job: _Job = _Stream(self, trace, req, keep_alive, fault, words)
        else:
            job = _Body(self, trace, req, keep_alive, fault, words)
        self.job = job
        job.start()

    def _injected_error(self, trace: RequestTrace, keep_alive: bool) -> None:
        config = self.state.config
        status = config.error_status
        extra = b"retry-after: %d\r\n" % config.retry_after if status == 429 else b""
        body = payloads.error_body(status, f"mock server: injected {status} error")
        self._reply(status, body, keep_alive, extra=extra)
        trace.status, trace.outcome = status, "error"
        trace.t_done = self.loop.time()
        self.state.stats.finish(trace)

    # -- output --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        """Close after the buffered output is sent (FIN)."""
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def reset(self) -> None:
        """Drop the connection with a TCP RST."""
        if self.transport is None or self.closed:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()
        self.closed = True

    def job_done(self, job: _Job, *, keep_alive: bool) -> None:
        if self.job is not job:
            return
        self.job = None
        if not keep_alive:
            self.close()
            return
        if self.buf and not self.closed:
            self._process()
        self._arm_idle()

    def _arm_idle(self) -> None:
        """With --idle-timeout, close the connection once it has been idle that long (FIN,
        as a server's keep-alive timeout does), racing any request already on its way."""
        idle = self.state.config.idle_timeout
        if idle <= 0 or self.closed or self.job is not None or self.buf:
            return
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        self.idle_handle = self.loop.call_later(idle, self._idle_close)

    def _idle_close(self) -> None:
        self.idle_handle = None
        if self.job is None and not self.buf and not self.closed:
            self.state.stats.idle_closes += 1
            self.close()


class _Job:
    """A response in progress: writes at absolute deadlines, then reports the trace."""

    def __init__(
        self,
        conn: Connection,
        trace: RequestTrace,
        req: payloads.Request,
        keep_alive: bool,
        fault: str | None,
        words: Any = None,
    ) -> None:
        self.conn = conn
        #: the answer's words: ``words(start, count)`` (the same for every request by default).
        self.words = words or payloads.words
        self.loop = conn.loop
        self.state = conn.state
        self.trace = trace
        self.req = req
        # A response that will end its connection says so in its headers, so that the client
        # does not reuse the connection and see the next request fail instead of this one.
        self.keep_alive = keep_alive and fault not in _CONNECTION_FAULTS
        self.fault = fault
        self.handle: asyncio.TimerHandle | None = None
        self.finished = False
        config = conn.state.config
        self.n_tokens = config.output_tokens if req.max_tokens is None else req.max_tokens
        if fault == "empty":
            # A finish_reason and no content, whatever was asked for.
            self.n_tokens = 0
        self.finish_reason = b"stop" if req.max_tokens is None else b"length"
        self.model = payloads.json_str(req.model)
        trace.completion_tokens = self.n_tokens
        self.reasoning_tokens = min(req.reasoning_tokens, self.n_tokens)
        trace.reasoning_tokens = self.reasoning_tokens
        # --ttft-per-inflight-ms: the others in flight as this one arrives (it is counted too).
        state = self.state
        self.ttft = state.ttft + state.ttft_per_inflight * max(state.stats.in_flight - 1, 0)
        if trace.body is not None:
            # What a client shows as the answer (reasoning apart, for chat).
            start = self.reasoning_tokens if trace.endpoint == "chat" else 0
            trace.reply = self.words(start, self.n_tokens - start).decode("ascii")
        # stall-first: nothing at all (not even headers) until the stall is over.
        self.t_start = trace.t_received + (config.stall_seconds if fault == "stall-first" else 0.0)

    def start(self) -> None:
        self.at(self.t_start, self.step)

    def step(self) -> None:
        raise NotImplementedError

    def at(self, deadline: float, callback: Any) -> None:
        if deadline <= self.loop.time() + _EPS:
            callback()
        else:
            self.handle = self.loop.call_at(deadline, callback)

    def end(self, *, keep_alive: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self.state.stats.finish(self.trace)
        self.conn.job_done(self, keep_alive=keep_alive)

    def abandon(self) -> None:
        """The client went away before the response was over."""
        if self.handle is not None:
            self.handle.cancel()
        if not self.finished:
            self.finished = True
            if self.trace.outcome == "ok":
                self.trace.outcome = "client_disconnect"
            self.state.stats.finish(self.trace)

    def terminate(self, fault: str, sent: bytes, written: int = 0) -> None:
        """End the response with a connection-level fault, after writing ``sent``."""
        conn = self.conn
        self.send(sent, written)
        if fault == "reset":
            conn.reset()
        else:
            conn.close()
        self.end(keep_alive=False)

    def send(self, data: bytes, written: int = 0) -> float:
        """Write ``data`` carrying ``written`` content chunks; returns the write time.

        The time is taken just before the send: the write wakes the client, and the kernel
        may run the client before this process reads the clock again.
        """
        t = self.loop.time()
        if data:
            self.conn.write(data)
        if written:
            self.trace.chunk_writes.extend([t] * written)
        return t


class _Stream(_Job):
    """A streamed (SSE) answer."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        trace = self.trace
        state = self.state
        self.fmt: Any
        if trace.endpoint in apis.NAMES:
            self.fmt = apis.stream_format(
                trace.endpoint,
                rid=trace.rid,
                model=self.model,
                prompt_tokens=trace.prompt_tokens,
                n_tokens=self.n_tokens,
                reasoning_tokens=self.reasoning_tokens,
            )
        else:
            self.fmt = payloads.StreamFormat(
                chat=trace.endpoint == "chat", rid=trace.rid, created=int(time.time()), model=self.model
            )
        per_chunk = state.config.tokens_per_chunk
        self.per_chunk = per_chunk
        self.n_chunks = -(-self.n_tokens // per_chunk)
        #: faults act when content chunk ``mid`` is due: the chunks before it are delivered.
        self.mid = self.n_chunks // 2
        self.k = 0
        self.base = self.t_start + self.ttft
        self.head_sent = False
        self.stream_end = "finish-only" if self.fault == "no-done" else state.config.stream_end
        self.usage_string = self.fault == "usage-string"
        if self.fault not in _MID_FAULTS:
            self.fault = None

    def deadline(self, k: int) -> float:
        return self.base + k * self.state.chunk_step

    def step(self) -> None:
        self.handle = None
        if self.finished or self.conn.closed:
            return
        now = self.loop.time()
        out: list[bytes] = []
        head = b""
        if not self.head_sent:
            self.head_sent = True
            head = _STREAM_HEAD + (b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n")
            opening = self.fmt.opening()
            if opening:
                out.append(opening)
        written = 0
        n_chunks = self.n_chunks
        while self.deadline(self.k) <= now + _EPS:
            if self.k == self.mid and self.fault is not None:
                if self._fault(head, out, written):
                    return
                continue
            if self.k >= n_chunks:
                break
            start = self.k * self.per_chunk
            count = min(self.per_chunk, self.n_tokens - start)
            last = self.k == n_chunks - 1
            out.append(
                self.fmt.content(
                    self.words(start, count),
                    self.finish_reason if last else None,
                    start < self.reasoning_tokens,
                )
            )
            self.k += 1
            written += 1
        done = self.k == n_chunks and (n_chunks > 0 or self.deadline(0) <= now + _EPS)
        if done and self.fmt.native:
            # The API's own closing events (usage, stop reason); no [DONE].
            out.append(self.fmt.closing(self.finish_reason))
        elif done:
            if n_chunks == 0:
                out.append(self.fmt.empty_finish(self.finish_reason))
            if self.usage_string:
                # sent even when not asked for: the bad usage is the point of this fault
                usage = payloads.usage_as_string(self.trace.prompt_tokens, self.n_tokens)
                out.append(self.fmt.usage(usage))
            elif self.req.include_usage:
                usage = payloads.usage(self.trace.prompt_tokens, self.n_tokens, self.reasoning_tokens)
                out.append(self.fmt.usage(usage))
            if self.stream_end != "finish-only":
                out.append(payloads.DONE)
        data = head + _frame(b"".join(out)) if out else head
        hold = done and self.stream_end == "done-hold"
        t = self.send(data + _CHUNKED_END if done and not hold else data, written)
        if not done:
            self.at(self.deadline(self.k), self.step)
            return
        writes = self.trace.chunk_writes
        self.trace.t_done = writes[-1] if writes else t
        if hold:
            # The answer is complete at [DONE]; the response itself stays open (no chunked
            # terminator, no close) for --hold-seconds, as some servers do.
            self.finished = True
            self.state.stats.finish(self.trace)
            self.handle = self.loop.call_later(self.state.config.hold_seconds, self._release)
        else:
            self.end(keep_alive=self.keep_alive)

    def _release(self) -> None:
        self.handle = None
        if self.conn.closed:
            return
        self.send(_CHUNKED_END)
        self.conn.job_done(self, keep_alive=self.keep_alive)

    def _fault(self, head: bytes, out: list[bytes], written: int) -> bool:
        """Apply the fault due now; True if it ended the response."""
        fault, self.fault = self.fault, None
        sent = head + _frame(b"".join(out)) if out else head
        if fault in ("reset", "disconnect"):
            self.terminate(fault, sent, written)
            return True
        if fault == "close":
            # A well-formed end of the HTTP body, but no finish_reason, no usage, no [DONE].
            self.terminate(fault, sent + _CHUNKED_END, written)
            return True
        if fault == "malformed-sse":
            out.append(payloads.MALFORMED_SSE)
        elif fault == "malformed-json":
            out.append(self.fmt.malformed_json())
        elif fault == "stall-mid":
            self.base += self.state.config.stall_seconds
        elif fault == "nan":
            out.append(self.fmt.usage(payloads.USAGE_NAN))
        elif fault == "deep-json":
            out.append(self.fmt.deep_json())
        elif fault == "huge-event":
            out.append(self.fmt.huge())
        return False


class _Body(_Job):
    """A non-streamed answer (chat, completions, embeddings): one body when the last token is due."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        trace = self.trace
        state = self.state
        if trace.endpoint == "embeddings":
            trace.completion_tokens = 0
            self.deadline = self.t_start + self.ttft
            self.body = payloads.embeddings_body(
                req=self.req, model=self.model, dimensions=state.config.embedding_dimensions
            )
        elif trace.endpoint in apis.ONE_SHOT:
            trace.completion_tokens = 0
            self.deadline = self.t_start + self.ttft
            self.body = apis.one_shot_body(
                trace.endpoint, created=int(time.time()), model=self.model, req=self.req
            )
        elif trace.endpoint in apis.NAMES:
            n_chunks = -(-self.n_tokens // state.config.tokens_per_chunk)
            self.deadline = self.t_start + self.ttft + max(n_chunks - 1, 0) * state.chunk_step
            self.body = apis.text_body(
                trace.endpoint,
                rid=trace.rid,
                created=int(time.time()),
                model=self.model,
                req=self.req,
                n_tokens=self.n_tokens,
                finish=self.finish_reason,
            )
        else:
            n_chunks = -(-self.n_tokens // state.config.tokens_per_chunk)
            self.deadline = self.t_start + self.ttft + max(n_chunks - 1, 0) * state.chunk_step
            chat = trace.endpoint == "chat"
            # Chat's first reasoning_tokens tokens are reasoning, as in a stream; completions
            # has no place for reasoning.
            reasoning = self.reasoning_tokens if chat else 0
            if self.fault == "usage-string":
                usage = payloads.usage_as_string(trace.prompt_tokens, self.n_tokens)
            elif self.fault == "nan":
                usage = payloads.USAGE_NAN
            else:
                usage = payloads.usage(trace.prompt_tokens, self.n_tokens, reasoning)
            visible = self.n_tokens - reasoning
            fields: dict[str, Any] = dict(
                rid=trace.rid,
                created=int(time.time()),
                model=self.model,
                text=self.words(reasoning, visible) if visible else b"",
                finish=self.finish_reason,
                usage_json=usage,
            )
            if chat:
                thought = self.words(0, reasoning) if reasoning else b""
                self.body = payloads.chat_body(reasoning=thought, **fields)
            else:
                self.body = payloads.completion_body(**fields)
            if self.fault == "deep-json":
                self.body = payloads.deep_json()
            elif self.fault == "huge-event":
                self.body = payloads.padded(self.body)

    def start(self) -> None:
        self.at(self.deadline, self.step)

    def step(self) -> None:
        self.handle = None
        if self.finished or self.conn.closed:
            return
        body = self.body
        half = len(body) // 2
        fault = self.fault
        if fault in ("malformed-sse", "malformed-json"):
            body = body[:half]
        head = b"".join(
            (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                % len(body),
                b"server: aiperf-mock\r\n",
                b"" if self.keep_alive else b"connection: close\r\n",
                b"\r\n",
            )
        )
        if fault == "close":
            # The head, then a clean close before the body: the client knows the server took
            # the request (a close before any byte of a response may be retried by clients,
            # as the keep-alive race looks the same).
            self.terminate(fault, head)
            return
        if fault in ("reset", "disconnect"):
            self.terminate(fault, head + body[:half])
            return
        if fault == "stall-mid":
            t = self.send(head + body[:half])
            self.rest = body[half:]
            self.handle = self.loop.call_at(t + self.state.config.stall_seconds, self._rest)
            return
        self.trace.t_done = self.send(head + body)
        self.end(keep_alive=self.keep_alive)

    def _rest(self) -> None:
        self.handle = None
        if self.finished or self.conn.closed:
            return
        self.trace.t_done = self.send(self.rest)
        self.end(keep_alive=self.keep_alive)


# -- running -------------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _serve(config: MockServerConfig) -> int:
    loop = asyncio.get_running_loop()
    try:
        sock = _listen(config.host, config.port)
    except socket.gaierror as exc:
        print(
            f"aiperf mock-server: error: --host: cannot resolve {config.host!r} ({exc.strerror})",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(
            f"aiperf mock-server: error: cannot listen on {config.host}:{config.port} ({exc.strerror}); "
            "choose another --port, or --port 0 for a free one",
            file=sys.stderr,
        )
        return 1
    state = MockState(config, loop)
    loop.set_exception_handler(_log_loop_error)
    server = await loop.create_server(lambda: Connection(state), sock=sock)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        print(f"{LISTENING_PREFIX}{_url(sock)}", flush=True)
    except BrokenPipeError:
        pass
    log.debug("mock_server_started", url=_url(sock), config=state.config_dict)
    try:
        await stop.wait()
    finally:
        server.close()
        for conn in list(state.connections):
            if conn.transport is not None:
                conn.transport.abort()
        await server.wait_closed()
    return 0


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.error(
        "mock_server_loop_error", message=context.get("message"), exc_info=context.get("exception")
    )


def _tighten_timer_slack() -> None:
    """Ask Linux for 1 ns timer slack instead of the default 50 us, so chunks leave on time."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_timerslack = 29
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_timerslack, 1, 0, 0, 0)
    except (OSError, AttributeError):
        log.debug("mock_server_timer_slack_unchanged")


def run(config: MockServerConfig) -> int:
    _tighten_timer_slack()
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        return runner.run(_serve(config))
