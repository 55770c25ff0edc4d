"""The benchmark's own pcap reader, on capture files built byte by byte here."""

from __future__ import annotations

import io
import socket
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import pcap

T0_S = 1_700_000_000


def tcp_segment(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"", ack: int = 0) -> bytes:
    # 20-byte header plus one 12-byte option block (NOP NOP timestamp), as Linux sends.
    options = b"\x01\x01\x08\x0a" + struct.pack("!II", 1, 2)
    offset_flags = ((20 + len(options)) // 4) << 12 | flags
    header = struct.pack("!HHIIHHHH", sport, dport, seq, ack, offset_flags, 65535, 0, 0)
    return header + options + payload


def ipv4(segment: bytes, src: str = "127.0.0.1", dst: str = "127.0.0.1", proto: int = 6, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, frag, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return header + segment


def ipv6(segment: bytes, src: str = "::1", dst: str = "::1", next_header: int = 6, extension: bool = False) -> bytes:
    body = segment
    first = next_header
    if extension:
        # One hop-by-hop options header (8 bytes: next header, length 0, six bytes of padding).
        body = bytes([next_header, 0]) + b"\x01\x04\x00\x00\x00\x00" + segment
        first = 0
    header = struct.pack("!IHBB16s16s", 6 << 28, len(body), first, 64,
                         socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))  # fmt: skip
    return header + body


def ethernet(ip: bytes, ethertype: int = 0x0800, pad_to: int = 0) -> bytes:
    frame = b"\x00" * 12 + struct.pack("!H", ethertype) + ip
    return frame + b"\x00" * max(0, pad_to - len(frame))


def sll(ip: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, protocol) + ip


def sll2(ip: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 772, 0, 6, b"\x00" * 8) + ip


def null(ip: bytes, family: int = 2, endian: str = "<") -> bytes:
    return struct.pack(endian + "I", family) + ip


def pcap_file(link_type: int, frames: list[tuple[int, bytes]], *, nano: bool = True, endian: str = "<") -> bytes:
    """A classic pcap file: ``frames`` are (nanoseconds after T0_S, link-layer bytes)."""
    magic = pcap.MAGIC_NANO if nano else pcap.MAGIC_MICRO
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, link_type)]
    for offset_ns, frame in frames:
        fraction = offset_ns if nano else offset_ns // 1000
        out.append(struct.pack(endian + "IIII", T0_S, fraction, len(frame), len(frame)) + frame)
    return b"".join(out)


def read(data: bytes) -> tuple[list[pcap.TcpPacket], pcap.ReadStats]:
    stats = pcap.ReadStats()
    return list(pcap.iter_tcp(io.BytesIO(data), stats)), stats


REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"


class TestLinkTypes:
    @pytest.mark.parametrize(
        ("link_type", "frame"),
        [
            (pcap.LINKTYPE_EN10MB, ethernet(ipv4(tcp_segment(40000, 8000, 7, pcap.PSH | pcap.ACK, REQUEST)))),
            (pcap.LINKTYPE_LINUX_SLL, sll(ipv4(tcp_segment(40000, 8000, 7, pcap.PSH | pcap.ACK, REQUEST)))),
            (pcap.LINKTYPE_LINUX_SLL2, sll2(ipv4(tcp_segment(40000, 8000, 7, pcap.PSH | pcap.ACK, REQUEST)))),
            (pcap.LINKTYPE_NULL, null(ipv4(tcp_segment(40000, 8000, 7, pcap.PSH | pcap.ACK, REQUEST)))),
            (pcap.LINKTYPE_RAW, ipv4(tcp_segment(40000, 8000, 7, pcap.PSH | pcap.ACK, REQUEST))),
        ],
        ids=["en10mb", "linux_sll", "linux_sll2", "null", "raw"],
    )
    def test_each_link_type_yields_the_segment(self, link_type: int, frame: bytes) -> None:
        packets, stats = read(pcap_file(link_type, [(123_456_789, frame)]))
        assert stats.link_type == link_type
        assert len(packets) == 1
        p = packets[0]
        assert p.ts_ns == T0_S * 1_000_000_000 + 123_456_789
        assert (p.src, p.dst, p.sport, p.dport) == ("127.0.0.1", "127.0.0.1", 40000, 8000)
        assert p.seq == 7
        assert p.flags == pcap.PSH | pcap.ACK
        assert p.payload == REQUEST

    def test_ipv6_over_ethernet_sll2_and_null(self) -> None:
        segment = tcp_segment(40001, 8000, 99, pcap.SYN)
        for link_type, frame in (
            (pcap.LINKTYPE_EN10MB, ethernet(ipv6(segment), 0x86DD)),
            (pcap.LINKTYPE_LINUX_SLL2, sll2(ipv6(segment), 0x86DD)),
            (pcap.LINKTYPE_NULL, null(ipv6(segment), 30)),
            (pcap.LINKTYPE_RAW, ipv6(segment, extension=True)),
        ):
            packets, _ = read(pcap_file(link_type, [(0, frame)]))
            assert len(packets) == 1, link_type
            assert (packets[0].src, packets[0].sport, packets[0].seq) == ("::1", 40001, 99)
            assert packets[0].syn and not packets[0].fin
            assert packets[0].payload == b""

    def test_null_family_in_the_other_byte_order(self) -> None:
        frame = null(ipv4(tcp_segment(1, 2, 3, pcap.ACK, b"x")), endian=">")
        packets, _ = read(pcap_file(pcap.LINKTYPE_NULL, [(0, frame)]))
        assert [p.payload for p in packets] == [b"x"]

    def test_vlan_tag_is_skipped(self) -> None:
        ip = ipv4(tcp_segment(1, 2, 3, pcap.ACK, b"tagged"))
        frame = b"\x00" * 12 + struct.pack("!HHH", 0x8100, 5, 0x0800) + ip
        packets, _ = read(pcap_file(pcap.LINKTYPE_EN10MB, [(0, frame)]))
        assert [p.payload for p in packets] == [b"tagged"]

    def test_unknown_link_type_is_an_error(self) -> None:
        with pytest.raises(pcap.PcapError, match="link type 147"):
            read(pcap_file(147, []))


class TestFile:
    def test_big_endian_microsecond_file(self) -> None:
        frame = ethernet(ipv4(tcp_segment(1, 2, 3, pcap.ACK, b"abc")))
        packets, stats = read(pcap_file(pcap.LINKTYPE_EN10MB, [(5_000_000, frame)], nano=False, endian=">"))
        assert not stats.nanosecond
        assert packets[0].ts_ns == T0_S * 1_000_000_000 + 5_000_000
        assert packets[0].payload == b"abc"

    def test_ethernet_padding_is_not_payload(self) -> None:
        """A bare ACK is padded to a 60-byte frame; the IP total length says where it ends."""
        frame = ethernet(ipv4(tcp_segment(1, 2, 3, pcap.ACK)), pad_to=80)
        packets, _ = read(pcap_file(pcap.LINKTYPE_EN10MB, [(0, frame)]))
        assert packets[0].payload == b""

    def test_non_tcp_and_later_fragments_are_skipped_and_counted(self) -> None:
        frames = [
            (1, ethernet(b"\x00" * 28, 0x0806)),  # ARP
            (2, ethernet(ipv4(b"\x00" * 8 + b"udp", proto=17))),  # UDP
            (3, ethernet(ipv6(b"\x80\x00\x00\x00", next_header=58), 0x86DD)),  # ICMPv6
            (4, ethernet(ipv4(b"\x00" * 30, frag=185))),  # a later IPv4 fragment
            (5, ethernet(ipv4(tcp_segment(1, 2, 3, pcap.ACK, b"kept")))),
        ]
        packets, stats = read(pcap_file(pcap.LINKTYPE_EN10MB, frames))
        assert [p.payload for p in packets] == [b"kept"]
        assert stats.records == 5
        assert stats.tcp == 1
        # ARP never reaches IP; the other three are IP packets without a TCP header to read.
        assert stats.skipped == 3

    def test_truncated_record_ends_the_iteration(self) -> None:
        second = ethernet(ipv4(tcp_segment(1, 2, 6, pcap.ACK, b"two")))
        whole = pcap_file(
            pcap.LINKTYPE_EN10MB, [(1, ethernet(ipv4(tcp_segment(1, 2, 3, pcap.ACK, b"one")))), (2, second)]
        )
        start = len(whole) - 16 - len(second)
        # Cut inside the second record's header, then inside its data.
        for cut in (start + 10, start + 16 + 30):
            packets, stats = read(whole[:cut])
            assert [p.payload for p in packets] == [b"one"]
            assert stats.truncated
        packets, stats = read(whole)
        assert len(packets) == 2 and not stats.truncated

    def test_short_capture_of_a_packet_is_counted(self) -> None:
        """A snap length shorter than the headers: the record is whole, its TCP header is not."""
        frame = ethernet(ipv4(tcp_segment(1, 2, 3, pcap.ACK, b"payload")))[:40]
        packets, stats = read(pcap_file(pcap.LINKTYPE_EN10MB, [(0, frame)]))
        assert packets == []
        assert stats.short == 1

    @pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"\x0a\x0d\x0d\x0a" + b"\x00" * 40])
    def test_not_a_pcap_file(self, data: bytes) -> None:
        with pytest.raises(pcap.PcapError):
            read(data)

    def test_read_tcp_from_a_path(self, tmp_path: Path) -> None:
        path = tmp_path / "lo.pcap"
        path.write_bytes(pcap_file(pcap.LINKTYPE_EN10MB, [(9, ethernet(ipv4(tcp_segment(5, 6, 7, pcap.FIN | pcap.ACK))))]))
        (packet,) = pcap.read_tcp(path)
        assert packet.fin and packet.sport == 5
