"""End to end: aiperf profile against the mock server, scraping its /metrics, and against
metrics endpoints that misbehave on purpose."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from sm_server import MetricsServer, counter_body, many_series

pytestmark = pytest.mark.integration

CONCURRENCY = 4
REQUESTS = 80
TOKENS = 20


def profile(
    url: str, run_dir: Path, *extra: str, concurrency: int = CONCURRENCY, count: int = REQUESTS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model",
            "--streaming", "--concurrency", str(concurrency), "--request-count", str(count),
            "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", str(TOKENS),
            "--artifact-dir", str(run_dir), "--no-progress", "--random-seed", "1",
            "--no-gpu-telemetry", "--server-metrics-interval", "0.1", *extra,
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def mock_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=5) as answer:
        return json.loads(answer.read())


def common(export: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in export["series"] if s.get("common") == name)


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    run_dir = tmp_path_factory.mktemp("sm") / "run"
    with MockServer(ttft_ms=50, itl_ms=5, output_tokens=TOKENS) as server:
        done = profile(server.url, run_dir)
        assert 0 == done.returncode, done.stdout + done.stderr
        stats = mock_stats(server.url)
    return run_dir, stats, done.stdout + done.stderr


class TestAgainstTheMock:
    def test_mock_running_requests_match_the_concurrency(self, mock_run) -> None:
        """The server's own running-requests gauge sits at the concurrency during the run."""
        run_dir, _, _ = mock_run
        export = json.loads((run_dir / "server_metrics_export.json").read_text())
        running = common(export, "requests_running")["statistics"]
        assert CONCURRENCY == running["p50"]
        assert CONCURRENCY == running["max"]

    def test_mock_server_ttft_p50_agrees_with_stats(self, mock_run) -> None:
        """The p50 estimated from the TTFT buckets agrees with what /stats measured."""
        run_dir, stats, _ = mock_run
        export = json.loads((run_dir / "server_metrics_export.json").read_text())
        ttft = common(export, "server_ttft")["statistics"]
        truth_ms = stats["ttft_ms"]["p50"]
        # Every TTFT falls in vLLM's (40, 60] ms bucket; linear interpolation inside it can
        # be off by at most half its width from the true median.
        assert 40 < truth_ms <= 60
        assert abs(ttft["p50"] * 1000 - truth_ms) <= 10
        assert REQUESTS == ttft["count"]

    def test_mock_counters_cover_the_measured_phase(self, mock_run) -> None:
        """Token and request counters grew by exactly what the run did: measured from the
        scrape at the phase's start to the one as the sampler stops, nothing interpolated."""
        run_dir, stats, _ = mock_run
        export = json.loads((run_dir / "server_metrics_export.json").read_text())
        tokens = common(export, "generation_tokens_total")["statistics"]
        assert REQUESTS * TOKENS == stats["tokens"]["completion"] == tokens["total"]
        assert REQUESTS == common(export, "requests_finished_total")["statistics"]["total"]
        assert tokens["rate"] > 0

    def test_mock_summary_compares_client_and_server_ttft(self, mock_run) -> None:
        run_dir, _, output = mock_run
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
        compared = summary["server_vs_client"]["server_ttft"]
        client = summary["metrics"]["time_to_first_token"]["p50"]
        assert client == compared["client_p50"]
        assert compared["client_p50"] - compared["server_p50"] == pytest.approx(
            compared["difference_p50"]
        )
        assert "aiperf vs server" in output
        assert "requests_running" in output

    def test_mock_jsonl_holds_every_scrape(self, mock_run) -> None:
        run_dir, _, _ = mock_run
        lines = [json.loads(x) for x in (run_dir / "server_metrics_export.jsonl").open()]
        assert len(lines) >= 5
        assert all(
            'vllm:num_requests_running{model_name="mock-model"}' in x["values"] for x in lines
        )
        assert (run_dir / "server_metrics_export.csv").read_text().startswith("source,name,")


def test_warmup_is_left_out_of_the_counters(tmp_path: Path) -> None:
    """With a warm-up, the server's counters give the measured phase's requests and tokens
    only: a scrape at the phase's start is their baseline, one at its end closes them."""
    warmup = 8
    run_dir = tmp_path / "run"
    with MockServer(ttft_ms=50, itl_ms=5, output_tokens=TOKENS) as server:
        done = profile(server.url, run_dir, "--warmup-request-count", str(warmup))
        assert 0 == done.returncode, done.stdout + done.stderr
        stats = mock_stats(server.url)
    records = [json.loads(x) for x in (run_dir / "profile_export.jsonl").open()]
    measured = [r for r in records if r["phase"] == "profile"]
    assert (warmup, REQUESTS) == (len(records) - len(measured), len(measured))
    completion = sum(r["usage"]["completion_tokens"] for r in measured)
    # The server saw the warm-up too: its counters hold both.
    assert (warmup + REQUESTS) * TOKENS == stats["tokens"]["completion"]
    export = json.loads((run_dir / "server_metrics_export.json").read_text())
    assert completion == common(export, "generation_tokens_total")["statistics"]["total"]
    assert REQUESTS == common(export, "requests_finished_total")["statistics"]["total"]
    assert REQUESTS == common(export, "server_ttft")["statistics"]["count"]
    (endpoint,) = export["endpoints"]
    lines = [json.loads(x) for x in (run_dir / "server_metrics_export.jsonl").open()]
    marks = [(x["wall_ns"], x["mark"]) for x in lines if x["mark"]]
    assert [
        (endpoint["baseline_ns"], "profile_start"),
        (endpoint["final_ns"], "profile_end"),
    ] == marks
    assert any(x["phase"] == "warmup" for x in lines), "scraped during the warm-up as well"


@pytest.mark.parametrize(
    "extra",
    [(), ("--warmup-request-count", "6"), ("--workers", "2")],
    ids=["plain", "warmup", "workers"],
)
def test_a_short_run_against_a_fast_server_counts_every_request(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    """20 requests against a server that answers in about a millisecond: the run is over
    in tens of milliseconds, so a baseline scrape taken once the measured phase has started
    comes after half of them finished (5 of 10 counted, before the core waited for it). The
    baseline is now taken right before the phase's first request, the final one after its
    last: the server counts exactly 20, and its rate, over the phase's duration, is the
    client's request throughput (up to the phase's first connects), not 20 over a window
    that holds the worker processes' start-up."""
    requests = 20
    run_dir = tmp_path / "run"
    with MockServer(output_tokens=TOKENS) as server:
        done = profile(server.url, run_dir, *extra, concurrency=2, count=requests)
        assert 0 == done.returncode, done.stdout + done.stderr
    export = json.loads((run_dir / "server_metrics_export.json").read_text())
    finished = common(export, "requests_finished_total")["statistics"]
    assert requests == finished["total"]
    client = json.loads((run_dir / "profile_export_aiperf.json").read_text())
    throughput = client["metrics"]["request_throughput"]["avg"]
    assert 0.4 * throughput < finished["rate"] <= 1.01 * throughput, (finished, throughput)
    (endpoint,) = export["endpoints"]
    assert endpoint["baseline_ns"] <= export["window"]["start_ns"]
    assert endpoint["final_ns"] >= export["window"]["end_ns"]


def test_server_without_metrics_costs_one_info_line(tmp_path: Path) -> None:
    """A --url whose /metrics is 404: one line, no files, the run unchanged."""
    with MetricsServer({}) as server, MockServer(ttft_ms=5, output_tokens=4) as mock:
        done = profile(mock.url, tmp_path / "run", "--no-server-metrics",
                       "--server-metrics-interval", "0.1")  # fmt: skip
        assert 0 == done.returncode
        # Turned off: the mock's /metrics is never scraped, and no file of ours is written.
        assert (tmp_path / "run" / "profile_export_aiperf.json").exists()
        assert [] == sorted(p.name for p in (tmp_path / "run").glob("server_metrics_export.*"))
        summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
        assert "server_metrics" not in summary and "server_vs_client" not in summary
        url = server.url("")
        done = profile(mock.url, tmp_path / "run2", "--server-metrics", url + "/metrics")
    assert 0 == done.returncode, done.stderr
    output = done.stdout + done.stderr
    assert 1 == output.count("server_metrics_unavailable")
    assert "Traceback" not in output


def test_faults_leave_the_benchmark_alone(tmp_path: Path) -> None:
    """An endpoint down mid-run, one answering in 2 s, a counter reset with a malformed line,
    and a 100,000-series body: every request still completes, each loss is said once."""
    huge = many_series(100_000)

    def down_after_three(n: int) -> bytes | None:
        # A malformed line first, then down for good: two losses, still one line mid-run.
        return counter_body(100.0 * n, extra="broken{ 1\n") if n < 3 else None

    def reset_and_malformed(n: int) -> bytes:
        value = 1000.0 + 10 * n if n < 5 else 10.0 * (n - 5)
        return counter_body(value, extra="this line is not prometheus {\n")

    scripts = {
        "/down": down_after_three,
        "/slow": lambda n: counter_body(n),
        "/reset": reset_and_malformed,
        "/huge": lambda n: huge,
    }
    with (
        MetricsServer(scripts, delay_s={"/slow": 2.0}) as metrics,
        MockServer(ttft_ms=50, itl_ms=5, output_tokens=TOKENS) as mock,
    ):
        done = profile(
            mock.url, tmp_path / "run", "--server-metrics",
            *(metrics.url(p) for p in scripts),
        )  # fmt: skip
        stats = mock_stats(mock.url)
    output = done.stdout + done.stderr
    assert 0 == done.returncode, output
    assert "Traceback" not in output
    summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
    assert REQUESTS == summary["metrics"]["request_latency"]["count"]
    assert stats["ttft_ms"]["p50"] == pytest.approx(
        summary["metrics"]["time_to_first_token"]["p50"], abs=15
    )
    notes = [n for n in summary.get("notes", []) if n.startswith("server-metrics:")]
    assert 1 == len(notes), summary.get("notes")
    note = notes[0]
    assert metrics.url("/down") in note and metrics.url("/slow") in note
    assert "did not parse" in note and "100000 series" in note
    # Every line of the whole output about scraping: one warning for each endpoint that lost
    # something after it had answered (/down, /reset), and the note at the end; nothing per
    # failed scrape, and nothing more per endpoint.
    address = metrics.url("")
    said = [
        line for line in output.splitlines()
        if "server_metrics" in line or "server-metrics" in line or address in line
    ]  # fmt: skip
    assert 3 == len(said), "\n".join(said)
    assert 1 == sum(line.startswith("note: server-metrics:") for line in said), said
    for path in scripts:
        mid_run = [x for x in said if metrics.url(path) in x and "note:" not in x]
        assert len(mid_run) <= 1, mid_run
    export = json.loads((tmp_path / "run" / "server_metrics_export.json").read_text())
    reset = next(
        s for s in export["series"]
        if s["source"] == metrics.url("/reset") and s.get("common") == "generation_tokens_total"
    )  # fmt: skip
    assert reset["statistics"]["resets"] == 1
    assert reset["statistics"]["total"] > 0
