"""Input files and traces replayed against the mock server, checked against what it saw.

The mock records, per request, when its first byte arrived (kernel time), its prompt length
in words (one token each in the builtin tokenizer) and the prompt tokens a prefix cache would
already hold. So: a trace's shared ``hash_ids`` arrive as shared prefixes and unrelated ones
do not; requests arrive in file order; and the lag aiperf exports is the lag the server saw.
No assertion here is about how small the lag is (that is the replay bench's figure).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiperf.testing import MockServer

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
#: a guard against a hang, never a measurement.
GUARD_S = 240
QUIET = ("--no-progress", "--no-gpu-telemetry", "--no-server-metrics", "--random-seed", "3")


def profile(url: str, run_dir: Path, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    process = subprocess.run(
        [sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model",
         "--artifact-dir", str(run_dir), *QUIET, *args],
        capture_output=True, text=True, timeout=GUARD_S, check=False,
    )  # fmt: skip
    assert 0 == process.returncode, process.stdout + process.stderr
    summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
    lines = (run_dir / "profile_export.jsonl").read_text().splitlines()
    records = sorted((json.loads(line) for line in lines if line.strip()), key=lambda r: r["request_index"])
    return summary, records


def seen(server: MockServer) -> list[dict[str, Any]]:
    """The server's requests in the order their first bytes arrived (the kernel's stamps; its
    request ids follow the order it read the sockets in)."""
    return sorted(server.stats(raw=True)["raw"]["requests"], key=lambda r: (r["received_at"], r["id"]))


class TestMooncakePrefixes:
    def test_shared_hash_ids_arrive_as_shared_prefixes(self, tmp_path: Path) -> None:
        """The documented custom_trace.jsonl: request 2 starts with hash 0, which request 1 sent
        first: its first 512 tokens are cached. Request 3 starts with hash 1, seen only after
        hash 0: nothing of it is a prefix the server has seen."""
        with MockServer(prefix_block_size=16) as server:
            summary, records = profile(server.url, tmp_path / "run", "--input-file", str(DATA / "mooncake_custom_trace.jsonl"))
            requests = seen(server)
        assert [1200, 1800, 1300] == [r["prompt_tokens"] for r in requests]
        assert [0, 512, 0] == [r["prefix_cached_tokens"] for r in requests]
        assert [52, 26, 52] == [r["completion_tokens"] for r in requests]
        assert [1200, 1800, 1300] == [r["metrics"]["input_sequence_length"] for r in records]
        assert "fixed_schedule" == summary["load_setting"]

    def test_unrelated_hash_ids_share_nothing(self, tmp_path: Path) -> None:
        trace = tmp_path / "t.jsonl"
        trace.write_text("".join(
            json.dumps({"timestamp": i * 5, "input_length": 64, "output_length": 2, "hash_ids": [10 * i, 10 * i + 1]}) + "\n"
            for i in range(6)
        ))  # fmt: skip
        with MockServer(prefix_block_size=16) as server:
            profile(server.url, tmp_path / "run", "--input-file", str(trace), "--isl-block-size", "32")
            requests = seen(server)
        assert [64] * 6 == [r["prompt_tokens"] for r in requests]
        assert [0] * 6 == [r["prefix_cached_tokens"] for r in requests]


class TestSingleTurn:
    def test_documented_prompts_in_order_with_their_lengths(self, tmp_path: Path) -> None:
        texts = [json.loads(line)["text"] for line in (DATA / "single_turn_osl.jsonl").read_text().splitlines()]
        with MockServer() as server:
            _, records = profile(
                server.url, tmp_path / "run", "--input-file", str(DATA / "single_turn_osl.jsonl"),
                "--request-count", "4", "--osl", "200",
            )  # fmt: skip
            requests = seen(server)
        assert [len(t.split()) for t in texts] == [r["prompt_tokens"] for r in requests]
        assert [50, 500, 10, 200] == [r["completion_tokens"] for r in requests]
        assert 4 == len(records)


def trace_lines(n: int, seed: int = 5) -> list[dict[str, Any]]:
    """``n`` requests over about 3 s, with bursts of equal timestamps, distinctive lengths."""
    rng = random.Random(seed)
    lines, t = [], 0
    for i in range(n):
        t += rng.choice((0, 0, 1, 5, 10, 20))
        lines.append({"timestamp": t, "input_length": 33 + (i * 7) % 16, "output_length": 3, "hash_ids": [i % 5, 1000 + i, 2000 + i]})
    return lines


def test_replay_of_300_lines_in_order_with_the_lag_the_server_saw(tmp_path: Path) -> None:
    """300 requests at their recorded times: the server received them in file order, and the
    lag aiperf exports (first byte sent minus scheduled time) matches the server's arrival
    times minus the scheduled times."""
    lines = trace_lines(300)
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with MockServer() as server:
        summary, records = profile(
            server.url, tmp_path / "run", "--input-file", str(trace), "--isl-block-size", "16",
            "--streaming",
        )  # fmt: skip
        requests = seen(server)
    assert 300 == len(records) == len(requests)
    assert all(r["error"] is None for r in records)
    # file order, on aiperf's clock and at the server (the lengths identify the lines)
    assert [line["input_length"] for line in lines] == [r["prompt_tokens"] for r in requests]
    starts = [r["start_time_ns"] for r in records]
    assert starts == sorted(starts)
    section = summary["fixed_schedule"]
    assert section["order_preserved"] and 300 == section["requests"]
    # the schedule is the file's, on one clock
    intended = [r["intended_start_time_ns"] for r in records]
    scheduled = [(ns - intended[0]) / 1e6 for ns in intended]
    assert np.allclose(scheduled, [line["timestamp"] - lines[0]["timestamp"] for line in lines], atol=0.01)
    # the exported lag is the lag the server saw
    exported = np.array([r["send_lag_ms"] for r in records])
    at_server = np.array([r["received_at"] * 1e3 - ns / 1e6 for r, ns in zip(requests, intended)])
    # (the server stamps arrival in the kernel, aiperf just before its write: microseconds
    # apart, unless the machine preempts aiperf between the two)
    gap = at_server - exported
    assert abs(float(np.median(gap))) < 0.5, gap
    for stat, tolerance in (("p50", 1.0), ("p99", 1.0), ("max", 5.0)):
        mine = section["lag_ms"][stat]
        theirs = float(np.percentile(at_server, int(stat[1:]))) if stat != "max" else float(at_server.max())
        assert abs(mine - theirs) < tolerance, (stat, mine, theirs)
    assert pytest.approx(float(np.percentile(exported, 99)), abs=1e-6) == section["lag_ms"]["p99"]
    assert pytest.approx(summary["client"]["send_lag"]["p99"], abs=1e-3) == section["lag_ms"]["p99"]
