"""The SSE parser, fed the way sockets deliver bytes."""

from __future__ import annotations

from aiperf._sse import SSEEvent, SSEParser
from hypothesis import given
from hypothesis import strategies as st


def feed_all(pieces: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    events.extend(parser.close())
    return events


STREAM = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\n'


class TestSSEParser:
    def test_sse_whole_stream_in_one_read(self) -> None:
        """Several events in one read come out in order."""
        assert ['{"a": 1}', '{"a": 2}', "[DONE]"] == [e.data for e in feed_all([STREAM])]

    def test_sse_split_at_every_byte(self) -> None:
        """An event split across reads is reassembled."""
        pieces = [STREAM[i : i + 1] for i in range(len(STREAM))]
        assert ['{"a": 1}', '{"a": 2}', "[DONE]"] == [e.data for e in feed_all(pieces)]

    def test_sse_crlf_line_ends(self) -> None:
        """\\r\\n line ends, also split between the \\r and the \\n."""
        data = STREAM.replace(b"\n", b"\r\n")
        assert 3 == len(feed_all([data]))
        cut = data.index(b"\r\n") + 1
        assert ['{"a": 1}', '{"a": 2}', "[DONE]"] == [e.data for e in feed_all([data[:cut], data[cut:]])]

    def test_sse_bare_cr_line_ends(self) -> None:
        """Bare \\r ends lines too (the spec allows it)."""
        assert ["x", "y"] == [e.data for e in feed_all([b"data: x\r\rdata: y\r\r"])]

    def test_sse_comments_and_unknown_fields_ignored(self) -> None:
        """Keep-alive comments and retry fields produce no events."""
        events = feed_all([b": ping\n\nretry: 100\n\ndata: x\n\n"])
        assert [SSEEvent("x")] == events

    def test_sse_multi_line_data_and_event_name(self) -> None:
        """data lines join with \\n; event and id fields are kept."""
        events = feed_all([b"event: message\nid: 7\ndata: a\ndata: b\n\n"])
        assert [SSEEvent("a\nb", "message", "7")] == events

    def test_sse_no_space_after_colon(self) -> None:
        """'data:x' is the same as 'data: x'."""
        assert ["x"] == [e.data for e in feed_all([b"data:x\n\n"])]

    def test_sse_unterminated_last_event_delivered_on_close(self) -> None:
        """A stream that ends without the blank line still yields its last event."""
        assert ["[DONE]"] == [e.data for e in feed_all([b"data: [DONE]"])]

    def test_sse_usage_only_chunk(self) -> None:
        """A usage-only chunk is an ordinary event; the endpoint decides it has no content."""
        chunk = b'data: {"choices": [], "usage": {"completion_tokens": 5}}\n\n'
        assert 1 == len(feed_all([chunk]))

    @given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30), max_size=8), st.data())
    def test_sse_any_split_gives_same_events(self, payloads: list[str], data: st.DataObject) -> None:
        """However the bytes are cut, the events are the same."""
        stream = b"".join(f"data: {p}\n\n".encode() for p in payloads)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        assert payloads == [e.data for e in feed_all(pieces)]

    @given(st.binary(max_size=300))
    def test_sse_never_crashes_on_garbage(self, blob: bytes) -> None:
        """Arbitrary bytes never raise."""
        feed_all([blob[:100], blob[100:]])


class TestSSEStreamStart:
    def test_sse_bom_at_start_is_not_part_of_the_first_field(self) -> None:
        """A UTF-8 BOM before the first event is dropped, even split over three reads."""
        data = b"\xef\xbb\xbfdata: x\n\ndata: y\n\n"
        assert ["x", "y"] == [e.data for e in feed_all([data])]
        assert ["x", "y"] == [e.data for e in feed_all([data[:1], data[1:2], data[2:]])]

    def test_sse_bom_later_in_the_stream_is_data(self) -> None:
        """Only the stream's first bytes may be a BOM; elsewhere it is content."""
        events = feed_all([b"data: x\n\n", b"data: \xef\xbb\xbfy\n\n"])
        assert ["x", "\ufeffy"] == [e.data for e in events]

    def test_sse_partial_bom_prefix_that_is_not_a_bom(self) -> None:
        assert ["\ufffd"] == [e.data for e in feed_all([b"data: \xef", b"\n\n"])]
        assert [] == feed_all([b"\xef", b"\xbb"])  # a stream that is only a BOM's prefix


class TestOneEventPerRead:
    """A read holding exactly one event (how tokens arrive) gives what the general path gives,
    whatever came before it: a pending field, an id to carry, a partial line."""

    EVENTS = [
        b"data: first\n\n",
        b"id: 7\n\n",
        b"data: carries the id\n\n",
        b"event: custom\n",
        b"data: named\n\n",
        b"data:no space\n\n",
        b"data:\n\n",
        b"data: \xff\xfe bad utf-8\n\n",
        b"data: half",
        b" done\n\n",
        b"data: multi\ndata: line\n\n",
        b": comment\n\n",
        b"data: last\n\n",
    ]

    def test_same_events_read_by_read_and_all_at_once(self) -> None:
        by_read = feed_all(list(self.EVENTS))
        at_once = feed_all([b"".join(self.EVENTS)])
        assert at_once == by_read
        assert [
            SSEEvent("first"), SSEEvent("carries the id", None, "7"), SSEEvent("named", "custom", "7"),
            SSEEvent("no space", None, "7"), SSEEvent("", None, "7"), SSEEvent("\ufffd\ufffd bad utf-8", None, "7"),
            SSEEvent("half done", None, "7"), SSEEvent("multi\nline", None, "7"), SSEEvent("last", None, "7"),
        ] == by_read  # fmt: skip

    def test_first_read_with_a_bom(self) -> None:
        assert [SSEEvent("x"), SSEEvent("y")] == feed_all([b"\xef\xbb\xbfdata: x\n\n", b"data: y\n\n"])
