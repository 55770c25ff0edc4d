"""``aiperf analyze-trace``: a trace's shape, as a table and as JSON, in one streaming pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiperf import cli
from aiperf._trace import analyze

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"
TRACE = DATA / "mooncake_custom_trace.jsonl"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["analyze-trace", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_table_of_the_documented_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(TRACE), "--window", "0.1")
    assert 0 == code
    assert f"Trace {TRACE}: 3 requests" in out
    assert "Duration 0.274 s;" in out
    assert "| ISL (tokens)           | 1433.33 | 1200 | 1300 | 1700 | 1790 | 1800 |     3 |" in out
    assert "| OSL (tokens)           | 43.3333 |   26 |   52 |   52 |   52 |   52 |     3 |" in out
    assert "(7 distinct of 10 hash blocks of 512 tokens; block hit ratio 0.100)" in out
    assert out.count("|           0.119 |") == 4


def test_json_figures(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, str(TRACE), "--json", "-", "--cache-block-sizes", "16,1024")
    assert 0 == code
    data = json.loads(out)
    assert (3, 0.274) == (data["requests"], data["duration_s"])
    assert [3] == [w["requests"] for w in data["rate"]["windows"]]  # 1 s windows
    assert (1200, 1800, 1300.0) == (data["isl"]["min"], data["isl"]["max"], data["isl"]["p50"])
    reuse = data["prefix_reuse"]
    assert pytest.approx(0.1) == reuse["block_hit_ratio"]
    # request 2 reuses block 0 (512 tokens): whole 16-token blocks, but no whole 1024-token one
    assert pytest.approx(512 / 4300) == reuse["cache_hit_ratio"]["16"]
    assert 0 == reuse["cache_hit_ratio"]["1024"]
    path = tmp_path / "a.json"
    code, out, _ = run(capsys, str(TRACE), "--json", str(path), "--cache-block-sizes", "16,1024")
    assert 0 == code and "Prefix reuse" in out
    assert data == json.loads(path.read_text())


def test_rate_windows_count_requests() -> None:
    trace = DATA / "precise_schedule.jsonl"
    data = analyze(trace, window_s=1.0)
    assert [3, 2, 2, 1, 1, 1] == [w["requests"] for w in data["rate"]["windows"]]
    assert (3.0, 0.0) == (data["rate"]["peak_req_per_s"], data["rate"]["peak_at_s"])
    assert 0 == data["osl"]["count"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "the file has no requests"),
        ('{"input_length": 10}\n{"input_length": 0}\n', 'line 2: "input_length" must be a positive integer, got 0'),
        ('{"input_length": 10, "hash_ids": [1, 2]}\n', '--isl-block-size) cannot make "input_length" 10'),
        ('{"input_length": 10, "timestamp": "x"}\n', 'line 1: "timestamp" must be a number of milliseconds'),
    ],
)
def test_bad_traces_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    code, _, err = run(capsys, str(path))
    assert 2 == code
    assert 1 == len(err.strip().splitlines())
    assert err.startswith(f"aiperf: error: analyze-trace {path}: ")
    assert needle in err


def test_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert (2, "aiperf: error: --cache-block-sizes: expected numbers > 0 (got '0')\n") == run(capsys, str(TRACE), "--cache-block-sizes", "0")[::2]
    assert 2 == run(capsys, str(TRACE), "--window", "0")[0]
