"""The wire analysis: HTTP/1.1 exchanges rebuilt from TCP segments, graded against aiperf's JSONL."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import pcap, wire
from benchlib.pcap import TcpPacket

SERVER = ("127.0.0.1", 8000)
MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
)
RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def event(content: str | None) -> bytes:
    delta = {"role": "assistant", "content": ""} if content is None else {"content": content}
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Conn:
    """Writes the packets of one client connection, keeping both sequence numbers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.up = 1000
        self.down = 5000
        self.packets: list[TcpPacket] = []

    def syn(self, t: int) -> Conn:
        self.packets.append(self._packet(t, True, b"", pcap.SYN, self.up))
        self.packets.append(self._packet(t, False, b"", pcap.SYN | pcap.ACK, self.down))
        self.up += 1
        self.down += 1
        return self

    def send(self, t: int, data: bytes, *, seq: int | None = None) -> Conn:
        self.packets.append(self._packet(t, True, data, pcap.PSH | pcap.ACK, self.up if seq is None else seq))
        if seq is None:
            self.up += len(data)
        return self

    def recv(self, t: int, data: bytes) -> Conn:
        self.packets.append(self._packet(t, False, data, pcap.PSH | pcap.ACK, self.down))
        self.down += len(data)
        return self

    def ack(self, t: int) -> Conn:
        self.packets.append(self._packet(t, True, b"", pcap.ACK, self.up))
        return self

    def _packet(self, t: int, up: bool, data: bytes, flags: int, seq: int) -> TcpPacket:
        client = ("127.0.0.1", self.port)
        src, dst = (client, SERVER) if up else (SERVER, client)
        return TcpPacket(
            ts_ns=T0 + t, src=src[0], dst=dst[0], sport=src[1], dport=dst[1],
            flags=flags, seq=seq & 0xFFFFFFFF, ack=0, payload=data,
        )  # fmt: skip

    def exchange(self, t: int, contents: list[str], *, split: bool, gap: int = 10 * MS, ttft: int = 50 * MS) -> int:
        """One streamed request and response starting at ``t``; returns the time of its last byte."""
        if split:
            self.send(t, HEAD).send(t + 2 * MS, BODY)
        else:
            self.send(t, HEAD + BODY)
        self.recv(t + 3 * MS, RESPONSE_HEAD + chunk(event(None)))
        self.ack(t + 3 * MS + 10_000)
        at = t + ttft
        for text in contents:
            self.recv(at, chunk(event(text)))
            at += gap
        end = at - gap + MS
        self.recv(end, chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return end


def test_one_connection_two_exchanges() -> None:
    conn = Conn(40000).syn(0)
    end = conn.exchange(1 * MS, ["a", "b", "c"], split=True)
    end2 = conn.exchange(end + 4 * MS, ["d", "e"], split=False)
    found = wire.exchanges(conn.packets, SERVER[1])
    assert len(found) == 2
    first, second = found
    assert first.complete and second.complete
    assert first.status == 200
    assert first.request_packets == 2 and second.request_packets == 1
    assert first.send_spread_ns == 2 * MS and second.send_spread_ns == 0
    # The first content event (not the role-only one at +3 ms) is TTFT's end.
    assert first.ttft_ns == 50 * MS
    assert first.content_ns == (T0 + 51 * MS, T0 + 61 * MS, T0 + 71 * MS)
    assert first.response_first_ns == T0 + 4 * MS
    assert first.response_last_ns == T0 + end
    assert second.response_last_ns == T0 + end2
    assert wire.turnarounds_ns(found) == [4 * MS]


def test_event_split_across_packets_is_stamped_when_complete() -> None:
    conn = Conn(40001).syn(0)
    conn.send(1 * MS, HEAD + BODY)
    payload = RESPONSE_HEAD + chunk(event("hello")) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    cut = len(RESPONSE_HEAD) + 20  # inside the content event
    conn.recv(40 * MS, payload[:cut]).recv(55 * MS, payload[cut:])
    (found,) = wire.exchanges(conn.packets, SERVER[1])
    assert found.content_ns == (T0 + 55 * MS,)
    assert found.complete


def test_retransmitted_and_overlapping_segments_count_once() -> None:
    conn = Conn(40002).syn(0)
    start = conn.up
    conn.send(1 * MS, HEAD)
    conn.send(1 * MS + 500, HEAD, seq=start)  # a retransmission of the head
    conn.send(2 * MS, HEAD[-4:] + BODY, seq=start + len(HEAD) - 4)  # overlaps by 4 bytes
    conn.up = start + len(HEAD) + len(BODY)
    conn.recv(60 * MS, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
    (found,) = wire.exchanges(conn.packets, SERVER[1])
    assert found.request_last_ns == T0 + 2 * MS
    assert found.complete and found.content_ns == ()


def test_content_length_response_and_an_unfinished_one() -> None:
    conn = Conn(40003).syn(0)
    conn.send(1 * MS, HEAD + BODY).recv(5 * MS, b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno!")
    conn.send(6 * MS, HEAD + BODY).recv(9 * MS, RESPONSE_HEAD + chunk(event("x")))
    first, second = wire.exchanges(conn.packets, SERVER[1])
    assert first.complete and first.status == 404
    assert not second.complete and second.content_ns == (T0 + 9 * MS,)
    assert wire.turnarounds_ns([first, second]) == [1 * MS]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (event("tok"), True),
        (event(None), False),
        (b"data: [DONE]\n\n", False),
        (b": keep-alive\n\n", False),
        (b'data: {"choices":[{"text":"x"}]}', True),
        (b'data: {"choices":[{"delta":{"reasoning_content":"r"}}]}', True),
        (b"data: {not json", False),
    ],
)
def test_has_content(text: bytes, expected: bool) -> None:
    assert wire.has_content(text.rstrip(b"\n")) is expected


def _records(found: list[wire.Exchange], ttft_shift_ms: float, gap_shift_ms: float) -> list[dict]:
    out = []
    for i, x in enumerate(found):
        gaps = [(b - a) / MS + gap_shift_ms for a, b in zip(x.content_ns, x.content_ns[1:])]
        out.append(
            {
                "request_index": i,
                "phase": "profile",
                "start_time_ns": x.request_first_ns - 20_000,  # aiperf stamps the write 20 µs earlier
                "end_time_ns": x.response_last_ns,
                "metrics": {"time_to_first_token": x.ttft_ns / MS + ttft_shift_ms, "inter_chunk_latency": gaps},
            }
        )
    return out


def test_grade_matches_records_and_measures_errors() -> None:
    packets: list[TcpPacket] = []
    for k in range(4):  # four connections, three exchanges each, turnaround 2 ms
        conn = Conn(41000 + k).syn(0)
        t = 1 * MS + k * 100_000
        for _ in range(3):
            t = conn.exchange(t, ["a", "b", "c", "d"], split=k == 0) + 2 * MS
        packets += conn.packets
    packets.sort(key=lambda p: p.ts_ns)
    found = wire.exchanges(packets, SERVER[1])
    records = _records(found, ttft_shift_ms=0.25, gap_shift_ms=-0.1)
    grade = wire.grade(found, records, concurrency=4)
    assert grade.requests == 12
    assert grade.multi_packet_requests == 3
    assert grade.send_spread_p99 == pytest.approx(2.0, abs=0.01)
    assert grade.turnaround_p50 == pytest.approx(2.0)
    assert grade.turnarounds_over_stall == 0
    assert grade.wire_ttft_p50 == pytest.approx(50.0)
    # The split requests' server-side TTFT starts 2 ms later.
    assert grade.wire_ttft_from_last_p99 == pytest.approx(50.0)
    assert grade.ttft_err_p50 == pytest.approx(0.25)
    assert grade.gap_err_p99 == pytest.approx(-0.1)
    assert grade.gaps_compared == 12 * 3
    assert grade.match_offset_p50 == pytest.approx(0.02)
    assert not math.isnan(grade.steady_rate)


def test_grade_without_records_keeps_the_wire_figures() -> None:
    """Another client's run: no records to compare with, every wire figure still there."""
    conn = Conn(40006).syn(0)
    end = conn.exchange(1 * MS, ["a", "b"], split=True)
    conn.exchange(end + 3 * MS, ["c", "d"], split=True)
    grade = wire.grade(wire.exchanges(conn.packets, SERVER[1]), None, concurrency=1)
    assert grade.requests == 2 and grade.multi_packet_requests == 2
    assert grade.turnaround_p50 == pytest.approx(3.0)
    assert grade.wire_ttft_p50 == pytest.approx(50.0)
    assert math.isnan(grade.ttft_err_p50) and math.isnan(grade.gap_err_p99)


def test_grade_refuses_a_count_mismatch() -> None:
    conn = Conn(40004).syn(0)
    conn.exchange(1 * MS, ["a"], split=False)
    found = wire.exchanges(conn.packets, SERVER[1])
    records = _records(found, 0, 0) * 2
    with pytest.raises(ValueError, match="aiperf recorded 2 requests, the wire shows 1"):
        wire.grade(found, records, concurrency=1)


def test_turnaround_over_the_stall_bound_is_counted() -> None:
    conn = Conn(40005).syn(0)
    end = conn.exchange(1 * MS, ["a"], split=False)
    conn.exchange(end + 12 * MS, ["b"], split=False)
    found = wire.exchanges(conn.packets, SERVER[1])
    grade = wire.grade(found, _records(found, 0, 0), concurrency=1)
    assert grade.turnarounds_over_stall == 1
    assert grade.turnaround_max == pytest.approx(12.0)


def test_other_requests_on_the_port_are_left_out() -> None:
    """A metrics scrape (GET /metrics) on a connection of its own is not an exchange of the load."""
    load = Conn(40001).syn(0)
    load.exchange(1 * MS, ["a", "b"], split=False)
    scrape = Conn(40002).syn(0)
    scrape.send(5 * MS, b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
    scrape.recv(6 * MS, b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok\n\n")
    found = wire.exchanges(load.packets + scrape.packets, SERVER[1])
    assert [x.request_line for x in found] == ["POST /v1/chat/completions HTTP/1.1"]
    assert found[0].complete and len(found[0].content_ns) == 2


def test_steady_rate_leaves_out_the_first_round() -> None:
    # Concurrency 2: two requests at 0, then one every 100 ms: 10 req/s once steady.
    def x(start: int) -> wire.Exchange:
        return wire.Exchange(
            connection=("c", 1), sequence=0, request_line="POST / HTTP/1.1", request_first_ns=start, request_last_ns=start,
            request_packets=1, response_first_ns=None, response_last_ns=None, content_ns=(),
            status=200, complete=True,
        )  # fmt: skip

    found = [x(0), x(0)] + [x(k * 100 * MS) for k in range(1, 12)]
    assert wire.steady_rate(found, concurrency=2) == pytest.approx(10.0)
    assert math.isnan(wire.steady_rate(found[:3], concurrency=2))


def test_loop_figures_keep_the_load_window() -> None:
    probe = {
        "lag": [[0.1, 100], [7.0, 150], [0.2, 200], [30.0, 900]],
        # generation, wall ms, CPU ms, wall-clock ns when it ended
        "gc": [[0, 0.05, 0.04, 120], [2, 12.0, 9.5, 180], [2, 40.0, 39.0, 950]],
    }
    figures = wire.loop_figures(probe, (100, 500))
    assert figures.lag_max == 7.0
    assert figures.stalls == 1
    assert figures.gc_max == 12.0
    assert figures.gc_slow == 1
    assert figures.gc_max_by_generation == (0.05, 0.0, 12.0)
    assert figures.gc_cpu_max == 9.5
    assert figures.gc_count == 2


def test_loop_figures_tell_own_work_from_waiting_for_a_core() -> None:
    # late ms, wall-clock ns, the loop thread's CPU ms since the previous wake-up
    probe = {
        "lag": [[0.1, 100, 1.0], [9.0, 150, 9.8], [12.0, 200, 0.7], [0.3, 250, 1.2], [20.0, 900, 21.0]],
        "gc": [],
    }
    figures = wire.loop_figures(probe, (100, 500))
    assert figures.stalls == 2
    # Only the first stall ran the loop's own thread for longer than the bound.
    assert figures.stalls_own == 1
    assert figures.busy_max == 9.8
