"""aiperf.testing, the kit plugins test themselves with: each helper does what the core does,
and each contract check fails on a plugin that breaks its contract."""

from __future__ import annotations

import io
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from aiperf import (
    HardwareSample,
    Phase,
    PhaseChanged,
    ProfileConfig,
    Progress,
    RequestDone,
    RunStatus,
    ServerMetricSample,
)
from aiperf._endpoints import CHAT, COMPLETIONS, EMBEDDINGS, ParseError
from aiperf.builtin.exporters import ConsoleExporter, CsvExporter, JsonExporter, MetadataExporter
from aiperf.testing import (
    CHECK_SECRET,
    LoopbackServer,
    Reply,
    check_endpoint,
    check_exporter,
    check_sink,
    drive_sink,
    fake_records,
    fake_stream,
    make_result,
    make_run,
    run_sink,
)

# -- make_run, fake_stream, make_result ------------------------------------------------------


class TestMakeRun:
    def test_defaults_follow_the_config(self, tmp_path: Path) -> None:
        run = make_run(tmp_path / "run", plugin_options={"my_flag": 3})
        assert (tmp_path / "run").is_dir() and run.run_dir == tmp_path / "run"
        assert {"my_flag": 3} == run.config.plugin_options
        assert ("127.0.0.1", 8000, "concurrency1") == (
            run.server_address, run.server_port, run.load_setting
        )  # fmt: skip
        assert run.tokenizer is not None and 3 == run.tokenizer.count("a b c")

    def test_config_and_fields(self, tmp_path: Path) -> None:
        config = ProfileConfig(model="m", url="https://api.example.com/v1", concurrency=8)
        run = make_run(tmp_path, config=config, phase=Phase.PROFILE, benchmark_id="x")
        assert ("api.example.com", 443, "concurrency8", Phase.PROFILE, "x") == (
            run.server_address, run.server_port, run.load_setting, run.phase, run.benchmark_id
        )  # fmt: skip
        with pytest.raises(TypeError, match="not both"):
            make_run(tmp_path, config=config, plugin_options={})


class TestFakeStream:
    def test_order_and_kinds_of_events(self) -> None:
        """Warm-up requests, then the phase change, samples, requests with progress, samples."""
        events = list(fake_stream(10, warmup=2, errors=1, progress_every=4))
        kinds = [type(e).__name__ for e in events]
        assert ["RequestDone", "RequestDone", "PhaseChanged"] == kinds[:3]
        assert [Phase.WARMUP, Phase.WARMUP] == [e.record.phase for e in events[:2]]
        done = [e for e in events if isinstance(e, RequestDone) and e.record.phase is Phase.PROFILE]
        assert list(range(2, 12)) == [e.record.index for e in done]
        assert [True] * 9 + [False] == [e.metrics.ok for e in done]
        progress = [e for e in events if isinstance(e, Progress)]
        assert [(4, 4, 0), (8, 8, 0), (10, 9, 1)] == [
            (p.sent, p.completed, p.failed) for p in progress
        ]
        assert 2 == kinds.count("HardwareSample") == kinds.count("ServerMetricSample")
        assert isinstance(events[-1], ServerMetricSample | HardwareSample)

    def test_metrics_are_the_cores_from_realistic_records(self) -> None:
        done = [
            e
            for e in fake_stream(20, ttft_ms=40, itl_ms=5, output_tokens=8)
            if isinstance(e, RequestDone)
        ]
        for event in done:
            values = event.metrics.values
            assert 38e6 <= values["time_to_first_token"] <= 42e6
            assert 4.75e6 <= values["inter_token_latency"] <= 5.25e6
            assert (
                8
                == values["output_sequence_length"]
                == len(event.metrics.inter_chunk_latency_ns) + 1
            )
            assert event.record.chunk_ns == sorted(event.record.chunk_ns)

    def test_not_streamed(self, tmp_path: Path) -> None:
        run = make_run(tmp_path, config=ProfileConfig(model="m", streaming=False))
        record = fake_records(1, run=run)[0]
        assert [] == record.chunk_ns and record.end_ns > record.start_ns and record.output_text

    def test_make_result(self, tmp_path: Path) -> None:
        run = make_run(tmp_path)
        result = make_result(run, fake_stream(6, run=run, errors=2))
        assert RunStatus.FINISHED == result.status
        assert 4 == result.metrics["time_to_first_token"].count
        assert [("500", 2)] == [(e.type, e.count) for e in result.errors]
        assert RunStatus.FAILED == make_result(run, fake_stream(3, run=run, errors=3)).status


# -- run_sink --------------------------------------------------------------------------------


@attrs.define
class GoodSink:
    name: str = "good"
    calls: list[str] = attrs.field(factory=list)
    seen: list[Any] = attrs.field(factory=list)
    delay: float = 0.0

    async def open(self, run: Any) -> None:
        self.calls.append(f"open:{run.phase.value}")

    async def run(self, events: Any) -> None:
        self.calls.append("run")
        async for event in events:
            self.seen.append(event)
            await trio.sleep(self.delay)
        self.calls.append("run-ended")

    async def close(self, status: RunStatus) -> None:
        self.calls.append(f"close:{status}")

    def report(self) -> str | None:
        self.calls.append("report")
        return f"{len(self.seen)} seen"


class TestRunSink:
    def test_whole_lifecycle_in_order(self, tmp_path: Path) -> None:
        sink, run = GoodSink(), make_run(tmp_path)
        outcome = run_sink(sink, fake_stream(7, run=run), run=run, status=RunStatus.KILLED)
        assert ["open:warmup", "run", "run-ended", "close:KILLED", "report"] == sink.calls
        assert outcome.events == sink.seen and 7 == outcome.requests
        assert (0, f"{len(sink.seen)} seen") == (outcome.dropped, outcome.report)
        assert Phase.PROFILE == run.phase and run.profile_start_ns is not None
        assert run.profile_end_ns == max(
            e.metrics.end_ns for e in sink.seen if isinstance(e, RequestDone)
        )

    def test_records_become_request_done_events(self) -> None:
        sink = GoodSink()
        run_sink(sink, fake_records(3))
        assert [0, 1, 2] == [e.record.index for e in sink.seen]
        assert all(
            isinstance(e, RequestDone) and "request_latency" in e.metrics.values for e in sink.seen
        )

    def test_a_slow_sink_loses_events_and_they_are_counted(self) -> None:
        """As on the live bus: the channel is as large as the sink's buffer_size, publishing
        never waits, what does not fit is dropped."""
        class Small(GoodSink):
            buffer_size = 2

        sink = Small(delay=0.01)
        outcome = run_sink(sink, fake_stream(30))
        assert outcome.dropped > 0
        assert len(outcome.events) == len(sink.seen) + outcome.dropped

    def test_the_sinks_exception_is_raised(self) -> None:
        class Failing(GoodSink):
            async def run(self, events: Any) -> None:
                async for _ in events:
                    raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            run_sink(Failing())

    def test_a_stuck_close_fails_within_the_timeout(self) -> None:
        class Stuck(GoodSink):
            async def close(self, status: RunStatus) -> None:
                await trio.sleep_forever()

        with pytest.raises(
            AssertionError, match=r"sink 'good': close\(\) did not return within 0.2 s"
        ):
            run_sink(Stuck(), [], timeout=0.2)

    async def test_inside_trio_use_drive_sink(self) -> None:
        with pytest.raises(RuntimeError, match="await drive_sink"):
            run_sink(GoodSink())
        sink = GoodSink()
        outcome = await drive_sink(sink, fake_stream(3))
        assert 3 == outcome.requests and "close:FINISHED" in sink.calls


# -- LoopbackServer --------------------------------------------------------------------------


def _post(url: str, body: bytes, **headers: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class TestLoopbackServer:
    def test_records_what_it_received_and_stops(self) -> None:
        with LoopbackServer() as server:
            assert (200, b"{}") == _post(
                server.url + "/ingest?x=1", b'{"a": 1}\n{"b": 2}\n', Authorization="k"
            )
            got = server.wait_for(1)[0]
            port = server.port
        assert ("POST", "/ingest?x=1", "k") == (got.method, got.path, got.headers["authorization"])
        assert ['{"a": 1}', '{"b": 2}'] == got.lines() and [got] == server.requests("/ingest")
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        server.stop()  # a second stop is harmless

    def test_subclass_answers_and_stop_runs_on_error(self) -> None:
        class Busy(LoopbackServer):
            def respond(self, request: Any) -> Reply:
                return Reply(503, b"busy", content_type="text/plain")

        server = Busy()
        with pytest.raises(RuntimeError, match="has not started"):
            server.url  # noqa: B018
        with pytest.raises(ZeroDivisionError), server:
            assert (503, b"busy") == _post(server.url, b"x")
            1 / 0  # noqa: B018
        with pytest.raises(OSError):
            _post(server.url, b"x")

    def test_chunked_body(self) -> None:
        with LoopbackServer() as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                )
                assert sock.recv(100).startswith(b"HTTP/1.1 200")
            assert b"abcde" == server.wait_for(1)[0].body

    def test_wait_for_says_how_many_came(self) -> None:
        with (
            LoopbackServer() as server,
            pytest.raises(AssertionError, match="received 0 requests in 0.1 s, expected 1"),
        ):
            server.wait_for(1, timeout=0.1)


# -- check_sink ------------------------------------------------------------------------------


class TestCheckSink:
    def test_a_good_sink_passes(self) -> None:
        check_sink(GoodSink)
        check_sink(GoodSink())

    def test_no_name(self) -> None:
        with pytest.raises(AssertionError, match="`name` must be a non-empty str"):
            check_sink(lambda: GoodSink(name=""))

    def test_a_method_that_is_not_async(self) -> None:
        class Sync(GoodSink):
            def close(self, status: RunStatus) -> None:  # type: ignore[override]
                pass

        with pytest.raises(AssertionError, match=r"sink 'good': close\(\) must be `async def`"):
            check_sink(Sync)

    def test_a_sink_that_knows_only_request_events(self) -> None:
        class OnlyRequests(GoodSink):
            async def run(self, events: Any) -> None:
                async for event in events:
                    event.record.index  # noqa: B018 - PhaseChanged has none

        with pytest.raises(
            AssertionError, match="sink 'good' failed in a whole run: AttributeError"
        ):
            check_sink(OnlyRequests)

    def test_run_stops_reading_early(self) -> None:
        class Quitter(GoodSink):
            async def run(self, events: Any) -> None:
                async for event in events:
                    if isinstance(event, PhaseChanged):
                        return

        with pytest.raises(AssertionError, match=r"run\(\) returned before its channel ended"):
            check_sink(Quitter)

    def test_close_without_any_event(self) -> None:
        """A sink that assumes the measured phase started fails on a run killed before it."""

        class Assuming(GoodSink):
            async def close(self, status: RunStatus) -> None:
                assert any(isinstance(e, PhaseChanged) for e in self.seen), "no phase"

        with pytest.raises(AssertionError, match="a run killed before its first request"):
            check_sink(Assuming)

    def test_report_must_be_a_line(self) -> None:
        class Counting(GoodSink):
            def report(self) -> Any:
                return len(self.seen)

        with pytest.raises(AssertionError, match=r"report\(\) must return a str or None \(got \d+"):
            check_sink(Counting)

    def test_a_sink_that_never_returns(self) -> None:
        class Deaf(GoodSink):
            async def run(self, events: Any) -> None:
                await trio.sleep_forever()

        with pytest.raises(AssertionError, match=r"run\(\) did not return within 0.3 s"):
            check_sink(Deaf, timeout=0.3)


# -- check_exporter --------------------------------------------------------------------------


@attrs.define
class FileExporter:
    name: str = "file"
    order: int = 50

    def export(self, run: Any, result: Any) -> list[Path]:
        path = run.run_dir / "file.json"
        path.write_text(json.dumps({"config": run.redacted_config(), "status": str(result.status)}))
        return [path]


class TestCheckExporter:
    @pytest.mark.parametrize(
        "exporter",
        [
            JsonExporter,
            CsvExporter,
            MetadataExporter,
            lambda: ConsoleExporter(stream=io.StringIO()),
            FileExporter,
        ],
    )
    def test_good_exporters_pass(self, exporter: Any) -> None:
        check_exporter(exporter)

    @pytest.mark.parametrize(
        ("export", "message"),
        [
            (
                lambda run, result: str((run.run_dir / "x").write_text("x") and run.run_dir / "x"),
                "must return a list of paths",
            ),
            (lambda run, result: [run.run_dir / "missing.json"], "which does not exist"),
            (
                lambda run, result: [
                    (run.run_dir.parent / "out.json").write_text("{}")
                    and run.run_dir.parent / "out.json"
                ],
                "outside the run directory",
            ),
            (
                lambda run, result: [
                    (run.run_dir / "a.json.tmp").write_text("{}") and run.run_dir / "a.json.tmp"
                ],
                "left a.json.tmp behind",
            ),
            (
                lambda run, result: [
                    (run.run_dir / "c.txt").write_text(str(attrs.asdict(run.config))) and run.run_dir / "c.txt"
                ],
                "the run's API key is in c.txt",
            ),
        ],
        ids=["str", "missing", "outside", "tmp", "secret"],
    )
    def test_broken_exporters_fail(self, export: Any, message: str) -> None:
        @attrs.define
        class Broken(FileExporter):
            def export(self, run: Any, result: Any) -> Any:
                return export(run, result)

        with pytest.raises(AssertionError, match=message):
            check_exporter(Broken)

    def test_an_exporter_that_needs_a_successful_request(self) -> None:
        class Optimist(FileExporter):
            def export(self, run: Any, result: Any) -> list[Path]:
                path = run.run_dir / "latency.txt"
                path.write_text(str(result.metrics["request_latency"].avg))
                return [path]

        with pytest.raises(
            AssertionError, match="failed on a run where every request failed: KeyError"
        ):
            check_exporter(Optimist)

    def test_order_and_sync_export(self) -> None:
        with pytest.raises(AssertionError, match="`order` must be an int"):
            check_exporter(lambda: FileExporter(order="10"))  # type: ignore[arg-type]

        class Async(FileExporter):
            async def export(self, run: Any, result: Any) -> list[Path]:  # type: ignore[override]
                return []

        with pytest.raises(AssertionError, match=r"export\(\) must not be `async def`"):
            check_exporter(Async)

    def test_the_secret_is_the_runs_api_key(self, tmp_path: Path) -> None:
        """What the secret check looks for is what a careless exporter would write."""
        run = make_run(
            tmp_path, config=attrs.evolve(ProfileConfig(model="m"), api_key=CHECK_SECRET)
        )
        assert CHECK_SECRET in str(attrs.asdict(run.config)) and CHECK_SECRET not in json.dumps(
            run.redacted_config()
        )


# -- check_endpoint --------------------------------------------------------------------------


def _chat_chunk(text: str) -> dict[str, Any]:
    return {"choices": [{"delta": {"content": text}}]}


class TestCheckEndpoint:
    def test_built_in_endpoints_pass(self) -> None:
        check_endpoint(
            CHAT,
            response={"choices": [{"message": {"content": "Hello there"}}]},
            chunks=[_chat_chunk("Hello"), _chat_chunk(" there")],
            text="Hello there",
        )
        check_endpoint(COMPLETIONS, response={"choices": [{"text": "hi"}]}, text="hi")
        check_endpoint(EMBEDDINGS, response={"data": [{"embedding": [0.1]}]})

    def test_a_parser_that_raises_on_the_wrong_shape(self) -> None:
        def parse(data: Any) -> Any:
            return CHAT.parse_chunk(
                {"choices": [{"delta": {"content": data["choices"][0]["delta"]["content"]}}]}
            )

        broken = attrs.evolve(CHAT, name="careless", parse_chunk=parse)
        with pytest.raises(
            AssertionError, match=r"endpoint 'careless': parsing a chunk raised TypeError on None"
        ):
            check_endpoint(broken)

    def test_a_parser_that_raises_parse_error_passes(self) -> None:
        def parse(data: Any) -> Any:
            if not isinstance(data, dict) or "choices" not in data:
                raise ParseError("not a chat chunk")
            return CHAT.parse_chunk(data)

        check_endpoint(attrs.evolve(CHAT, name="careful", parse_chunk=parse, parse_response=parse))

    def test_wrong_text(self) -> None:
        with pytest.raises(AssertionError, match=r"the chunks' texts make 'ab', expected 'a b'"):
            check_endpoint(CHAT, chunks=[_chat_chunk("a"), _chat_chunk("b")], text="a b")
        with pytest.raises(AssertionError, match=r"parse_response\(\) found 'a', expected 'b'"):
            check_endpoint(CHAT, response={"choices": [{"message": {"content": "a"}}]}, text="b")

    def test_a_payload_without_the_prompt(self) -> None:
        broken = attrs.evolve(
            CHAT, name="forgetful", build_payload=lambda prompt, config: {"model": config.model}
        )
        with pytest.raises(
            AssertionError, match=r"the prompt's text is not in the payload \(not streamed\)"
        ):
            check_endpoint(broken)

    def test_a_payload_that_is_not_json(self) -> None:
        broken = attrs.evolve(
            CHAT, name="binary", build_payload=lambda prompt, config: {"x": b"raw"}
        )
        with pytest.raises(
            AssertionError, match=r"build_payload\(\) failed \(not streamed\): TypeError"
        ):
            check_endpoint(broken)

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"name": "two words"}, "`name` must be one word"),
            ({"default_path": "v1/chat"}, "`default_path` must start with '/'"),
            ({"operation_name": ""}, "`operation_name` must be a non-empty str"),
        ],
    )
    def test_bad_fields(self, change: dict[str, Any], message: str) -> None:
        with pytest.raises(AssertionError, match=message):
            check_endpoint(attrs.evolve(CHAT, **change))

    def test_not_an_endpoint_type(self) -> None:
        with pytest.raises(AssertionError, match="expected an aiperf.EndpointType"):
            check_endpoint({"name": "chat"})
