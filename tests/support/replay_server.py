"""Serve a recorded HTTP response (a transcript) on loopback, byte for byte, for tests.

::

    transcript = Transcript.load(TRANSCRIPTS / "vllm-chat-stream-usage.http")
    with ReplayServer(transcript, first_delay_s=0.1, gap_s=0.02) as server:
        run_aiperf(url=server.url)                 # http://127.0.0.1:PORT
        assert server.requests == 4

A transcript file is the status line and headers as the engine sends them (one per line), a
blank line, then the body exactly as the engine writes it: SSE events with their own line
endings (LF, CRLF, a BOM, ``data:`` with or without a space), or one JSON document. Lines
before the status line that start with ``#`` are comments (where the shape came from).

How the body is framed follows the recorded headers, as the engine frames it:

- ``transfer-encoding: chunked``: each SSE event is one HTTP chunk, then the last chunk;
- ``content-length``: the length is recomputed from the body (the recorded value is ignored);
- neither: the body is delimited by closing the connection (HTTP/1.0 style).

The body is written one SSE event at a time: ``first_delay_s`` after the request arrived,
then ``gap_s`` between events, so TTFT and ITL are known in advance. Options for the endings
real servers have: ``hold_open_s`` keeps the response open that long after the last event
(a server that sends ``[DONE]`` but keeps the stream open), and ``idle_close_s`` closes a
kept-alive connection that long after its last response (a server with a short keep-alive
timeout). Runs in a thread of the test process; ``stop()`` closes every socket.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import attrs

__all__ = ["ReplayServer", "Served", "Transcript", "split_events"]

_EVENT_END = re.compile(rb"(\r\n\r\n|\n\n|\r\r)")
_MAX_HEAD = 64 * 1024


def split_events(body: bytes) -> list[bytes]:
    """The body cut after each blank line: one piece per SSE event (comments included).

    Anything after the last blank line (a final event with no terminator) is its own piece.
    """
    pieces: list[bytes] = []
    start = 0
    for match in _EVENT_END.finditer(body):
        pieces.append(body[start : match.end()])
        start = match.end()
    if start < len(body):
        pieces.append(body[start:])
    return pieces


@attrs.frozen(kw_only=True)
class Transcript:
    """One recorded response: status line, headers in order, raw body."""

    name: str
    status_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    comments: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> Transcript:
        raw = path.read_bytes()
        comments: list[str] = []
        # Comment lines (LF-terminated) come first; the head ends at the first empty line.
        while raw.startswith(b"#"):
            line, _, raw = raw.partition(b"\n")
            comments.append(line[1:].decode("utf-8").strip())
        head, sep, body = raw.partition(b"\n\n")
        if not sep:
            raise ValueError(f"{path.name}: no blank line after the headers")
        lines = head.decode("latin-1").split("\n")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"{path.name}: bad header line {line!r}")
            headers.append((name.strip(), value.strip()))
        return cls(
            name=path.stem,
            status_line=lines[0].strip(),
            headers=tuple(headers),
            body=body,
            comments=tuple(comments),
        )

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    @property
    def chunked(self) -> bool:
        return (self.header("transfer-encoding") or "").lower() == "chunked"

    @property
    def has_length(self) -> bool:
        return self.header("content-length") is not None

    @property
    def events(self) -> list[bytes]:
        return split_events(self.body)


@attrs.define
class Served:
    """When the server read one request and sent each event of its answer."""

    received_ns: int
    sent_ns: list[int] = attrs.field(factory=list)


class ReplayServer:
    """A one-transcript HTTP/1.1 server on ``127.0.0.1``, port chosen by the OS."""

    def __init__(
        self,
        transcript: Transcript,
        *,
        first_delay_s: float = 0.0,
        gap_s: float = 0.0,
        hold_open_s: float = 0.0,
        idle_close_s: float | None = None,
    ) -> None:
        self.transcript = transcript
        self.first_delay_s = first_delay_s
        self.gap_s = gap_s
        self.hold_open_s = hold_open_s
        self.idle_close_s = idle_close_s
        self.url = ""
        self.requests = 0
        #: request bodies as received, in arrival order.
        self.bodies: list[bytes] = []
        #: per request, in arrival order: when it had been read and when each event was
        #: handed to the kernel (``time.perf_counter_ns``): the timing truth.
        self.timings: list[Served] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._spawn(self._accept_loop)

    def stop(self) -> None:
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            _close(sock)
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    # -- serving ---------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.add(conn)
                self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stopping.is_set():
                # A short keep-alive timeout: the server closes a connection that sat idle,
                # whether or not the client is about to reuse it.
                conn.settimeout(self.idle_close_s)
                head, request, buffer = _read_request(conn, buffer)
                if request is None:
                    return
                if head.startswith(b"GET "):
                    # Not a replayed exchange (a metrics scrape, a probe): a plain 404.
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    continue
                served = Served(received_ns=time.perf_counter_ns())
                with self._lock:
                    self.requests += 1
                    self.bodies.append(request)
                    self.timings.append(served)
                if not self._respond(conn, served):
                    return
        except (OSError, TimeoutError):
            return
        finally:
            with self._lock:
                self._sockets.discard(conn)
            _close(conn)

    def _respond(self, conn: socket.socket, served: Served) -> bool:
        """Send the transcript; False when the connection must close afterwards."""
        t = self.transcript
        events = t.events or [b""]
        keep_alive = t.chunked or t.has_length
        if (t.header("connection") or "").lower() == "close":
            keep_alive = False
        head = [t.status_line]
        for name, value in t.headers:
            if name.lower() == "content-length":
                value = str(len(t.body))
            head.append(f"{name}: {value}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if t.status in (204, 304) or 100 <= t.status < 200:
            return keep_alive
        # The delays run from when the request was read, as an engine's prefill would.
        time.sleep(self.first_delay_s)
        for i, event in enumerate(events):
            if i:
                time.sleep(self.gap_s)
            if event:
                conn.sendall(_chunk(event) if t.chunked else event)
            served.sent_ns.append(time.perf_counter_ns())
        if self.hold_open_s:
            # The body is not finished (no last chunk, no close): only a client that stops
            # at [DONE] is done now.
            self._stopping.wait(self.hold_open_s)
        if t.chunked:
            conn.sendall(b"0\r\n\r\n")
        return keep_alive


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[bytes, bytes | None, bytes]:
    """One request: its head, its Content-Length body (None when the peer closed first) and
    what was read past it."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > _MAX_HEAD:
            return b"", None, b""
        data = conn.recv(65536)
        if not data:
            return b"", None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    # The body arrives in the client's time: no idle timeout while reading it.
    conn.settimeout(30)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return head, None, b""
        rest += data
    return head, rest[:length], rest[length:]


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
