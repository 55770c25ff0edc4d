"""Arrival schedules, client-side cancellation and shared prefixes in real runs against the
mock server: the JSONL's intended times, the server's own counts, inputs.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from aiperf._arrivals import Cancellation, Schedule
from aiperf._tokenizer import load_tokenizer
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "profile_export.jsonl").read_text().splitlines()]


def run(aiperf_cli: Any, url: str, *extra: str) -> Any:
    result = aiperf_cli(
        "profile", "--url", url, "-m", "m", "--streaming", "--isl", "8", "--osl", "4",
        "--random-seed", "9", "--artifact-dir", "run", "--no-progress", *extra,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    return result


def test_cancelled_requests_are_counted_apart_and_the_server_sees_the_close(aiperf_cli, tmp_path) -> None:
    """30 % of 200 requests closed 20 ms after sending, while the server still thinks (its
    first token is due at 200 ms): the count is within binomial tolerance of 30 %, it is the
    seeded draw's count exactly, the mock counted as many client disconnects, their JSONL
    lines say cancelled, and the summary counts them apart from errors and from requests."""
    with MockServer(ttft_ms=200) as server:
        run(aiperf_cli, server.url, "--request-count", "200", "--concurrency", "32",
            "--request-cancellation-rate", "30", "--request-cancellation-delay", "0.02")  # fmt: skip
        stats = server.stats()
    lines = records(tmp_path / "run")
    cancelled = [x for x in lines if x.get("cancelled")]
    n = len(cancelled)
    assert abs(n - 60) <= 4 * math.sqrt(200 * 0.3 * 0.7)
    plan = Cancellation(rate_percent=30.0, delay_s=0.02, seed=9)
    assert sorted(x["request_index"] for x in cancelled) == [i for i in range(200) if plan.delay_for(i) is not None]
    assert n == stats["requests"]["client_disconnects"]
    assert 200 - n == stats["requests"]["ok"]
    assert all(x["error"]["type"] == "request_cancelled" and x["metrics"] == {} for x in cancelled)
    for line in cancelled:
        # Closed at the delay, long before the answer was due.
        assert 15e6 <= line["end_time_ns"] - line["start_time_ns"] < 150e6
    summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
    assert [] == summary["errors"]
    assert 0 == summary["metrics"]["error_request_count"]["avg"]
    assert 200 - n == summary["metrics"]["request_count"]["avg"]
    assert {"cancelled": n, "requests": 200, "requested_percent": 30.0, "delay_s": 0.02} == {
        k: summary["cancellation"][k] for k in ("cancelled", "requests", "requested_percent", "delay_s")
    }


def test_rate_ramp_intended_times_follow_the_ramp_and_warmup_is_left_out(aiperf_cli, tmp_path) -> None:
    """--request-rate 40 reached over 1 s (constant gaps): the measured phase's intended send
    times are the ramp's schedule to the microsecond; the warm-up ramps on its own and is not
    in the summary."""
    with MockServer() as server:
        run(aiperf_cli, server.url, "--request-rate", "40", "--request-rate-mode", "constant",
            "--request-rate-ramp-duration", "1", "--request-count", "60", "--warmup-request-count", "5")  # fmt: skip
    lines = records(tmp_path / "run")
    schedule = Schedule(40.0, 1.0)
    for phase, count in (("warmup", 5), ("profile", 60)):
        intended = sorted(x["intended_start_time_ns"] for x in lines if x["phase"] == phase)
        assert count == len(intended)
        for k, t in enumerate(intended):
            assert abs((t - intended[0]) / 1e9 - schedule.seconds_at(k)) < 1e-6, (phase, k)
    summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
    assert 60 == summary["metrics"]["request_count"]["avg"]


def test_gamma_arrivals_are_burstier_below_smoothness_one(aiperf_cli, tmp_path) -> None:
    """Seeded gamma arrivals (smoothness 0.25, CV 2) against constant ones: the intended gaps'
    coefficient of variation is near 2 (300 gaps), their mean near 1/rate."""
    with MockServer() as server:
        run(aiperf_cli, server.url, "--request-rate", "300", "--request-rate-mode", "gamma",
            "--arrival-smoothness", "0.25", "--request-count", "301", "--concurrency", "64")  # fmt: skip
    intended = sorted(x["intended_start_time_ns"] / 1e9 for x in records(tmp_path / "run"))
    gaps = [b - a for a, b in zip(intended, intended[1:])]
    mean = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean
    assert pytest.approx(1 / 300, rel=0.35) == mean
    assert 1.4 < cv < 2.8


def test_prefixes_reach_the_server_as_k_distinct_n_token_heads(aiperf_cli, tmp_path) -> None:
    """3 prefixes of 40 tokens over 30 prompts: inputs.json, tokenized, shows 3 distinct
    40-token heads and no longer shared part; each request's input is 40 + 8 tokens by
    aiperf's count and by the server's (whitespace words)."""
    with MockServer(record_bodies=True) as server:
        run(aiperf_cli, server.url, "--num-prefix-prompts", "3", "--prefix-prompt-length", "40",
            "--num-prompts", "30", "--request-count", "30", "--concurrency", "4")  # fmt: skip
        traces = server.stats(raw=True)["raw"]["requests"]
    tokenizer = load_tokenizer("builtin")
    inputs = json.loads((tmp_path / "run/inputs.json").read_text())
    texts = [p["messages"][0]["content"] for p in inputs["payloads"]]
    groups: dict[tuple[int, ...], list[list[int]]] = {}
    for text in texts:
        ids = tokenizer.encode(text)
        groups.setdefault(tuple(ids[:40]), []).append(ids)
    assert 3 == len(groups)
    assert all(len({ids[40] for ids in members}) > 1 for members in groups.values())
    assert {48.0} == {x["metrics"]["input_sequence_length"] for x in records(tmp_path / "run")}
    assert {48} == {t["prompt_tokens"] for t in traces}
    heads = {" ".join(t["body"]["messages"][0]["content"].split()[:40]) for t in traces}
    assert 3 == len(heads)


def test_shared_system_prompt_is_the_same_system_message_everywhere(aiperf_cli, tmp_path) -> None:
    """--shared-system-prompt-length 25: every request the server saw starts with the same
    25-word system message; the input length counts it."""
    with MockServer(record_bodies=True) as server:
        run(aiperf_cli, server.url, "--shared-system-prompt-length", "25", "--request-count", "8")
        traces = server.stats(raw=True)["raw"]["requests"]
    systems = {t["body"]["messages"][0]["content"] for t in traces}
    assert 1 == len(systems)
    assert 25 == len(systems.pop().split())
    assert {"system"} == {t["body"]["messages"][0]["role"] for t in traces}
    assert {33} == {t["prompt_tokens"] for t in traces}
