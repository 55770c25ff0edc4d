"""Incremental Server-Sent Events parser.

Bytes come in whatever pieces the socket hands over: an event may be split across reads, and
one read may carry several events. The caller stamps each read's arrival time before calling
:meth:`SSEParser.feed`, so parsing cost never shows up in the timing.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None


@attrs.define
class SSEParser:
    """Parses the ``text/event-stream`` format (WHATWG): ``data:``, ``event:``, ``id:`` fields,
    ``:`` comments, events ended by a blank line, ``\\n``, ``\\r\\n`` or ``\\r`` line ends."""

    _buffer: bytes = b""
    _data: list[str] = attrs.field(factory=list)
    _event: str | None = None
    _id: str | None = None
    _pending_cr: bool = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            # Nothing new; above all, do not forget a "\r" that may pair with the next "\n".
            return []
        if self._pending_cr and chunk.startswith(b"\n"):
            # the previous read ended in "\r" and this one starts with "\n": one line end.
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, self._buffer = buffer.split(b"\n")
        events: list[SSEEvent] = []
        for raw in lines:
            if not raw:
                if self._data:
                    events.append(SSEEvent("\n".join(self._data), self._event, self._id))
                self._data = []
                self._event = None
                continue
            self._field(raw)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: an event with data but no closing blank line is still delivered."""
        events = self.feed(b"\n\n") if (self._buffer or self._data) else []
        return events

    def _field(self, raw: bytes) -> None:
        if raw.startswith(b":"):
            return  # comment / keep-alive
        name, sep, value = raw.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        if name == b"data":
            self._data.append(text)
        elif name == b"event":
            self._event = text
        elif name == b"id":
            self._id = text
        # "retry" and unknown fields are ignored, as the spec says.
