"""``aiperf compare`` as a user runs it, on run and sweep directories written from synthetic
samples: the table, ``--json``, ``--fail-if``, several runs, sweeps, and one line for every
bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support.compare_runs import compare, one_error_line, synthetic_metrics, write_run, write_sweep

N = 120


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """base and same: the same server; slow: TTFT 55 instead of 50 ms; fast_itl: ITL 1.5
    instead of 2 ms; small: 20 requests."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(42)
    return {
        "base": write_run(root / "base", synthetic_metrics(rng, N), failed=5, warmup=3),
        "same": write_run(root / "same", synthetic_metrics(rng, N)),
        "slow": write_run(root / "slow", synthetic_metrics(rng, N, ttft_ms=55.0)),
        "fast_itl": write_run(root / "fast_itl", synthetic_metrics(rng, N, itl_ms=1.5)),
        "small": write_run(root / "small", synthetic_metrics(rng, 20)),
    }


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _rows(report: dict, index: int = 0) -> dict[tuple[str, str], dict]:
    return {(r["metric"], r["stat"]): r for r in report["comparisons"][index]["rows"]}


def test_same_server_no_difference_anywhere(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(str(runs["base"]), str(runs["same"]), "--json", str(out))
    assert 0 == proc.returncode, proc.stderr
    report = _json(out)
    rows = _rows(report)
    assert {r["verdict"] for r in rows.values()} == {"no difference"}
    # Every per-request scalar metric but the client's own send time, at avg/p50/p90; p99
    # needs 500 requests.
    assert len(rows) == 24
    assert not any(metric == "request_send_time" for metric, _ in rows)
    assert "p99 not compared for 8 metrics: needs at least 500 requests in each run (120 here)" in proc.stdout
    # Warm-up and failed requests (with absurd values) were left out.
    base = report["comparisons"][0]["baseline"]
    assert base["requests"] == N
    ttft = rows[("time_to_first_token", "avg")]
    assert ttft["baseline"] < 60
    assert "no difference" in proc.stdout and "Time to First Token (ms)" in proc.stdout


def test_requests_are_taken_in_the_order_they_started(tmp_path: Path) -> None:
    """The lines of profile_export.jsonl are in the order requests finished; the resampling
    blocks follow the order they started, so the line order changes nothing."""
    rng = np.random.default_rng(5)
    a, b = synthetic_metrics(rng, 100), synthetic_metrics(rng, 100, ttft_ms=51.0)
    reports = []
    for shuffle in (None, 1):
        base = write_run(tmp_path / f"a{shuffle}", a, shuffle=shuffle)
        run = write_run(tmp_path / f"b{shuffle}", b, concurrency=2, shuffle=shuffle)
        out = tmp_path / f"c{shuffle}.json"
        proc = compare(str(base), str(run), "--json", str(out))
        assert 0 == proc.returncode, proc.stderr
        reports.append(_json(out)["comparisons"][0])
    # About 4 and 2 requests in flight: blocks of twice that.
    assert (reports[0]["baseline"]["block"], reports[0]["run"]["block"]) == (8, 4)
    assert reports[0]["rows"] == reports[1]["rows"]


def test_client_metrics_when_named(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(str(runs["base"]), str(runs["same"]), "--json", str(out),
                   "--metrics", "request_send_time", "--stats", "p50")  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    assert list(_rows(_json(out))) == [("request_send_time", "p50")]


def test_slower_ttft_is_found_and_gates_exit_1(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(
        str(runs["base"]), str(runs["slow"]), "--json", str(out),
        "--fail-if", "time_to_first_token.p50>+5%", "--fail-if", "inter_token_latency.avg>+5%",
    )  # fmt: skip
    assert 1 == proc.returncode, proc.stderr
    report = _json(out)
    row = _rows(report)[("time_to_first_token", "p50")]
    assert row["verdict"] == "slower"
    assert row["low_pct"] > 5 and row["difference_pct"] > 7
    gates = {g["expression"]: g for g in report["fail_if"]}
    assert gates["time_to_first_token.p50>+5%"]["violated"] is True
    assert gates["inter_token_latency.avg>+5%"]["violated"] is False
    assert report["exit_code"] == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("fail-if time_to_first_token.p50>+5%: VIOLATED by ") for line in lines)
    assert "fail-if inter_token_latency.avg>+5%: ok" in lines


@pytest.mark.parametrize(
    ("gate", "code"),
    [
        ("time_to_first_token.p50>+20%", 0),  # slower, but not by 20 %
        ("time_to_first_token.p50>5%", 1),  # the + is optional
        ("time_to_first_token.avg>+3ms", 1),  # a bound in the metric's unit
        ("time_to_first_token.avg>+8ms", 0),
        ("time_to_first_token.p50<-5%", 0),  # it did not get faster
    ],
)
def test_fail_if_bounds(runs: dict[str, Path], gate: str, code: int) -> None:
    proc = compare(str(runs["base"]), str(runs["slow"]), "--fail-if", gate)
    assert code == proc.returncode, proc.stdout + proc.stderr


def test_fail_if_on_a_decrease_and_throughput_faster(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(str(runs["base"]), str(runs["fast_itl"]), "--json", str(out),
                   "--fail-if", "inter_token_latency.p50<-10%")  # fmt: skip
    assert 1 == proc.returncode, proc.stderr
    rows = _rows(_json(out))
    assert rows[("inter_token_latency", "p50")]["verdict"] == "faster"
    # Per-user throughput went up: for a rate, higher is faster.
    assert rows[("output_token_throughput_per_user", "p50")]["verdict"] == "faster"
    assert rows[("output_token_throughput_per_user", "p50")]["difference"] > 0


def test_no_difference_is_never_a_violation(runs: dict[str, Path]) -> None:
    """A bound of 0 fails only on a difference the data show."""
    proc = compare(str(runs["base"]), str(runs["same"]), "--fail-if", "time_to_first_token.p50>0%",
                   "--fail-if", "request_latency.avg>0ms")  # fmt: skip
    assert 0 == proc.returncode, proc.stdout


def test_several_runs_are_each_compared_with_the_first(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(str(runs["base"]), str(runs["same"]), str(runs["slow"]), "--json", str(out),
                   "--stats", "p50", "--metrics", "time_to_first_token,request_latency")  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    report = _json(out)
    assert [(c["baseline"]["ref"], c["run"]["ref"]) for c in report["comparisons"]] == [
        (str(runs["base"]), str(runs["same"])), (str(runs["base"]), str(runs["slow"])),
    ]  # fmt: skip
    assert [r["verdict"] for r in report["comparisons"][0]["rows"]] == ["no difference"] * 2
    assert [r["verdict"] for r in report["comparisons"][1]["rows"]] == ["slower"] * 2
    assert proc.stdout.count("vs baseline") == 2


def test_json_matches_the_table(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    proc = compare(str(runs["base"]), str(runs["slow"]), "--json", str(out), "--stats", "avg",
                   "--metrics", "time_to_first_token", "--seed", "3")  # fmt: skip
    report = _json(out)
    assert (report["schema_version"], report["seed"], report["confidence"], report["resamples"]) == (1, 3, 0.99, 2000)
    row = report["comparisons"][0]["rows"][0]
    shown = f"{row['baseline']:.4g}"
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| Time to First Token (ms)"))
    assert shown in line and "slower" in line
    assert f"[+{row['low_pct']:.2f} %, +{row['high_pct']:.2f} %]" in line
    # Reproducible: the same seed gives the same file.
    again = tmp_path / "again.json"
    compare(str(runs["base"]), str(runs["slow"]), "--json", str(again), "--stats", "avg",
            "--metrics", "time_to_first_token", "--seed", "3")  # fmt: skip
    assert out.read_text() == again.read_text()


def test_p99_with_enough_requests(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    base = write_run(tmp_path / "a", synthetic_metrics(rng, 600))
    slow = write_run(tmp_path / "b", synthetic_metrics(rng, 600, ttft_ms=60.0))
    proc = compare(str(base), str(slow), "--fail-if", "time_to_first_token.p99>+5%",
                   "--json", str(tmp_path / "c.json"))  # fmt: skip
    assert 1 == proc.returncode, proc.stderr
    row = _rows(_json(tmp_path / "c.json"))[("time_to_first_token", "p99")]
    assert row["verdict"] == "slower"
    proc = compare(str(base), str(slow), "--fail-if", "time_to_first_token.p99>+50%")
    assert 0 == proc.returncode, proc.stderr


# -- sweeps ----------------------------------------------------------------------------------


def test_sweeps_are_compared_point_by_point(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    made = {}
    for name, ttft in (("a", 50.0), ("b", 55.0)):
        for c in (1, 4, 8):
            made[name, c] = write_run(tmp_path / "src" / f"{name}{c}", synthetic_metrics(rng, 100, ttft_ms=ttft))
    a = write_sweep(tmp_path / "sweep_a", [({"concurrency": c}, made["a", c], "ok") for c in (1, 4, 8)])
    b = write_sweep(tmp_path / "sweep_b", [
        ({"concurrency": 4}, made["b", 4], "ok"),  # another order: matched by values
        ({"concurrency": 1}, made["b", 1], "ok"),
        ({"concurrency": 8}, None, "failed"),
        ({"concurrency": 16}, made["b", 8], "ok"),
    ])  # fmt: skip
    out = tmp_path / "c.json"
    proc = compare(str(a), str(b), "--json", str(out), "--stats", "p50",
                   "--fail-if", "time_to_first_token.p50>+5%")  # fmt: skip
    assert 1 == proc.returncode, proc.stderr
    report = _json(out)
    assert [c["point"] for c in report["comparisons"]] == [{"concurrency": 1}, {"concurrency": 4}]
    for comparison in report["comparisons"]:
        rows = {r["metric"]: r for r in comparison["rows"]}
        assert rows["time_to_first_token"]["verdict"] == "slower"
        assert rows["inter_token_latency"]["verdict"] == "no difference"
    assert comparison["run"]["ref"] == f"{b}/concurrency_4"
    assert report["not_compared"] == [
        f"point concurrency=8: failed in {b}",
        f"point concurrency=16: not in the baseline {a}",
    ]
    assert len(report["fail_if"][0]["violations"]) == 2
    assert "(point concurrency=4)" in proc.stdout


def test_sweep_against_a_run_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path / "s", [({"concurrency": 4}, runs["same"], "ok")])
    line = one_error_line(compare(str(runs["base"]), str(sweep)))
    assert line == (
        f"aiperf: error: {sweep} is a sweep directory but the baseline {runs['base']} is a run "
        "directory; compare runs with runs and sweeps with sweeps"
    )


def test_sweeps_without_a_common_point(runs: dict[str, Path], tmp_path: Path) -> None:
    a = write_sweep(tmp_path / "a", [({"concurrency": 1}, runs["base"], "ok")])
    b = write_sweep(tmp_path / "b", [({"concurrency": 2}, runs["same"], "ok")])
    proc = compare(str(a), str(b))
    assert 2 == proc.returncode
    assert "no sweep point could be compared" in one_error_line(proc)


# -- bad input -------------------------------------------------------------------------------


def _bad(runs: dict[str, Path], tmp_path: Path, case: str) -> list[str]:
    base, same = str(runs["base"]), str(runs["same"])
    not_run = tmp_path / "empty"
    not_run.mkdir(exist_ok=True)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bad_jsonl = tmp_path / "bad"
    bad_jsonl.mkdir(exist_ok=True)
    (bad_jsonl / "profile_export.jsonl").write_text('{"phase": "profile"}\n{not json\n')
    bad_sweep = tmp_path / "bad_sweep"
    bad_sweep.mkdir(exist_ok=True)
    (bad_sweep / "sweep_summary.json").write_text('{"kind": "other"}')
    return {
        "missing": [base, str(tmp_path / "nope")],
        "not a run": [base, str(not_run)],
        "a file": [base, str(a_file)],
        "bad jsonl": [str(bad_jsonl), base],
        "bad sweep": [str(bad_sweep), str(bad_sweep)],
        "one run": [base],
        "syntax": [base, same, "--fail-if", "ttft p99 > 5"],
        "unknown metric": [base, same, "--fail-if", "time_to_first_tokn.p99>+5%"],
        "run metric": [base, same, "--fail-if", "request_throughput.avg<-5%"],
        "unknown stat": [base, same, "--fail-if", "time_to_first_token.max>+5%"],
        "wrong unit": [base, same, "--fail-if", "time_to_first_token.p50>+5s"],
        "sign": [base, same, "--fail-if", "time_to_first_token.p50>-5%"],
        "too few for p99": [base, same, "--fail-if", "time_to_first_token.p99>+5%"],
        "--metrics": [base, same, "--metrics", "time_to_first_token,nope"],
        "--stats": [base, same, "--stats", "avg,mean"],
        "--confidence": [base, same, "--confidence", "1.5"],
        "--resamples": [base, same, "--resamples", "10"],
        "--json dir": [base, same, "--json", str(tmp_path / "no" / "such" / "dir" / "c.json")],
    }[case]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "nope: no such directory"),
        ("not a run", "empty: not an aiperf run directory (no profile_export.jsonl) nor a sweep directory (no sweep_summary.json)"),
        ("a file", "file.txt: not a directory (give the run directory)"),
        ("bad jsonl", "bad/profile_export.jsonl: line 2 is not JSON"),
        ("bad sweep", 'bad_sweep/sweep_summary.json: not a sweep summary (expected "kind": "sweep" and "points")'),
        ("one run", "give at least two runs: the baseline first, then the runs to compare"),
        ("syntax", "--fail-if 'ttft p99 > 5': expected METRIC.STAT>BOUND or METRIC.STAT<BOUND"),
        ("unknown metric", "--fail-if 'time_to_first_tokn.p99>+5%': unknown metric 'time_to_first_tokn'; per-request metrics are time_to_first_token, "),
        ("run metric", "--fail-if 'request_throughput.avg<-5%': request_throughput is not compared"),
        ("unknown stat", "--fail-if 'time_to_first_token.max>+5%': unknown statistic 'max'"),
        ("wrong unit", "--fail-if 'time_to_first_token.p50>+5s': the bound's unit must be '%' or 'ms' (got 's')"),
        ("sign", "--fail-if 'time_to_first_token.p50>-5%': '>' takes an increase"),
        ("too few for p99", "--fail-if time_to_first_token.p99: p99 needs at least 500 requests with the metric in each run; 120 here"),
        ("--metrics", "--metrics: unknown metric 'nope'"),
        ("--stats", "--stats: unknown statistic 'mean'"),
        ("--confidence", "--confidence: must be at least 0.5 and below 1 (got 1.5)"),
        ("--resamples", "--resamples: must be between 200 and 1000000 (got 10)"),
        ("--json dir", "c.json: no directory "),
    ],
)
def test_bad_input_is_one_line_exit_2(runs: dict[str, Path], tmp_path: Path, case: str, expected: str) -> None:
    proc = compare(*_bad(runs, tmp_path, case))
    line = one_error_line(proc)
    assert 2 == proc.returncode, proc.stderr
    assert line.startswith("aiperf: error: ")
    assert expected in line


def test_an_mlflow_id_without_the_mlflow_plugin(runs: dict[str, Path]) -> None:
    proc = compare(str(runs["base"]), "mlflow:0123456789abcdef0123456789abcdef",
                   env={"AIPERF_DISABLE_PLUGINS": "mlflow"})  # fmt: skip
    assert 2 == proc.returncode
    assert one_error_line(proc) == (
        "aiperf: error: mlflow:0123456789abcdef0123456789abcdef: no such directory; to compare "
        'MLflow runs install aiperf-mlflow: pip install "aiperf[mlflow]"'
    )


def test_plot_without_the_plot_plugin(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = compare(str(runs["base"]), str(runs["same"]), "--plot", str(tmp_path / "f.png"),
                   env={"AIPERF_DISABLE_PLUGINS": "plot"})  # fmt: skip
    assert 1 == proc.returncode
    assert one_error_line(proc) == (
        "Plotting requires the 'aiperf-plot' plugin. Install with: pip install \"aiperf[plot]\""
    )
    assert not (tmp_path / "f.png").exists()
