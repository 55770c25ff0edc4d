"""A small reader of classic libpcap files: the TCP segments of a loopback capture.

The wire scenario grades aiperf by a packet capture (``tcpdump -i lo -w FILE``) instead of
by its own clock or the server's. This module reads such a file and yields every TCP segment
with its capture time, addresses, ports, flags, sequence number and payload. It knows the
link types tcpdump writes for a loopback or ordinary interface on Linux and the BSDs:

- ``EN10MB`` (1): Ethernet; Linux's ``lo`` is captured as Ethernet with zero addresses.
- ``NULL`` (0): BSD loopback, a 4-byte address family in the capturing host's byte order.
- ``RAW`` (101, and 12 where some systems wrote it): the IP header comes first.
- ``LINUX_SLL`` (113) and ``LINUX_SLL2`` (276): ``tcpdump -i any``'s "cooked" headers.

Timestamps are nanoseconds since the epoch. Files written with
``--time-stamp-precision=nano`` (magic ``0xa1b23c4d``) keep the kernel's nanoseconds;
microsecond files (magic ``0xa1b2c3d4``) are scaled. pcapng is not read (tcpdump writes
classic pcap unless told otherwise). IPv4 fragments other than a datagram's first are
skipped, as are non-TCP packets; both are counted in :class:`ReadStats`.

A file cut short (tcpdump killed while writing, a disk filling up) ends the iteration at the
last whole record and sets ``ReadStats.truncated``; it is not an error.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

MAGIC_MICRO = 0xA1B2C3D4
MAGIC_NANO = 0xA1B23C4D

LINKTYPE_NULL = 0
LINKTYPE_EN10MB = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_OLD = 12
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = (0x8100, 0x88A8)
#: BSD loopback address families: AF_INET is 2 everywhere, AF_INET6 differs per system
#: (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS).
NULL_AF_INET = 2
NULL_AF_INET6 = (24, 28, 30)

IPPROTO_TCP = 6
#: IPv6 extension headers skipped on the way to TCP (hop-by-hop, routing, destination options).
IPV6_EXTENSIONS = (0, 43, 60)
IPV6_FRAGMENT = 44

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_GLOBAL_HEADER = 24
_RECORD_HEADER = 16


class PcapError(ValueError):
    """Not a classic pcap file, or a link type this reader does not know."""


@attrs.frozen(slots=True)
class TcpPacket:
    """One captured TCP segment."""

    ts_ns: int
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    seq: int
    ack: int
    payload: bytes

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)


@attrs.define
class ReadStats:
    """What the reader saw besides TCP: so a caller can tell an empty capture from a bad one."""

    link_type: int = -1
    nanosecond: bool = False
    records: int = 0
    tcp: int = 0
    #: records that held something else: ARP, UDP, ICMP, a later IPv4 fragment, ...
    skipped: int = 0
    #: records captured shorter than their headers (a small snap length).
    short: int = 0
    #: the file ended inside a record.
    truncated: bool = False


def read_tcp(path: Path | str, stats: ReadStats | None = None) -> Iterator[TcpPacket]:
    """Every TCP segment of the capture file at ``path``, in file order."""
    with open(path, "rb") as stream:
        yield from iter_tcp(stream, stats)


def iter_tcp(stream: BinaryIO, stats: ReadStats | None = None) -> Iterator[TcpPacket]:
    """Every TCP segment of a classic pcap stream, in file order."""
    stats = stats if stats is not None else ReadStats()
    header = stream.read(_GLOBAL_HEADER)
    if len(header) < _GLOBAL_HEADER:
        raise PcapError("not a pcap file: shorter than its 24-byte header")
    endian, nano = _byte_order(header[:4])
    _major, _minor, _zone, _sigfigs, _snaplen, link_type = struct.unpack(endian + "HHiIII", header[4:])
    # The upper bits of the link-type field may carry an FCS length; the type is the low 16.
    link_type &= 0xFFFF
    if link_type not in _DECAPSULATE:
        raise PcapError(f"link type {link_type} is not supported (Ethernet, NULL, RAW, SLL, SLL2 are)")
    stats.link_type, stats.nanosecond = link_type, nano
    decapsulate = _DECAPSULATE[link_type]
    record = struct.Struct(endian + "IIII")
    scale = 1 if nano else 1000
    null_order = "<" if endian == "<" else ">"
    while True:
        head = stream.read(_RECORD_HEADER)
        if not head:
            return
        if len(head) < _RECORD_HEADER:
            stats.truncated = True
            return
        seconds, fraction, captured, _original = record.unpack(head)
        data = stream.read(captured)
        if len(data) < captured:
            stats.truncated = True
            return
        stats.records += 1
        ip = decapsulate(data, null_order)
        packet = _tcp(ip, seconds * 1_000_000_000 + fraction * scale, stats) if ip else None
        if packet is None:
            continue
        stats.tcp += 1
        yield packet


def _byte_order(magic: bytes) -> tuple[str, bool]:
    for endian in ("<", ">"):
        (value,) = struct.unpack(endian + "I", magic)
        if value == MAGIC_MICRO:
            return endian, False
        if value == MAGIC_NANO:
            return endian, True
    raise PcapError(f"not a classic pcap file (magic {magic.hex()}; pcapng is not read)")


# -- link layers: each returns (IP version, the IP packet) or None --------------------------------

_Ip = tuple[int, memoryview] | None


def _ethernet(data: bytes, _order: str) -> _Ip:
    if len(data) < 14:
        return None
    offset = 12
    (ethertype,) = struct.unpack_from("!H", data, offset)
    while ethertype in ETHERTYPE_VLAN and len(data) >= offset + 6:
        offset += 4
        (ethertype,) = struct.unpack_from("!H", data, offset)
    return _by_ethertype(ethertype, memoryview(data)[offset + 2 :])


def _null(data: bytes, order: str) -> _Ip:
    if len(data) < 4:
        return None
    # The family is in the byte order of the host that captured; the file's byte order is
    # that host's too. Try it first, then the other, since some writers got this wrong.
    for endian in (order, ">" if order == "<" else "<"):
        (family,) = struct.unpack_from(endian + "I", data, 0)
        if family == NULL_AF_INET:
            return 4, memoryview(data)[4:]
        if family in NULL_AF_INET6:
            return 6, memoryview(data)[4:]
    return None


def _raw(data: bytes, _order: str) -> _Ip:
    if not data:
        return None
    version = data[0] >> 4
    return (version, memoryview(data)) if version in (4, 6) else None


def _sll(data: bytes, _order: str) -> _Ip:
    if len(data) < 16:
        return None
    (protocol,) = struct.unpack_from("!H", data, 14)
    return _by_ethertype(protocol, memoryview(data)[16:])


def _sll2(data: bytes, _order: str) -> _Ip:
    if len(data) < 20:
        return None
    (protocol,) = struct.unpack_from("!H", data, 0)
    return _by_ethertype(protocol, memoryview(data)[20:])


def _by_ethertype(ethertype: int, rest: memoryview) -> _Ip:
    if ethertype == ETHERTYPE_IPV4:
        return 4, rest
    if ethertype == ETHERTYPE_IPV6:
        return 6, rest
    return None


_DECAPSULATE = {
    LINKTYPE_NULL: _null,
    LINKTYPE_EN10MB: _ethernet,
    LINKTYPE_RAW: _raw,
    LINKTYPE_RAW_OLD: _raw,
    LINKTYPE_LINUX_SLL: _sll,
    LINKTYPE_LINUX_SLL2: _sll2,
}


# -- IP and TCP ----------------------------------------------------------------------------------


def _tcp(ip: tuple[int, memoryview], ts_ns: int, stats: ReadStats) -> TcpPacket | None:
    version, view = ip
    located = _ipv4(view, stats) if version == 4 else _ipv6(view, stats)
    if located is None:
        return None
    src, dst, segment = located
    if len(segment) < 20:
        stats.short += 1
        return None
    sport, dport, seq, ack, offset_flags = struct.unpack_from("!HHIIH", segment, 0)
    header_len = (offset_flags >> 12) * 4
    if header_len < 20 or len(segment) < header_len:
        stats.short += 1
        return None
    return TcpPacket(
        ts_ns=ts_ns,
        src=src,
        dst=dst,
        sport=sport,
        dport=dport,
        flags=offset_flags & 0x3F,
        seq=seq,
        ack=ack,
        payload=bytes(segment[header_len:]),
    )


def _ipv4(view: memoryview, stats: ReadStats) -> tuple[str, str, memoryview] | None:
    if len(view) < 20 or view[0] >> 4 != 4:
        stats.short += len(view) < 20
        stats.skipped += len(view) >= 20
        return None
    header_len = (view[0] & 0x0F) * 4
    (total_len,) = struct.unpack_from("!H", view, 2)
    (fragment,) = struct.unpack_from("!H", view, 6)
    if view[9] != IPPROTO_TCP or fragment & 0x1FFF:
        # Not TCP, or a later fragment (no TCP header of its own): nothing to read.
        stats.skipped += 1
        return None
    if header_len < 20 or len(view) < header_len:
        stats.short += 1
        return None
    # The total length trims Ethernet's padding of short frames (a bare ACK is padded to 60).
    end = min(len(view), total_len) if total_len >= header_len else len(view)
    src = socket.inet_ntop(socket.AF_INET, bytes(view[12:16]))
    dst = socket.inet_ntop(socket.AF_INET, bytes(view[16:20]))
    return src, dst, view[header_len:end]


def _ipv6(view: memoryview, stats: ReadStats) -> tuple[str, str, memoryview] | None:
    if len(view) < 40 or view[0] >> 4 != 6:
        stats.short += len(view) < 40
        stats.skipped += len(view) >= 40
        return None
    (payload_len,) = struct.unpack_from("!H", view, 4)
    next_header = view[6]
    src = socket.inet_ntop(socket.AF_INET6, bytes(view[8:24]))
    dst = socket.inet_ntop(socket.AF_INET6, bytes(view[24:40]))
    end = min(len(view), 40 + payload_len) if payload_len else len(view)
    offset = 40
    while next_header in IPV6_EXTENSIONS:
        if len(view) < offset + 8:
            stats.short += 1
            return None
        next_header, ext_len = view[offset], view[offset + 1]
        offset += (ext_len + 1) * 8
    if next_header != IPPROTO_TCP:
        # UDP, ICMPv6, a fragment header (fragments are not reassembled): skipped.
        stats.skipped += 1
        return None
    if offset > end:
        stats.short += 1
        return None
    return src, dst, view[offset:end]
