"""Parsing, statistics and options of aiperf-server-metrics, without a network."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from aiperf import MetricStats, RunResult, RunStatus, UsageError
from aiperf_server_metrics import plugin
from aiperf_server_metrics.config import from_options
from aiperf_server_metrics.parse import NotPrometheus, parse_body
from aiperf_server_metrics.stats import bucket_quantile, counter_increase, gauge_stats
from aiperf_server_metrics.store import EndpointStore
from aiperf_server_metrics.summary import comparison, comparison_rows
from support.plugin_flags import add_plugin_flags

BODY = b"""# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 4
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="m"} 100
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 5
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 10
vllm:time_to_first_token_seconds_sum{model_name="m"} 1.5
vllm:time_to_first_token_seconds_count{model_name="m"} 10
"""


class TestParse:
    def test_parse_text_format(self) -> None:
        parsed = parse_body(BODY, "text/plain; version=0.0.4")
        assert {
            ("vllm:num_requests_running", "gauge", 4.0),
            ("vllm:prompt_tokens_total", "counter", 100.0),
        } == {(s.name, s.kind, s.value) for s in parsed.scalars}
        (histogram,) = parsed.histograms
        assert ((0.1, float("inf")), (5.0, 10.0), 1.5, 10.0) == (
            histogram.bounds,
            histogram.counts,
            histogram.sum,
            histogram.count,
        )
        assert 0 == parsed.bad_lines

    def test_parse_malformed_line_costs_that_line(self) -> None:
        """One broken line is dropped and counted; every other series still parses."""
        broken = BODY.replace(b"# TYPE vllm:prompt", b"vllm:oops{a=b 1\n# TYPE vllm:prompt")
        parsed = parse_body(broken)
        assert 1 == parsed.bad_lines
        assert 2 == len(parsed.scalars) and 1 == len(parsed.histograms)

    def test_parse_openmetrics(self) -> None:
        body = (
            b"# TYPE busy_seconds counter\n# UNIT busy_seconds seconds\nbusy_seconds_total 3.0\n"
            b"busy_seconds_created 1.0\n"
            b"# TYPE q gauge\nq 2.0\n# EOF\n"
        )
        parsed = parse_body(body, "application/openmetrics-text; version=1.0.0")
        assert {("busy_seconds_total", "counter", "seconds", 3.0), ("q", "gauge", "", 2.0)} == {
            (s.name, s.kind, s.unit, s.value) for s in parsed.scalars
        }

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"<html>nope</html>", "text/html"),
            (b'{"gpuMemUsage": 1}', "application/json"),
            (b"", ""),
        ],
    )
    def test_parse_rejects_what_is_not_prometheus(self, body: bytes, content_type: str) -> None:
        with pytest.raises(NotPrometheus):
            parse_body(body, content_type)


class TestStats:
    def test_counter_increase_over_a_reset(self) -> None:
        """100 -> 150, reset, 0 -> 30: the counter grew by 80 with one reset."""
        t = np.array([0, 1, 2, 3], dtype=np.int64) * 1_000_000_000
        v = np.array([100.0, 150.0, 10.0, 30.0])
        increase = counter_increase(t, v, 0, 3e9)
        assert (80.0, 1, 3.0) == (increase.increase, increase.resets, increase.covered_s)
        assert pytest.approx(80.0 / 3) == increase.rate

    def test_counter_increase_interpolates_window_edges(self) -> None:
        t = np.array([0, 2_000_000_000], dtype=np.int64)
        increase = counter_increase(t, np.array([0.0, 100.0]), 0.5e9, 1.5e9)
        assert 50.0 == increase.increase

    def test_bucket_quantile_interpolates_inside_the_bucket(self) -> None:
        assert 0.05 == pytest.approx(bucket_quantile(0.5, (0.04, 0.06, float("inf")), (0, 10, 10)))
        # The +Inf bucket can say no more than its lower edge.
        assert 0.06 == bucket_quantile(0.99, (0.04, 0.06, float("inf")), (0, 5, 10))
        assert bucket_quantile(0.5, (1.0,), (0.0,)) is None

    def test_gauge_stats(self) -> None:
        stats = gauge_stats(np.array([1.0, 2.0, 3.0, np.nan]))
        assert (3, 2.0, 1.0, 3.0, 2.0) == tuple(
            stats[k] for k in ("count", "avg", "min", "max", "p50")
        )


class TestStore:
    def test_store_live_values_and_series_cap(self) -> None:
        """Gauges go live as they are, counters as a rate; beyond the cap, only common names."""
        store = EndpointStore(source="s", max_series=1)
        body = BODY + b"# TYPE other gauge\nother 1\n"
        store.ingest(parse_body(body), 0, "profile")
        live, _ = store.ingest(
            parse_body(body.replace(b"} 100", b"} 300")), 2_000_000_000, "profile"
        )
        assert {("requests_running", 4.0), ("prompt_tokens_total.rate", 100.0)} == {
            (v.name, v.value) for v in live
        }
        assert {("other", ())} == store.refused


TTFT = "vllm:time_to_first_token_seconds"
TTFT_ID = 'vllm:time_to_first_token_seconds{model_name="m"}'


def ttft_body(counts: tuple[float, float, float, float]) -> bytes:
    """A TTFT histogram with buckets 40 ms, 60 ms, 100 ms, +Inf holding ``counts`` (cumulative)."""
    bounds = ("0.04", "0.06", "0.1", "+Inf")
    lines = [f"# TYPE {TTFT} histogram"]
    lines += [f'{TTFT}_bucket{{le="{le}",model_name="m"}} {n}' for le, n in zip(bounds, counts)]
    lines += [f'{TTFT}_sum{{model_name="m"}} {counts[-1] * 0.05}',
              f'{TTFT}_count{{model_name="m"}} {counts[-1]}']  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


class TestHistogramIntervals:
    def test_store_histogram_interval_quantiles_from_bucket_deltas(self) -> None:
        """Each JSONL line holds the quantiles of what the buckets gained since the scrape
        before (not since the server started); the live p50 is that interval's; a histogram
        whose buckets went down was reset and counts from zero."""
        store = EndpointStore(source="s")
        scrapes = [
            (0.0, 0.0, 0.0, 0.0),
            # 100 observations: 10 below 40 ms, 80 in (40, 60], 10 in (60, 100].
            (10.0, 90.0, 100.0, 100.0),
            # 100 more, all in (60, 100]: only these make the interval's quantiles.
            (10.0, 90.0, 200.0, 200.0),
            # A restart: the counts went down; the 5 now there are all the interval has.
            (5.0, 5.0, 5.0, 5.0),
        ]
        lines, live = [], []
        for i, counts in enumerate(scrapes):
            values, line = store.ingest(parse_body(ttft_body(counts)), i * 1_000_000_000, "profile")
            lines.append(json.loads(line)["histograms"][TTFT_ID])
            live.append({v.name: v.value for v in values})
        assert {"count": 0.0} == lines[0]
        expected = [
            (100.0, 0.05, 0.06, 0.096),
            (100.0, 0.08, 0.096, 0.0996),
            (5.0, 0.02, 0.036, 0.0396),
        ]
        for line, (count, p50, p90, p99) in zip(lines[1:], expected):
            assert count == line["count"]
            assert (p50, p90, p99) == pytest.approx((line["p50"], line["p90"], line["p99"]))
        assert {} == live[0]
        assert [0.05, 0.08, 0.02] == pytest.approx([x["server_ttft.p50"] for x in live[1:]])
        assert [0.096, 0.0996, 0.0396] == pytest.approx([x["server_ttft.p99"] for x in live[1:]])


def stats(tag: str, p50: float, p99: float) -> MetricStats:
    return MetricStats(tag=tag, header=tag, unit="ms", count=100,
                       percentiles={"p50": p50, "p90": p99, "p99": p99})  # fmt: skip


def histogram_entry(common: str, p50: float, p99: float, count: float = 100.0) -> dict:
    return {
        "source": "http://server/metrics", "name": common, "common": common, "type": "histogram",
        "unit": "s", "labels": {}, "statistics": {"count": count, "p50": p50, "p99": p99},
    }  # fmt: skip


class TestComparison:
    def test_comparison_client_vs_server_ttft_and_queue_time(self) -> None:
        """aiperf's TTFT p50 and p99 beside the server's, each with its difference; the
        server's queue time beside them (no client figure to compare it with)."""
        result = RunResult(
            status=RunStatus.FINISHED, was_cancelled=False, run_metrics={}, errors=(),
            start_wall_ns=None, end_wall_ns=None,
            metrics={"time_to_first_token": stats("time_to_first_token", 55.5, 120.25)},
        )  # fmt: skip
        entries = [
            histogram_entry("server_ttft", 0.0502, 0.0955),
            # A second TTFT series that saw less: the busiest one is compared.
            histogram_entry("server_ttft", 0.5, 0.9, count=3.0),
            histogram_entry("server_queue_time", 0.0021, 0.0125),
        ]
        compared = comparison(entries, result)
        ttft = compared["server_ttft"]
        assert (55.5, 50.2, 120.25, 95.5) == pytest.approx(
            (ttft["client_p50"], ttft["server_p50"], ttft["client_p99"], ttft["server_p99"])
        )
        assert (5.3, 24.75) == pytest.approx((ttft["difference_p50"], ttft["difference_p99"]))
        queue = compared["server_queue_time"]
        assert (2.1, 12.5) == pytest.approx((queue["server_p50"], queue["server_p99"]))
        assert "client_p50" not in queue
        rows = {row["Metric (ms)"]: row for row in comparison_rows(compared)}
        assert {
            "aiperf p50": "55.50", "server p50": "50.20", "difference p50": "5.30",
            "aiperf p99": "120.25", "server p99": "95.50", "difference p99": "24.75",
        } == {k: v for k, v in rows["Time to First Token"].items() if k != "Metric (ms)"}  # fmt: skip
        assert {
            "aiperf p50": "", "server p50": "2.10", "difference p50": "",
            "aiperf p99": "", "server p99": "12.50", "difference p99": "",
        } == {k: v for k, v in rows["Server Queue Time"].items() if k != "Metric (ms)"}  # fmt: skip

    def test_comparison_without_a_client_ttft_keeps_the_queue_time(self) -> None:
        result = RunResult(
            status=RunStatus.FINISHED, was_cancelled=False, metrics={}, run_metrics={},
            errors=(), start_wall_ns=None, end_wall_ns=None,
        )  # fmt: skip
        compared = comparison(
            [
                histogram_entry("server_ttft", 0.05, 0.1),
                histogram_entry("server_queue_time", 0.001, 0.002),
            ],
            result,
        )
        assert ["server_queue_time"] == list(compared)


class TestOptions:
    def test_options_repeated_flag_keeps_every_endpoint(self) -> None:
        """--server-metrics a --server-metrics b c: all three, in order, each scraped."""
        parser = argparse.ArgumentParser()
        add_plugin_flags(plugin, "profile", parser)
        args = parser.parse_args(
            ["--server-metrics", "a:8001", "--server-metrics", "b:8002", "http://c:8003/m"]
        )
        assert ["a:8001", "b:8002", "http://c:8003/m"] == args.server_metrics
        config = from_options(vars(args), [])
        assert ["http://a:8001/metrics", "http://b:8002/metrics", "http://c:8003/m"] == [
            e.url for e in config.endpoints
        ]

    def test_options_default_to_every_url(self) -> None:
        config = from_options({}, ["http://a:8000", "http://b:9000/v1?key=secret"])
        assert ["http://a:8000/metrics", "http://b:9000/v1/metrics"] == [
            e.url for e in config.endpoints
        ]
        assert 0.5 == config.interval_s

    def test_options_explicit_urls_come_first(self) -> None:
        config = from_options(
            {"server_metrics": ["node:8001", "http://a:8000/metrics"]}, ["http://a:8000"]
        )
        assert [("http://node:8001/metrics", True), ("http://a:8000/metrics", True)] == [
            (e.url, e.explicit) for e in config.endpoints
        ]

    def test_options_never_echo_a_password(self) -> None:
        with pytest.raises(UsageError) as caught:
            from_options({"server_metrics": ["ftp://user:hunter2@host"]}, [])
        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"no_server_metrics": True, "server_metrics": ["a:1"]}, "--no-server-metrics"),
            ({"server_metrics_interval": 0}, "--server-metrics-interval"),
            ({"server_metrics": ["http://host:99999"]}, "port"),
        ],
    )
    def test_options_bad_input_is_one_line(self, options: dict, message: str) -> None:
        with pytest.raises(UsageError, match=message):
            from_options(options, ["http://a:8000"])

    def test_options_turned_off(self) -> None:
        assert from_options({"no_server_metrics": True}, ["http://a:8000"]) is None


def test_options_label_hides_credentials() -> None:
    """What is logged and exported names the endpoint without its password or query token."""
    config = from_options(
        {"server_metrics": ["http://user:hunter2@node:8000/metrics?token=abc"]}, []
    )
    (endpoint,) = config.endpoints
    assert "http://node:8000/metrics?***" == endpoint.label
    assert "hunter2" in endpoint.url  # still sent, for the server to check
