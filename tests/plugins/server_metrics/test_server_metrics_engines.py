"""Recorded /metrics bodies of each engine family parse into the common names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiperf_server_metrics.engines import parse_table, table
from aiperf_server_metrics.parse import parse_body
from aiperf_server_metrics.store import EndpointStore, HistogramSeries

DATA = Path(__file__).resolve().parents[2] / "data" / "server_metrics"

#: fixture -> (engines, every series that has a common name: (its name, the common name, its
#: value)); a histogram gives its count. A series of the body left out here must not map.
EXPECTED = {
    "vllm_v0.txt": ({"vllm"}, [
        ("vllm:num_requests_running", "requests_running", 8.0),
        ("vllm:num_requests_waiting", "requests_waiting", 3.0),
        ("vllm:gpu_cache_usage_perc", "kv_cache_usage", 0.42),
        ("vllm:gpu_prefix_cache_hit_rate", "prefix_cache_hit_rate", 0.25),
        ("vllm:prompt_tokens_total", "prompt_tokens_total", 51200.0),
        ("vllm:generation_tokens_total", "generation_tokens_total", 12800.0),
        ("vllm:time_to_first_token_seconds", "server_ttft", 100.0),
        ("vllm:time_per_output_token_seconds", "server_itl", 12700.0),
        ("vllm:request_queue_time_seconds", "server_queue_time", 100.0),
    ]),
    "vllm_v1.txt": ({"vllm"}, [
        ("vllm:num_requests_running", "requests_running", 16.0),
        ("vllm:num_requests_waiting", "requests_waiting", 5.0),
        ("vllm:kv_cache_usage_perc", "kv_cache_usage", 0.61),
        ("vllm:prefix_cache_queries_total", "prefix_cache_queries_total", 40000.0),
        ("vllm:prefix_cache_hits_total", "prefix_cache_hits_total", 10000.0),
        ("vllm:num_preemptions_total", "preemptions_total", 2.0),
        ("vllm:prompt_tokens_total", "prompt_tokens_total", 40000.0),
        ("vllm:generation_tokens_total", "generation_tokens_total", 9000.0),
        # Both finish reasons, each its own series.
        ("vllm:request_success_total", "requests_finished_total", 70.0),
        ("vllm:request_success_total", "requests_finished_total", 30.0),
        ("vllm:time_to_first_token_seconds", "server_ttft", 100.0),
        ("vllm:inter_token_latency_seconds", "server_itl", 8900.0),
        ("vllm:request_queue_time_seconds", "server_queue_time", 100.0),
    ]),
    "sglang.txt": ({"sglang"}, [
        ("sglang:prompt_tokens_total", "prompt_tokens_total", 8128902.0),
        ("sglang:generation_tokens_total", "generation_tokens_total", 7557572.0),
        ("sglang:token_usage", "kv_cache_usage", 0.28),
        ("sglang:cache_hit_rate", "prefix_cache_hit_rate", 0.007507552643049313),
        ("sglang:num_running_reqs", "requests_running", 162.0),
        ("sglang:num_queue_reqs", "requests_waiting", 2826.0),
        ("sglang:gen_throughput", "generation_throughput", 2518.1),
        ("sglang:time_to_first_token_seconds", "server_ttft", 6.0),
        ("sglang:e2e_request_latency_seconds", "server_request_latency", 6.0),
    ]),
    "tgi.txt": ({"tgi"}, [
        ("tgi_batch_current_size", "requests_running", 12.0),
        ("tgi_queue_size", "requests_waiting", 4.0),
        ("tgi_request_success_total", "requests_finished_total", 240.0),
        ("tgi_request_queue_duration", "server_queue_time", 240.0),
        ("tgi_request_duration", "server_request_latency", 240.0),
        ("tgi_request_mean_time_per_token_duration", "server_itl", 240.0),
    ]),
    "dynamo_trtllm.txt": ({"dynamo", "tensorrt-llm"}, [
        ("dynamo_frontend_inflight_requests", "requests_running", 6.0),
        ("dynamo_frontend_queued_requests", "requests_waiting", 1.0),
        ("dynamo_frontend_output_tokens_total", "generation_tokens_total", 1500.0),
        ("dynamo_component_kvstats_gpu_cache_usage_percent", "kv_cache_usage", 0.35),
        ("dynamo_frontend_time_to_first_token_seconds", "server_ttft", 10.0),
        # The engine's own series beside Dynamo's, under the same common names.
        ("trtllm_request_success_total", "requests_finished_total", 150.0),
        ("trtllm_time_to_first_token_seconds", "server_ttft", 150.0),
        ("trtllm_request_queue_time_seconds", "server_queue_time", 150.0),
        ("trtllm_e2e_request_latency_seconds", "server_request_latency", 150.0),
        ("trtllm_time_per_output_token_seconds", "server_itl", 150.0),
    ]),
    "llamacpp.txt": ({"llama.cpp"}, [
        ("llamacpp:prompt_tokens_total", "prompt_tokens_total", 6886.0),
        ("llamacpp:tokens_predicted_total", "generation_tokens_total", 3469.0),
        ("llamacpp:predicted_tokens_seconds", "generation_throughput", 0.978762),
        ("llamacpp:kv_cache_usage_ratio", "kv_cache_usage", 0.125),
        ("llamacpp:requests_processing", "requests_running", 2.0),
        ("llamacpp:requests_deferred", "requests_waiting", 1.0),
    ]),
}  # fmt: skip

#: what a recorded body's header must name: a page of the engine's documentation, or a file
#: of its source, by address.
SOURCE_URL = re.compile(r"https://[\w.-]+\.[a-z]{2,}/\S+")


def ingest(body: bytes) -> EndpointStore:
    store = EndpointStore(source="http://server/metrics")
    store.ingest(parse_body(body), wall_ns=1, phase="profile")
    return store


def mapped(store: EndpointStore) -> list[tuple[str, str, float]]:
    """Every series with a common name: (name, common name, value or histogram count)."""
    out = []
    for series in store.common_series():
        if isinstance(series, HistogramSeries):
            value = series.buckets[-1][-1]
        else:
            value = series.v[-1]
        out.append((series.name, series.common, value))
    return sorted(out)


def header(path: Path) -> str:
    """The comment lines a recorded body starts with, before its first series."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith(("# HELP", "# TYPE")):
            break
        lines.append(line)
    return "\n".join(lines)


class TestRecordedBodies:
    @pytest.mark.parametrize("fixture", sorted(EXPECTED))
    def test_engine_body_maps_to_common_names(self, fixture: str) -> None:
        """Every series of each engine that the table knows comes out under its common name,
        with its value: the engine's own (trtllm_*) beside Dynamo's, every label set."""
        engines, expected = EXPECTED[fixture]
        store = ingest((DATA / fixture).read_bytes())
        assert sorted(expected) == mapped(store)
        assert engines == store.engines

    def test_engine_body_keeps_every_other_series(self) -> None:
        """A series the table does not know is kept under its own name."""
        store = ingest((DATA / "llamacpp.txt").read_bytes())
        assert 512.0 == store.scalars[("llamacpp:kv_cache_tokens", ())].v[-1]
        assert store.scalars[("llamacpp:kv_cache_tokens", ())].common is None

    @pytest.mark.parametrize("fixture", sorted(EXPECTED))
    def test_engine_fixtures_name_their_source(self, fixture: str) -> None:
        """Every recorded body says it was written by hand, and from what: the address of
        the engine's documentation or source it follows."""
        text = header(DATA / fixture)
        assert text.startswith("# Written by hand for aiperf's tests from"), fixture
        assert SOURCE_URL.search(text), f"{fixture}: no documentation or source address"

    def test_engine_fixtures_are_all_checked(self) -> None:
        assert sorted(EXPECTED) == sorted(p.name for p in DATA.glob("*.txt"))


class TestNameTable:
    def test_table_covers_every_engine_family(self) -> None:
        """vLLM, SGLang, TGI, TensorRT-LLM, Dynamo and llama.cpp are all in the table."""
        assert {"vllm", "sglang", "tgi", "tensorrt-llm", "dynamo", "llama.cpp"} == set(
            table().engines()
        )

    def test_table_entries_all_have_a_source(self) -> None:
        assert all(entry.source.strip() for entry in table().names)

    def test_table_matches_counter_with_or_without_total(self) -> None:
        """prometheus_client names a counter family without _total; both forms match."""
        assert "prompt_tokens_total" == table().lookup("vllm:prompt_tokens").common
        assert "prompt_tokens_total" == table().lookup("vllm:prompt_tokens_total").common

    def test_table_rejects_an_unknown_common_name(self) -> None:
        text = (
            '[common.a]\nkind = "gauge"\nunit = ""\ndescription = ""\n'
            '[[name]]\nengine = "e"\nmetric = "m"\ncommon = "b"\nsource = "s"\n'
        )
        with pytest.raises(ValueError, match="unknown 'b'"):
            parse_table(text)
