"""Hypothesis against the SSE parser: any bytes in any pieces, never a crash; how the bytes are
split never changes the events; what a server writes is what the parser delivers."""

from __future__ import annotations

from typing import Any

from aiperf._sse import SSEEvent, SSEParser
from hypothesis import example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None)

LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
# Field values may hold anything but line ends (the format has no escape for them).
VALUE = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40
)


def parse(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


@st.composite
def split(draw: Any, data: bytes) -> list[bytes]:
    """``data`` cut at random places (empty pieces included: a read may return nothing new)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


@st.composite
def stream(draw: Any) -> tuple[bytes, list[str]]:
    """A stream a server could write, and the data of each event it holds."""
    out = bytearray()
    expected: list[str] = []

    def end() -> bytes:
        # A CR line end followed by an LF one would read as a single CRLF.
        chosen: bytes = draw(LINE_ENDS)
        return b"\r\n" if out.endswith(b"\r") and chosen == b"\n" else chosen

    for _ in range(draw(st.integers(0, 6))):
        lines = draw(st.lists(VALUE, min_size=1, max_size=3))
        if draw(st.booleans()):
            out += b": keep-alive"
            out += end()
        if draw(st.booleans()):
            out += b"event: " + draw(VALUE).encode()
            out += end()
        for line in lines:
            # "data:value" and "data: value" are the same field; one leading space is dropped
            sep = b"data: " if draw(st.booleans()) else b"data:"
            if sep == b"data:" and line.startswith(" "):
                sep = b"data: "
            out += sep + line.encode()
            out += end()
        out += end()
        expected.append("\n".join(lines))
    return bytes(out), expected


class TestSseFuzz:
    @FUZZ
    @given(data=st.data(), raw=st.binary(max_size=300))
    def test_sse_any_bytes_any_pieces_never_raise(self, data: st.DataObject, raw: bytes) -> None:
        """Garbage, invalid UTF-8, stray CRs: the parser delivers events or nothing, never raises."""
        events = parse(data.draw(split(raw)))
        assert all(isinstance(e.data, str) for e in events)

    @FUZZ
    @given(data=st.data(), raw=st.binary(max_size=300))
    @example(data=None, raw=b"data: a\r\ndata: b\n\n")
    def test_sse_split_never_changes_events(self, data: st.DataObject | None, raw: bytes) -> None:
        """The same bytes in one read or in many give the same events."""
        # The example: an empty read between the CR and the LF of one line end.
        pieces = data.draw(split(raw)) if data is not None else [b"data: a\r", b"", b"\ndata: b\n\n"]
        assert parse([raw]) == parse(pieces)

    @FUZZ
    @given(data=st.data(), written=stream())
    def test_sse_delivers_what_the_server_wrote(
        self, data: st.DataObject, written: tuple[bytes, list[str]]
    ) -> None:
        """Every event's data arrives whole, in order, whatever the line ends and the reads."""
        raw, expected = written
        assert expected == [e.data for e in parse(data.draw(split(raw)))]

    @FUZZ
    @given(text=VALUE, cut=st.integers(0, 200))
    def test_sse_multibyte_text_split_inside_a_character(self, text: str, cut: int) -> None:
        """A UTF-8 character cut between two reads is decoded whole."""
        raw = b"data: " + text.encode() + b"\n\n"
        cut = min(cut, len(raw))
        assert [text] == [e.data for e in parse([raw[:cut], raw[cut:]])]
