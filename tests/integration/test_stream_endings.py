"""How real servers end streams and keep connections, and answers that must never end a run:
the real CLI against the mock server's stream-end and idle-timeout modes, and against a small
server that turns bad after 50 good answers."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiperf.testing import MockServer
from support.cli_run import profile

pytestmark = pytest.mark.integration



class TestStreamEnds:
    @pytest.mark.parametrize("endpoint_type", ["chat", "completions"])
    def test_stream_without_done_is_complete(self, tmp_path: Path, endpoint_type: str) -> None:
        """An engine that never sends [DONE]: finish_reason + usage, then the body ends."""
        with MockServer(stream_end="finish-only", itl_ms=1) as server:
            run = profile(server.url, tmp_path / "run", "--endpoint-type", endpoint_type)
            truth = server.stats()["requests"]
        assert 0 == run.code, run.output
        run.assert_complete()
        assert {} == dict(run.error_types())
        assert truth["ok"] == run.metric("request_count") == 20
        assert 8 == run.metric("output_sequence_length")

    def test_done_with_the_connection_held_open_ends_at_done(self, tmp_path: Path) -> None:
        """[DONE], then the server keeps the response open for a minute: each request ends at
        [DONE] (waiting for the body's end would run into the 20 s request timeout)."""
        with MockServer(stream_end="done-hold", hold_seconds=60, itl_ms=1) as server:
            run = profile(
                server.url, tmp_path / "run", "--request-timeout-seconds", "20",
                count=8, concurrency=2,
            )  # fmt: skip
            truth = server.stats()["requests"]
        assert 0 == run.code, run.output
        run.assert_complete()
        assert {} == dict(run.error_types())
        assert 8 == truth["ok"] == run.metric("request_count")
        # each held response cost a new connection; the answers were whole
        assert 8 == run.metric("output_sequence_length")


class TestKeepAlive:
    @pytest.mark.parametrize("idle_s", [0.2, 0.25], ids=["idle-0.2", "idle-0.25-racing"])
    def test_server_closing_idle_connections_causes_no_error(self, tmp_path: Path, idle_s: float) -> None:
        """The server closes connections idle for 0.2 s (and, racing, 0.25 s); aiperf sends
        one request every 0.25 s: no request fails, and none is counted twice."""
        with MockServer(idle_timeout=idle_s) as server:
            run = profile(
                server.url, tmp_path / "run", "--request-rate", "4", "--request-rate-mode",
                "constant", count=16, concurrency=1,
            )  # fmt: skip
            truth = server.stats()["requests"]
        assert 0 == run.code, run.output
        run.assert_complete()
        assert {} == dict(run.error_types())
        assert 16 == run.metric("request_count")
        if idle_s < 0.25:
            # every gap outlasts the idle timeout: the server really closed idle connections
            # (at 0.25 s it is a race the server may or may not win; no error either way)
            assert truth["idle_closes"] >= 1
        # a retried request reached the server once: its count is ours plus nothing
        assert 16 == truth["ok"]


# -- a server that turns bad ---------------------------------------------------------------------

GOOD = 50


def _chunk(content: str | None, finish: str | None = None, **extra: object) -> bytes:
    data = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": content} if content else {},
            "finish_reason": finish}], **extra}  # fmt: skip
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _good_stream() -> bytes:
    usage = {"prompt_tokens": 16, "completion_tokens": 2}
    return _chunk("Hello") + _chunk(" world", "stop") + b'data: {"choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\ndata: [DONE]\n\n"


def _with_usage(raw: bytes) -> bytes:
    return _chunk("Hello") + _chunk(" world", "stop") + b'data: {"choices":[],"usage":{"completion_tokens":' + raw + b"}}\n\ndata: [DONE]\n\n"


#: one bad answer per kind (streamed).
BAD_STREAMS = {
    # NaN and Infinity are not JSON: the event cannot be read at all
    "usage-nan": _with_usage(b"NaN"),
    "usage-infinity": _with_usage(b"Infinity"),
    "deep-json": _chunk("Hello") + b'data: {"choices":' + b"[" * 5000 + b"]" * 5000 + b"}\n\ndata: [DONE]\n\n",
    "content-number": b'data: {"choices":[{"delta":{"content":5}}]}\n\ndata: [DONE]\n\n',
}

BAD_BODIES = {
    "not-utf8": b'{"choices":[{"message":{"content":"\xff\xfe"}}]}',
    "deep-json": b'{"choices":' + b"[" * 5000 + b"]" * 5000 + b"}",
}

#: answers whose only fault is an absurd usage: the request stands (counted by the
#: tokenizer), the usage is ignored with a note and never enters a statistic.
ABSURD_USAGE_STREAMS = {
    "usage-string": _with_usage(b'"5"'),
    "usage-list": _with_usage(b"[5]"),
    "usage-huge": _with_usage(b"1" + b"0" * 400),
    "usage-negative": _with_usage(b"-3"),
}


class _TurnsBad(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answers: Callable[[int], tuple[bytes, bytes]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers = answers
        self.count = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _TurnsBad = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    return
                buf += data
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )  # fmt: skip
            while len(rest) < length:
                rest += sock.recv(65536)
            buf = rest[length:]
            with server.lock:
                index = server.count
                server.count += 1
            ctype, body = server.answers(index)
            sock.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                % (ctype, len(body), body)
            )


@pytest.fixture
def turns_bad() -> Iterator[Callable[[Callable[[int], tuple[bytes, bytes]]], _TurnsBad]]:
    servers: list[_TurnsBad] = []

    def start(answers: Callable[[int], tuple[bytes, bytes]]) -> _TurnsBad:
        server = _TurnsBad(answers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class TestBadResponses:
    @pytest.mark.parametrize(
        ("streaming", "workers"), [(True, 1), (False, 1), (True, 2)], ids=["stream", "body", "stream-workers"]
    )
    def test_bad_answers_after_good_ones_never_end_the_run(
        self, tmp_path: Path, streaming: bool, workers: int, turns_bad: Callable[..., _TurnsBad]
    ) -> None:
        """50 good answers, then one of each bad kind: exit 0, a full summary, and every bad
        answer is its request's parse_error line (in worker processes too)."""
        bad = list((BAD_STREAMS if streaming else BAD_BODIES).values())
        good_body = b'{"choices":[{"message":{"content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":16,"completion_tokens":2}}'

        def answers(index: int) -> tuple[bytes, bytes]:
            if streaming:
                body = _good_stream() if index < GOOD else bad[(index - GOOD) % len(bad)]
                return b"text/event-stream", body
            return b"application/json", good_body if index < GOOD else bad[(index - GOOD) % len(bad)]

        server = turns_bad(answers)
        run = profile(
            server.url, tmp_path / "run", "--workers", str(workers),
            streaming=streaming, count=GOOD + len(bad), concurrency=workers,
        )  # fmt: skip
        assert 0 == run.code, run.output
        run.assert_complete()
        records = run.records()
        assert GOOD + len(bad) == len(records)
        assert {"parse_error": len(bad)} == dict(run.error_types())
        assert GOOD == run.metric("request_count")
        assert len(bad) == run.metric("error_request_count")
        assert "FINISHED" == run.summary["status"]
        if workers == 1:
            # one request at a time: the server's answer k went to request k
            bad_lines = sorted(r["request_index"] for r in run.errors())
            assert list(range(GOOD, GOOD + len(bad))) == bad_lines
        for record in run.errors():
            assert record["error"]["message"]

    def test_absurd_usage_is_ignored_with_a_note(
        self, tmp_path: Path, turns_bad: Callable[..., _TurnsBad]
    ) -> None:
        """A usage that cannot be a token count costs neither the request nor the run: the
        JSONL line says why it was ignored, the summary counts it in a note, and the token
        statistics hold only sane counts."""
        absurd = list(ABSURD_USAGE_STREAMS.values())

        def answers(index: int) -> tuple[bytes, bytes]:
            body = _good_stream() if index < GOOD else absurd[(index - GOOD) % len(absurd)]
            return b"text/event-stream", body

        server = turns_bad(answers)
        run = profile(
            server.url, tmp_path / "run", "--use-server-token-count",
            count=GOOD + len(absurd), concurrency=1,
        )  # fmt: skip
        assert 0 == run.code, run.output
        run.assert_complete()
        records = run.records()
        assert [] == run.errors()
        ignored = [r for r in records if r["usage_ignored"]]
        assert list(range(GOOD, GOOD + len(absurd))) == sorted(r["request_index"] for r in ignored)
        assert all(r["usage"] is None and r["token_source"] == "client" for r in ignored)
        notes = " ".join(run.summary.get("notes", []))
        assert f"ignored the server's usage in {len(absurd)} of" in notes, notes
        # every output token count in the statistics is a sane one (2 by usage or tokenizer)
        assert 2 == run.summary["metrics"]["output_sequence_length"]["max"]


RAISING_PROCESSOR = '''
from aiperf import hookimpl

@hookimpl
def aiperf_register_record_processors(register):
    class Fragile:
        name = "fragile"
        order = 10
        def process(self, record, values, run):
            if record.index == 3:
                raise OverflowError("cannot convert float infinity to integer")
    register(Fragile())
'''


class TestMeasuring:
    def test_a_metric_processor_that_raises_fails_one_request(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A per-request metric computation that raises makes that request a parse_error
        naming the processor; the run finishes with every other request."""
        from support.fake_plugins import install_fake_distribution

        site = tmp_path / "site"
        site.mkdir()
        install_fake_distribution(site, "aiperf-fragile", "aiperf_fragile_plugin", RAISING_PROCESSOR)
        monkeypatch.setenv("PYTHONPATH", str(site))
        with MockServer() as server:
            run = profile(server.url, tmp_path / "run", count=10, concurrency=1)
        assert 0 == run.code, run.output
        run.assert_complete()
        assert {"parse_error": 1} == dict(run.error_types())
        (error,) = run.errors()
        assert 3 == error["request_index"]
        assert "fragile" in error["error"]["message"] and "OverflowError" in error["error"]["message"]
        assert 9 == run.metric("request_count")
