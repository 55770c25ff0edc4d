"""Incremental Server-Sent Events parser.

Bytes come in whatever pieces the socket hands over: an event may be split across reads, and
one read may carry several events. The caller stamps each read's arrival time before calling
:meth:`SSEParser.feed`, so parsing cost never shows up in the timing.

The work is linear in the bytes fed, however they are cut: the unfinished line is kept in one
``bytearray`` that only grows at its end and shrinks at its front (both amortised O(1) in
CPython), and each feed searches for line ends only in the bytes it has not searched before.
A 10 MB event arriving in 64 KiB reads is therefore scanned once, not once per read.
"""

from __future__ import annotations

import re

import attrs

_EOL = re.compile(rb"\r\n?|\n")
_BOM = b"\xef\xbb\xbf"


def _data_value(line: bytes | bytearray) -> str:
    """The value of a ``data:`` line: what follows the colon, one leading space dropped."""
    return (line[6:] if line[5:6] == b" " else line[5:]).decode("utf-8", errors="replace")


@attrs.define(slots=True)
class SSEEvent:
    # Not frozen: a frozen attrs class sets each field through object.__setattr__, which
    # doubled the cost of making one, and a stream makes one per token.
    data: str
    event: str | None = None
    id: str | None = None


@attrs.define
class SSEParser:
    """Parses the ``text/event-stream`` format (WHATWG): ``data:``, ``event:``, ``id:`` fields,
    ``:`` comments, events ended by a blank line, ``\\n``, ``\\r\\n`` or ``\\r`` line ends, and
    one UTF-8 byte order mark at the start of the stream, which is not part of any field."""

    _buffer: bytearray = attrs.field(factory=bytearray)
    #: bytes at the front of ``_buffer`` already searched for a line end (none found).
    _scanned: int = 0
    _data: list[str] = attrs.field(factory=list)
    _event: str | None = None
    _id: str | None = None
    _pending_cr: bool = False
    _started: bool = False

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished line (lets a caller cap what one event may take)."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            # Nothing new; above all, do not forget a "\r" that may pair with the next "\n".
            return []
        if self._pending_cr:
            # the previous read ended in "\r" and this one starts with "\n": one line end.
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        buffer = self._buffer
        if (
            not buffer
            and not self._data
            and self._event is None
            and self._started
            and chunk.startswith(b"data:")
            and chunk.endswith(b"\n\n")
            and chunk.count(b"\n") == 2
            and b"\r" not in chunk
        ):
            # One whole event, alone, with nothing pending: what a token stream sends in each
            # read. The general path below gives the same event.
            return [SSEEvent(_data_value(chunk[:-2]), None, self._id)]
        buffer += chunk
        if not self._started:
            # The stream's first bytes may be a BOM, split over reads like anything else.
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                return []
            self._started = True
            if buffer.startswith(_BOM):
                del buffer[: len(_BOM)]
        events: list[SSEEvent] = []
        if b"\r" not in chunk:
            # The common case (``\n`` line ends only): one split of the new bytes. The
            # buffer never holds a line end, so the unfinished line is joined exactly once,
            # when its end arrives.
            if b"\n" not in chunk:
                self._scanned = len(buffer)
                return events
            lines = buffer.split(b"\n")
            buffer[:] = lines.pop()
            self._scanned = len(buffer)
            for raw in lines:
                self._line(raw, events)
            return events
        start = 0
        search = self._scanned
        size = len(buffer)
        while True:
            match = _EOL.search(buffer, search)
            if match is None:
                break
            end = match.end()
            if end == size and buffer[end - 1] == 0x0D:
                self._pending_cr = True
            self._line(bytes(buffer[start : match.start()]), events)
            start = search = end
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: an event with data but no closing blank line is still delivered."""
        events: list[SSEEvent] = []
        if self._buffer:
            self._line(bytes(self._buffer), events)
            self._buffer.clear()
            self._scanned = 0
        self._line(b"", events)
        return events

    def _line(self, raw: bytes | bytearray, events: list[SSEEvent]) -> None:
        if raw[:5] == b"data:":
            # nearly every line of an LLM stream: skip the general field parsing
            self._data.append(_data_value(raw))
            return
        if not raw:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event, self._id))
            self._data = []
            self._event = None
            return
        if raw[:1] == b":":
            return  # comment / keep-alive
        name, sep, value = raw.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        if name == b"data":
            self._data.append(text)
        elif name == b"event":
            self._event = text
        elif name == b"id":
            self._id = text
        # "retry" and unknown fields are ignored, as the spec says.
