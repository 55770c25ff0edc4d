"""aiperf graded by the wire: HTTP/1.1 exchanges reassembled from a loopback capture.

A packet capture is neither aiperf's clock nor the server's: the kernel stamps each segment
as it crosses the loopback device. From it this module rebuilds, per TCP connection, every
request (its first and last packet) and every response (first byte, the packet that completed
each SSE content event, last byte), then compares that with what aiperf wrote into its JSONL.

What it reports per run (:func:`grade`):

- **send spread**: last minus first packet of a request's head and body; how many requests
  left as more than one packet. The server cannot start before the last one arrives.
- **turnaround**: from the last byte of a response to the first packet of the next request
  on the same connection, i.e. how long a closed-loop client left the connection idle. Under
  a fixed concurrency every millisecond of it is a millisecond the server has one stream fewer.
- **TTFT by the wire**: first request packet to the packet that completed the first SSE event
  with content (``data: {...}`` with non-empty text; the role-only first event and
  ``[DONE]`` do not count).
- **aiperf's error against the wire**, request by request: aiperf's TTFT minus the wire's, and
  each of aiperf's chunk gaps minus the wire's gap between the same two events.
- **capacity**: requests started per second in the steady part of the run (after every
  connection has come back once, until the last request is sent), against the ideal
  ``concurrency / latency``.

Everything here takes packets or plain records, so it is tested without a capture tool.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from benchlib.pcap import TcpPacket

#: a gap in aiperf's activity longer than this is a stall (the issue's bound).
STALL_MS = 5.0
_EVENT_END = re.compile(rb"\r?\n\r?\n")


@attrs.frozen(kw_only=True)
class Exchange:
    """One request and its response on one connection, as the wire saw them (ns, epoch)."""

    connection: tuple[str, int]
    #: the request's place on its connection (0 for the first).
    sequence: int
    #: ``POST /v1/chat/completions HTTP/1.1`` (other requests share the port: /metrics, /stats).
    request_line: str
    request_first_ns: int
    request_last_ns: int
    request_packets: int
    response_first_ns: int | None
    response_last_ns: int | None
    #: when the packet completing each SSE event with content arrived.
    content_ns: tuple[int, ...]
    status: int | None
    complete: bool

    @property
    def send_spread_ns(self) -> int:
        return self.request_last_ns - self.request_first_ns

    @property
    def ttft_ns(self) -> int | None:
        return self.content_ns[0] - self.request_first_ns if self.content_ns else None


# -- reassembly -----------------------------------------------------------------------------------


@attrs.define
class _Direction:
    """One direction of a TCP connection: payload bytes in sequence order, duplicates dropped."""

    next_seq: int | None = None
    gaps: int = 0

    def accept(self, packet: TcpPacket) -> bytes:
        if packet.syn:
            self.next_seq = (packet.seq + 1) & 0xFFFFFFFF
            return b""
        data = packet.payload
        if not data:
            return b""
        if self.next_seq is None:
            self.next_seq = packet.seq
        ahead = _seq_diff(packet.seq, self.next_seq)
        if ahead < 0:
            # A retransmission or an overlap: keep only the bytes not seen yet.
            if -ahead >= len(data):
                return b""
            data = data[-ahead:]
        elif ahead > 0:
            # Bytes the capture missed (the kernel dropped them for tcpdump): go on from here.
            self.gaps += 1
        self.next_seq = (packet.seq + len(packet.payload)) & 0xFFFFFFFF
        return data


def _seq_diff(a: int, b: int) -> int:
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


@attrs.define
class _Request:
    first_ns: int
    last_ns: int = 0
    packets: int = 0
    head: bytearray = attrs.field(factory=bytearray)
    line: str = ""
    #: head plus body length, once the head has been read.
    needed: int | None = None
    received: int = 0

    @property
    def complete(self) -> bool:
        return self.needed is not None and self.received >= self.needed

    def feed(self, data: bytes) -> bytes:
        """Take bytes of this request; return what belongs to the next one."""
        if self.needed is None:
            self.head += data
            self.received = len(self.head)
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return b""
            self.needed = end + 4 + _content_length(bytes(self.head[:end]))
            self.line = bytes(self.head.split(b"\r\n", 1)[0]).decode("latin-1")
            del self.head[end:]
        else:
            self.received += len(data)
        over = self.received - self.needed
        if over > 0:
            # Pipelined bytes of the next request (aiperf does not pipeline; be exact anyway).
            self.received = self.needed
            return data[-over:]
        return b""


@attrs.define
class _Response:
    first_ns: int
    last_ns: int = 0
    status: int | None = None
    buffer: bytearray = attrs.field(factory=bytearray)
    head_done: bool = False
    chunked: bool = False
    remaining: int | None = None  # body bytes still to come (content-length)
    chunk_left: int = 0  # bytes left of the current chunk, then its CRLF
    chunk_state: str = "size"  # size, data, crlf, trailer
    events: bytearray = attrs.field(factory=bytearray)
    content_ns: list[int] = attrs.field(factory=list)
    done: bool = False

    def feed(self, data: bytes, ts_ns: int) -> bytes:
        """Take bytes of this response; return what belongs to the next one."""
        self.last_ns = ts_ns
        if not self.head_done:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return b""
            head = bytes(self.buffer[:end]).decode("latin-1")
            data = bytes(self.buffer[end + 4 :])
            self.buffer.clear()
            self.head_done = True
            self._read_head(head)
        if self.chunked:
            return self._chunked(data, ts_ns)
        if self.remaining is not None:
            body, rest = data[: self.remaining], data[self.remaining :]
            self.remaining -= len(body)
            self._body(body, ts_ns)
            if self.remaining == 0:
                self.done = True
            return rest
        self._body(data, ts_ns)  # until the connection closes
        return b""

    def _read_head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "transfer-encoding" and "chunked" in value:
                self.chunked = True
            elif name == "content-length" and value.isdigit():
                self.remaining = int(value)
        if not self.chunked and self.remaining == 0:
            self.done = True

    def _chunked(self, data: bytes, ts_ns: int) -> bytes:
        i = 0
        while i < len(data) and not self.done:
            if self.chunk_state == "data":
                take = data[i : i + self.chunk_left]
                self._body(take, ts_ns)
                self.chunk_left -= len(take)
                i += len(take)
                if self.chunk_left == 0:
                    self.chunk_state = "crlf"
                    self.chunk_left = 2
                continue
            if self.chunk_state == "crlf":
                skip = min(self.chunk_left, len(data) - i)
                self.chunk_left -= skip
                i += skip
                if self.chunk_left == 0:
                    self.chunk_state = "size"
                continue
            # "size" and "trailer" read whole lines.
            end = data.find(b"\n", i)
            if end < 0:
                self.buffer += data[i:]
                return b""
            line = bytes(self.buffer + data[i:end]).strip()
            self.buffer.clear()
            i = end + 1
            if self.chunk_state == "trailer":
                if not line:
                    self.done = True
                continue
            size = int(line.split(b";")[0] or b"0", 16)
            if size == 0:
                self.chunk_state = "trailer"
            else:
                self.chunk_state, self.chunk_left = "data", size
        return data[i:]

    def _body(self, data: bytes, ts_ns: int) -> None:
        if not data:
            return
        self.events += data
        start = 0
        for match in _EVENT_END.finditer(self.events):
            if has_content(self.events[start : match.start()]):
                self.content_ns.append(ts_ns)
            start = match.end()
        del self.events[:start]


def has_content(event: bytes | bytearray) -> bool:
    """An SSE event whose data is a JSON chunk with text (chat delta, completion or reasoning)."""
    data = b"".join(
        line[5:].lstrip() for line in bytes(event).splitlines() if line.startswith(b"data:")
    )
    if not data.startswith(b"{"):
        return False  # [DONE], comments, keep-alives
    try:
        chunk = json.loads(data)
    except ValueError:
        return False
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        for text in (delta.get("content"), delta.get("reasoning_content"), choice.get("text")):
            if isinstance(text, str) and text:
                return True
    return False


@attrs.define
class _Connection:
    client: tuple[str, int]
    up: _Direction = attrs.field(factory=_Direction)
    down: _Direction = attrs.field(factory=_Direction)
    requests: list[_Request] = attrs.field(factory=list)
    responses: list[_Response] = attrs.field(factory=list)

    def from_client(self, packet: TcpPacket) -> None:
        data = self.up.accept(packet)
        counted: _Request | None = None
        while data:
            current = self.requests[-1] if self.requests else None
            if current is None or current.complete:
                current = _Request(first_ns=packet.ts_ns)
                self.requests.append(current)
            if current is not counted:
                current.packets += 1
                counted = current
            current.last_ns = packet.ts_ns
            data = current.feed(data)

    def from_server(self, packet: TcpPacket) -> None:
        data = self.down.accept(packet)
        while data:
            current = self.responses[-1] if self.responses else None
            if current is None or current.done:
                current = _Response(first_ns=packet.ts_ns)
                self.responses.append(current)
            data = current.feed(data, packet.ts_ns)

    def exchanges(self) -> list[Exchange]:
        out = []
        for sequence, request in enumerate(self.requests):
            response = self.responses[sequence] if sequence < len(self.responses) else None
            out.append(
                Exchange(
                    connection=self.client,
                    sequence=sequence,
                    request_line=request.line,
                    request_first_ns=request.first_ns,
                    request_last_ns=request.last_ns,
                    request_packets=request.packets,
                    response_first_ns=response.first_ns if response else None,
                    response_last_ns=response.last_ns if response else None,
                    content_ns=tuple(response.content_ns) if response else (),
                    status=response.status if response else None,
                    complete=bool(response and response.done),
                )
            )
        return out


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0


def exchanges(packets: Iterable[TcpPacket], server_port: int) -> list[Exchange]:
    """Every POST exchange with the server on ``server_port``, ordered by first request packet.

    Other requests on the port are left out: the server-metrics plugin scrapes ``GET
    /metrics`` of the same server on connections of its own during the run, and the bench
    reads ``/stats``; neither is part of the load being graded."""
    connections: dict[tuple[str, int], _Connection] = {}
    for packet in packets:
        if packet.dport == server_port:
            key = (packet.src, packet.sport)
            connection = connections.setdefault(key, _Connection(client=key))
            connection.from_client(packet)
        elif packet.sport == server_port:
            key = (packet.dst, packet.dport)
            connection = connections.setdefault(key, _Connection(client=key))
            connection.from_server(packet)
    found = [
        x
        for connection in connections.values()
        for x in connection.exchanges()
        if x.request_line.startswith("POST ")
    ]
    return sorted(found, key=lambda x: x.request_first_ns)


# -- grading --------------------------------------------------------------------------------------


def turnarounds_ns(found: Sequence[Exchange]) -> list[int]:
    """End of each response to the next request's first packet on the same connection."""
    by_connection: dict[tuple[str, int], list[Exchange]] = {}
    for x in found:
        by_connection.setdefault(x.connection, []).append(x)
    out = []
    for items in by_connection.values():
        items.sort(key=lambda x: x.sequence)
        for before, after in zip(items, items[1:]):
            if before.complete and before.response_last_ns is not None:
                out.append(after.request_first_ns - before.response_last_ns)
    return out


def steady_rate(found: Sequence[Exchange], concurrency: int) -> float:
    """Requests started per second once every connection has come back, until the last send.

    The first ``concurrency`` requests start together and the last round drains; neither
    says how fast a full pipeline runs. Counting gaps between sends from the
    (concurrency + 1)-th to the last send measures the steady closed loop.
    """
    starts = sorted(x.request_first_ns for x in found)
    if len(starts) <= concurrency + 1:
        return math.nan
    window = starts[concurrency:]
    span = window[-1] - window[0]
    return (len(window) - 1) / (span / 1e9) if span > 0 else math.nan


@attrs.frozen(kw_only=True)
class Matched:
    """aiperf's record of one request beside the wire's exchange."""

    exchange: Exchange
    record: Mapping[str, Any]
    #: wire's first request packet minus aiperf's start time (wall-clock ns).
    offset_ns: int


def match(found: Sequence[Exchange], records: Iterable[Mapping[str, Any]]) -> list[Matched]:
    """Pair aiperf's records with the wire's exchanges by the order in which requests left.

    One trio loop writes requests one after another, so the order of aiperf's first-write
    stamps is the order of first packets on the loopback. Pairing by rank needs no shared
    clock; the offsets it yields (a few microseconds when the pairing is right) are returned
    so that a caller can check it.
    """
    ok = sorted(
        (r for r in records if r.get("start_time_ns") and r.get("phase", "profile") == "profile"),
        key=lambda r: r["start_time_ns"],
    )
    wire = [x for x in found if x.complete]
    if len(ok) != len(wire):
        raise ValueError(f"aiperf recorded {len(ok)} requests, the wire shows {len(wire)} complete exchanges")
    return [
        Matched(exchange=x, record=r, offset_ns=x.request_first_ns - int(r["start_time_ns"]))
        for x, r in zip(wire, ok)
    ]


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else math.nan


@attrs.frozen(kw_only=True)
class WireGrade:
    """One run's figures from the wire; times in ms."""

    requests: int
    send_spread_p50: float
    send_spread_p99: float
    multi_packet_requests: int
    turnaround_p50: float
    turnaround_p99: float
    turnaround_max: float
    turnarounds_over_stall: int
    wire_ttft_p50: float
    wire_ttft_p99: float
    #: the server's view: last request packet to first content (what a server-side TTFT sees).
    wire_ttft_from_last_p99: float
    ttft_err_p50: float
    ttft_err_p99: float
    gap_err_p50: float
    gap_err_p99: float
    gaps_compared: int
    gaps_uncompared_requests: int
    steady_rate: float
    match_offset_p50: float
    match_offset_p99: float

    def as_dict(self) -> dict[str, float]:
        return attrs.asdict(self)


def grade(
    found: Sequence[Exchange], records: Sequence[Mapping[str, Any]] | None, concurrency: int
) -> WireGrade:
    """Every figure of one run, from its exchanges and aiperf's JSONL records.

    Without records (another client, whose per-request output is not read) the figures
    against aiperf's own measurements are NaN; the wire's own figures are all there.
    """
    done = [x for x in found if x.complete]
    if not done:
        raise ValueError("the capture holds no complete exchange")
    spreads = [x.send_spread_ns / 1e6 for x in done]
    turns = [t / 1e6 for t in turnarounds_ns(found)]
    ttfts = [x.ttft_ns / 1e6 for x in done if x.ttft_ns is not None]
    from_last = [(x.content_ns[0] - x.request_last_ns) / 1e6 for x in done if x.content_ns]
    pairs = match(found, records) if records is not None else []
    ttft_err, gap_err, uncompared = [], [], 0
    for pair in pairs:
        metrics = pair.record.get("metrics") or {}
        wire_ttft = pair.exchange.ttft_ns
        if metrics.get("time_to_first_token") is not None and wire_ttft is not None:
            ttft_err.append(float(metrics["time_to_first_token"]) - wire_ttft / 1e6)
        ours = metrics.get("inter_chunk_latency") or []
        theirs = np.diff(np.asarray(pair.exchange.content_ns, dtype=np.int64)) / 1e6
        if len(ours) == len(theirs):
            gap_err.extend(np.asarray(ours, dtype=np.float64) - theirs)
        else:
            uncompared += 1
    offsets = [abs(p.offset_ns) / 1e6 for p in pairs]
    if records is None:
        uncompared = 0
    return WireGrade(
        requests=len(done),
        send_spread_p50=pct(spreads, 50),
        send_spread_p99=pct(spreads, 99),
        multi_packet_requests=sum(1 for x in done if x.request_packets > 1),
        turnaround_p50=pct(turns, 50),
        turnaround_p99=pct(turns, 99),
        turnaround_max=max(turns) if turns else math.nan,
        turnarounds_over_stall=sum(1 for t in turns if t > STALL_MS),
        wire_ttft_p50=pct(ttfts, 50),
        wire_ttft_p99=pct(ttfts, 99),
        wire_ttft_from_last_p99=pct(from_last, 99),
        ttft_err_p50=pct(ttft_err, 50),
        ttft_err_p99=pct(ttft_err, 99),
        gap_err_p50=pct(gap_err, 50),
        gap_err_p99=pct(gap_err, 99),
        gaps_compared=len(gap_err),
        gaps_uncompared_requests=uncompared,
        steady_rate=steady_rate(done, concurrency),
        match_offset_p50=pct(offsets, 50),
        match_offset_p99=pct(offsets, 99),
    )


# -- the loop-lag probe ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LoopFigures:
    """What ``lagprobe.py`` saw inside the load phase; times in ms."""

    lag_p99: float
    lag_max: float
    #: wake-ups later than STALL_MS.
    stalls: int
    #: of those, the ones where the loop's own thread ran for more than STALL_MS since the
    #: previous wake-up: aiperf's own work held the loop. The others waited for a core.
    stalls_own: int
    #: the most CPU the loop's thread ran between two wake-ups (its longest busy stretch).
    busy_max: float
    gc_max: float
    gc_slow: int
    #: the longest collection of each generation.
    gc_max_by_generation: tuple[float, float, float]
    #: the most CPU one collection took (wall time above also counts time without a CPU).
    gc_cpu_max: float
    gc_count: int


def loop_figures(probe: Mapping[str, Any], window: tuple[int, int]) -> LoopFigures:
    """The probe's lag samples and GC timings between ``window``'s wall-clock ns."""
    start, end = window
    samples = [sample for sample in probe.get("lag", ()) if start <= sample[1] <= end]
    lag = [sample[0] for sample in samples]
    # Older probe files have no CPU figure per sample (two fields, not three).
    busy = [sample[2] for sample in samples if len(sample) > 2]
    collections = [(gen, ms) for gen, ms, _cpu_ms, at in probe.get("gc", ()) if start <= at <= end]
    cpu = [cpu_ms for _gen, _ms, cpu_ms, at in probe.get("gc", ()) if start <= at <= end]
    by_generation = tuple(max((ms for g, ms in collections if g == gen), default=0.0) for gen in range(3))
    return LoopFigures(
        lag_p99=pct(lag, 99),
        lag_max=max(lag) if lag else math.nan,
        stalls=sum(1 for late in lag if late > STALL_MS),
        stalls_own=sum(1 for sample in samples if sample[0] > STALL_MS and len(sample) > 2 and sample[2] > STALL_MS),
        busy_max=max(busy, default=math.nan),
        gc_max=max((ms for _, ms in collections), default=0.0),
        gc_slow=sum(1 for _, ms in collections if ms > STALL_MS),
        gc_max_by_generation=by_generation,  # type: ignore[arg-type]
        gc_cpu_max=max(cpu, default=0.0),
        gc_count=len(collections),
    )
