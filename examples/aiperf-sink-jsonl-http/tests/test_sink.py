"""The sink and its hooks, tested with aiperf.testing."""

import json

import pytest
from aiperf import ProfileConfig, UsageError, read_options
from aiperf.testing import LoopbackServer, Reply, check_sink, fake_stream, make_run, run_sink
from aiperf_sink_jsonl_http import plugin
from aiperf_sink_jsonl_http.options import JsonlHttpOptions
from aiperf_sink_jsonl_http.sink import JsonlHttpSink


def test_keeps_the_sink_contract():
    with LoopbackServer() as server:
        check_sink(lambda: JsonlHttpSink(server.url))


def test_posts_one_line_per_request(tmp_path):
    with LoopbackServer() as server:
        sink = JsonlHttpSink(server.url + "/ingest", batch_size=4)
        outcome = run_sink(sink, fake_stream(10, errors=1), run=make_run(tmp_path))
    assert [4, 4, 2] == [len(request.lines()) for request in server.requests("/ingest")]
    lines = [json.loads(line) for request in server.received for line in request.lines()]
    assert list(range(10)) == [line["index"] for line in lines]
    assert [True] * 9 + [False] == [line["ok"] for line in lines]
    assert lines[0]["metrics"]["time_to_first_token"] > 0
    assert outcome.report is None


def test_a_refusing_server_is_reported_not_raised():
    class Busy(LoopbackServer):
        def respond(self, request):
            return Reply(503, b"busy")

    with Busy() as server:
        outcome = run_sink(JsonlHttpSink(server.url), fake_stream(3))
    assert outcome.report.startswith("jsonl-http: 3 records not delivered")
    assert "503" in outcome.report


def test_the_flag_turns_the_sink_on(tmp_path):
    run = make_run(tmp_path, plugin_options={"jsonl_http_url": "http://127.0.0.1:9/x"})
    [sink] = plugin.aiperf_live_sinks(run.config, run)
    assert "http://127.0.0.1:9/x" == sink.url
    assert plugin.aiperf_live_sinks(ProfileConfig(model="m"), run) is None


def test_a_bad_url_is_one_line():
    config = ProfileConfig(model="m", plugin_options={"jsonl_http_url": "collector:8080"})
    with pytest.raises(UsageError, match="^--jsonl-http-url: expected an http"):
        read_options(JsonlHttpOptions, config)
