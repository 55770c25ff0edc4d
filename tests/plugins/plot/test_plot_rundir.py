"""Reading run directories: what counts, what is skipped, and what the user is told."""

from __future__ import annotations

import json

import pytest
from aiperf_plot.rundir import (
    find_runs,
    load_label,
    load_run,
    load_sort_key,
    read_gpu,
    read_requests,
    read_summary,
)


class TestRequests:
    """profile_export.jsonl."""

    def test_read_requests_excludes_warmup(self, make_run):
        run_dir = make_run(requests=10, warmup=3)
        requests, problem = read_requests(run_dir / "profile_export.jsonl")
        assert problem is None
        assert 10 == len(requests)

    def test_read_requests_sorted_by_start(self, make_run):
        run_dir = make_run(requests=12, concurrency=3)
        requests, _ = read_requests(run_dir / "profile_export.jsonl")
        starts = [r.start_ns for r in requests]
        assert sorted(starts) == starts

    def test_read_requests_skips_a_cut_short_last_line(self, make_run):
        run_dir = make_run(requests=5, warmup=0)
        path = run_dir / "profile_export.jsonl"
        path.write_text(path.read_text() + '{"request_index": 99, "pha')
        requests, problem = read_requests(path)
        assert (5, None) == (len(requests), problem)

    def test_read_requests_missing_file_is_a_problem_not_an_error(self, tmp_path):
        requests, problem = read_requests(tmp_path / "profile_export.jsonl")
        assert () == requests
        assert "profile_export.jsonl not found" == problem

    def test_read_requests_only_garbage_says_how_many_lines(self, tmp_path):
        path = tmp_path / "profile_export.jsonl"
        path.write_text("not json\n[1, 2]\n\n")
        assert ((), "profile_export.jsonl has no measured requests (2 unreadable lines)") == (
            read_requests(path)
        )

    def test_request_value_accepts_value_objects(self, tmp_path):
        path = tmp_path / "profile_export.jsonl"
        row = {
            "start_time_ns": 5,
            "metrics": {
                "time_to_first_token": {"value": 12.5, "unit": "ms"},
                "inter_chunk_latency": [1, 2.5, "x"],
            },
        }
        path.write_text(json.dumps(row) + "\n")
        (request,), _ = read_requests(path)
        assert 12.5 == request.value("time_to_first_token")
        assert [1.0, 2.5] == request.values("inter_chunk_latency")
        assert request.value("request_latency") is None

    def test_non_finite_values_are_absent(self, tmp_path):
        path = tmp_path / "profile_export.jsonl"
        path.write_text(
            '{"start_time_ns": 1, "metrics": {"request_latency": NaN, '
            '"time_to_first_token": Infinity, "inter_chunk_latency": [1.0, NaN]}}\n'
        )
        (request,), _ = read_requests(path)
        assert (None, None, [1.0]) == (
            request.value("request_latency"),
            request.value("time_to_first_token"),
            request.values("inter_chunk_latency"),
        )

    def test_failed_request_is_not_ok(self, make_run):
        run_dir = make_run(requests=6, errors=2, warmup=0)
        requests, _ = read_requests(run_dir / "profile_export.jsonl")
        assert 2 == sum(not r.ok for r in requests)


class TestSummary:
    """profile_export_aiperf.json."""

    def test_read_summary_stats(self, make_run):
        run_dir = make_run(requests=10, concurrency=2)
        summary, problem = read_summary(run_dir / "profile_export_aiperf.json")
        assert problem is None
        assert "concurrency2" == summary.load_setting
        assert 10 == summary.stat("request_latency", "count")
        assert summary.stat("request_latency", "p42") is None

    def test_read_summary_missing(self, tmp_path):
        summary, problem = read_summary(tmp_path / "profile_export_aiperf.json")
        assert summary is None
        assert "profile_export_aiperf.json not found (did the run finish?)" == problem

    def test_read_summary_not_json(self, tmp_path):
        path = tmp_path / "profile_export_aiperf.json"
        path.write_text("{oops")
        _, problem = read_summary(path)
        assert problem.startswith("profile_export_aiperf.json is not valid JSON")

    def test_read_summary_older_format(self, tmp_path):
        path = tmp_path / "profile_export_aiperf.json"
        path.write_text(json.dumps({"records": {}}))
        _, problem = read_summary(path)
        assert (
            "profile_export_aiperf.json is from an older or different tool: "
            'it has no "metrics" object' == problem
        )

    def test_read_summary_goodput_slos(self, make_run):
        run_dir = make_run(goodput={"time_to_first_token": 80})
        summary, _ = read_summary(run_dir / "profile_export_aiperf.json")
        assert {"time_to_first_token": 80.0} == dict(summary.goodput_slos)


class TestGpu:
    """gpu_telemetry_export.jsonl, with fields absent."""

    def test_read_gpu_absent_fields_are_none(self, tmp_path):
        path = tmp_path / "gpu_telemetry_export.jsonl"
        path.write_text(json.dumps({"wall_ns": 10, "gpu_index": 1}) + "\nnot json\n")
        (sample,), problem = read_gpu(path)
        assert problem is None
        assert (1, None, None, "") == (
            sample.gpu_index,
            sample.power_watts,
            sample.gpu_utilization,
            sample.host,
        )

    def test_load_run_without_gpu_file(self, make_run):
        run = load_run(make_run())
        assert (False, (), None) == (run.has_gpu_file, run.gpu, run.gpu_problem)

    def test_load_run_with_gpus(self, make_run):
        run = load_run(make_run(gpus=2))
        assert {0, 1} == {s.gpu_index for s in run.gpu}


class TestDiscovery:
    """Finding run directories and ordering a sweep."""

    def test_find_runs_in_parent(self, sweep):
        parent = sweep[0].parent
        (parent / "plots").mkdir()
        (parent / "notes").mkdir()
        assert sorted(sweep) == find_runs(parent)

    def test_find_runs_run_dir_itself(self, sweep):
        assert [sweep[1]] == find_runs(sweep[1])

    def test_find_runs_nothing(self, tmp_path):
        assert [] == find_runs(tmp_path)

    def test_find_runs_summary_only(self, tmp_path):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "profile_export_aiperf.json").write_text("{}")
        assert [tmp_path / "run"] == find_runs(tmp_path)

    @pytest.mark.parametrize(
        ("settings", "ordered"),
        [
            (
                ["concurrency10", "concurrency2", "concurrency4"],
                ["concurrency2", "concurrency4", "concurrency10"],
            ),
            (
                ["request_rate2.5", "request_rate10", "request_rate1"],
                ["request_rate1", "request_rate2.5", "request_rate10"],
            ),
        ],
    )
    def test_load_sort_key_numeric(self, settings, ordered):
        assert ordered == sorted(settings, key=load_sort_key)

    def test_load_label(self):
        assert ["concurrency 4", "2.5 req/s", "custom", "?"] == [
            load_label(s) for s in ("concurrency4", "request_rate2.5", "custom", None)
        ]

    def test_load_setting_from_directory_name_without_summary(self, tmp_path):
        run_dir = tmp_path / "my-model-chat-request_rate8"
        run_dir.mkdir()
        (run_dir / "profile_export.jsonl").write_text("")
        assert "request_rate8" == load_run(run_dir).load_setting
