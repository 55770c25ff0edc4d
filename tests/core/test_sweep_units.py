"""Sweeps, repeats and the search, piece by piece: the flags, the plan, the statistics of
repeats, the search's steps and the summary's CSV (no server, no run)."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import pytest
from aiperf import UsageError
from aiperf._aggregate import aggregate, summarize, t_quantile, t_within, to_csv, unstable_metrics
from aiperf._config import build_config, sweep_points
from aiperf._sweep import Search, point_config, point_name, summary_csv
from aiperf.cli import main


def config(**values: Any) -> Any:
    return build_config({"model": "m", **values})


# -- flags ---------------------------------------------------------------------------------------


class TestCommaLists:
    def test_a_list_sweeps_and_the_field_keeps_the_first(self) -> None:
        c = config(concurrency=[1, 4, 16])
        assert c.concurrency == 1
        assert c.sweep_values == (("concurrency", (1, 4, 16)),)

    def test_one_value_is_no_sweep(self) -> None:
        c = config(concurrency=[8])
        assert (c.concurrency, c.sweep_values) == (8, ())

    def test_a_config_file_string_splits_on_commas(self) -> None:
        c = config(request_rate="5, 10,20")
        assert c.sweep_values == (("request_rate", (5.0, 10.0, 20.0)),)
        assert isinstance(c.request_rate, float)

    def test_isl_and_osl_sweep_under_their_short_names(self) -> None:
        c = config(synthetic_input_tokens_mean=[64, 128], output_tokens_mean=[8, 16])
        assert [name for name, _ in c.sweep_values] == ["isl", "osl"]

    def test_grid_is_every_combination_in_order(self) -> None:
        c = config(concurrency=[1, 4], synthetic_input_tokens_mean=[64, 128])
        assert sweep_points(c) == [
            {"concurrency": 1, "isl": 64},
            {"concurrency": 1, "isl": 128},
            {"concurrency": 4, "isl": 64},
            {"concurrency": 4, "isl": 128},
        ]

    def test_zip_pairs_the_ith_values(self) -> None:
        c = config(concurrency=[1, 4], synthetic_input_tokens_mean=[64, 128], sweep_type="zip")
        assert sweep_points(c) == [{"concurrency": 1, "isl": 64}, {"concurrency": 4, "isl": 128}]

    @pytest.mark.parametrize(
        ("values", "needle"),
        [
            ({"concurrency": [1, 4, 4]}, "--concurrency: 4 is listed twice"),
            ({"concurrency": [1, 0]}, "--concurrency: must be > 0 (got 0)"),
            ({"concurrency": [1, 200000]}, "--concurrency: must be <= 100000 (got 200000)"),
            ({"concurrency": [1, 2.5]}, "--concurrency: expected a whole number or a comma list"),
            ({"request_rate": "5,x"}, "--request-rate: expected a number or a comma list"),
            (
                {"concurrency": [1, 4], "synthetic_input_tokens_mean": [8, 16, 32], "sweep_type": "zip"},
                "--sweep-type zip: the lists must be equally long (--concurrency has 2, --isl has 3 values)",
            ),
            ({"sweep_type": "zip"}, "--sweep-type: only applies to a sweep"),
            ({"sweep_type": "diagonal", "concurrency": [1, 2]}, "--sweep-type: expected one of grid, zip"),
            ({"sweep_cooldown_seconds": 1.0}, "--sweep-cooldown-seconds: only applies to a sweep"),
            ({"confidence_level": 0.9}, "--confidence-level: only applies with --num-profile-runs greater than 1"),
            ({"num_profile_runs": 3, "confidence_level": 1.0}, "--confidence-level: must be > 0 and < 1"),
            ({"profile_run_cooldown_seconds": 2.0}, "--profile-run-cooldown-seconds: only applies with --num-profile-runs"),
            ({"num_profile_runs": 3, "concurrency": [1, 2]}, "--num-profile-runs: repeats one load"),
            ({"search": "max-concurrency"}, "--search: needs --goodput"),
            ({"search": "fastest", "goodput": {"request_latency": 100}}, "--search: expected one of max-concurrency, max-rate"),
            ({"slo_attainment": 0.9}, "--slo-attainment: only applies with --search"),
            (
                {"search": "max-concurrency", "goodput": {"request_latency": 100}, "slo_attainment": 0},
                "--slo-attainment: must be > 0 and <= 1",
            ),
            (
                {"search": "max-concurrency", "goodput": {"request_latency": 100}, "concurrency": [1, 2]},
                "--search: picks the loads itself",
            ),
            (
                {"search": "max-concurrency", "goodput": {"request_latency": 100}, "request_rate": 5.0},
                "--search max-concurrency: drop --request-rate",
            ),
            (
                {"search": "max-concurrency", "goodput": {"request_latency": 100}, "search_resolution": 0.5},
                "--search-resolution: a whole number of requests in flight",
            ),
            (
                {"search": "max-rate", "goodput": {"request_latency": 100}, "request_rate": 8.0, "search_max": 4},
                "--search-max: must be above the load the search starts at, 8",
            ),
        ],
    )
    def test_bad_combinations_are_one_line(self, values: dict[str, Any], needle: str) -> None:
        with pytest.raises(UsageError) as caught:
            config(**values)
        assert needle in str(caught.value)

    def test_cli_lists_and_errors(self, capsys: pytest.CaptureFixture[str]) -> None:
        """On the command line: the list parses, and a bad use is one line, exit 2."""
        code = main(["profile", "-m", "m", "--confidence-level", "0.9"])
        err = capsys.readouterr().err
        assert 2 == code
        assert err.strip().splitlines() == [
            "aiperf: error: --confidence-level: only applies with --num-profile-runs greater than 1"
        ]
        with pytest.raises(SystemExit) as exited:
            main(["profile", "-m", "m", "--concurrency", "1,,x"])
        assert 2 == exited.value.code
        assert "argument --concurrency: invalid int value: 'x'" in capsys.readouterr().err


# -- a point's configuration -----------------------------------------------------------------------


def test_point_names_come_from_the_values() -> None:
    assert point_name({"concurrency": 4}) == "concurrency_4"
    assert point_name({"concurrency": 4, "isl": 128}) == "concurrency_4-isl_128"
    assert point_name({"request_rate": 2.5}) == "request_rate_2.5"
    assert point_name({"request_rate": 10.0}) == "request_rate_10"


def test_a_point_is_a_plain_run_with_its_values(tmp_path: Any) -> None:
    base = config(concurrency=[1, 4], synthetic_input_tokens_mean=[64, 128], random_seed=7,
                  sweep_cooldown_seconds=2.0)  # fmt: skip
    point = point_config(base, {"concurrency": 4, "isl": 128}, tmp_path / "p", {"x": 1})
    assert (point.concurrency, point.synthetic_input_tokens_mean) == (4, 128)
    assert (point.sweep_values, point.sweep_cooldown_seconds, point.random_seed) == ((), 0.0, 7)
    assert point.artifact_dir == tmp_path / "p"
    assert point.plugin_options["x"] == 1


# -- repeats -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "df", "table"),
    # Student's t, two-sided, from the printed tables.
    [(0.95, 1, 12.706), (0.95, 2, 4.303), (0.95, 4, 2.776), (0.95, 9, 2.262), (0.95, 30, 2.042),
     (0.90, 5, 2.015), (0.99, 3, 5.841), (0.99, 10, 3.169), (0.95, 120, 1.980)],
)  # fmt: skip
def test_t_quantile_matches_the_tables(confidence: float, df: int, table: float) -> None:
    assert t_quantile(confidence, df) == pytest.approx(table, abs=0.0005)


def test_t_within_is_a_distribution() -> None:
    for df in (1, 2, 3, 7, 50):
        values = [t_within(t, df) for t in (0.0, 0.5, 1.0, 3.0, 30.0, 1e6)]
        assert values == sorted(values)
        assert values[0] == 0.0 and values[-1] == pytest.approx(1.0, abs=1e-5)


def test_summarize_by_hand() -> None:
    """10, 12, 14: mean 12, s = 2, half-width 4.303 * 2 / sqrt(3)."""
    out = summarize([10.0, 12.0, 14.0], 0.95)
    half = 4.3027 * 2 / math.sqrt(3)
    assert out["mean"] == 12.0 and out["std"] == pytest.approx(2.0)
    assert out["ci_low"] == pytest.approx(12 - half, abs=1e-3)
    assert out["ci_high"] == pytest.approx(12 + half, abs=1e-3)
    assert out["cv"] == pytest.approx(2 / 12)
    assert out["unstable"] is True  # 16.7 % > 10 %


def test_one_trial_has_no_interval() -> None:
    out = summarize([5.0], 0.95)
    assert (out["mean"], out["ci_low"], out["cv"], out["unstable"]) == (5.0, None, None, None)


def test_aggregate_flags_only_what_spreads() -> None:
    trials = [
        {"ttft": {"avg": 100.0, "p99": 150.0}, "request_throughput": {"avg": 10.0}},
        {"ttft": {"avg": 101.0, "p99": 250.0}, "request_throughput": {"avg": 10.2}},
        {"ttft": {"avg": 99.0, "p99": 90.0}, "request_throughput": {"avg": 9.9}},
    ]
    metrics = aggregate(trials, 0.95, {"ttft": ("ms", "TTFT")})
    assert metrics["ttft"]["unit"] == "ms"
    assert metrics["ttft"]["avg"]["values"] == [100.0, 101.0, 99.0]
    assert set(metrics["ttft"]) == {"unit", "header", "avg", "p99"}
    assert unstable_metrics(metrics) == ["ttft.p99"]
    rows = list(csv.reader(io.StringIO(to_csv(metrics))))
    assert rows[0][:4] == ["Metric", "Unit", "Stat", "mean"]
    assert ["ttft", "ms", "p99"] == rows[2][:3] and rows[2][-1] == "yes"


# -- the search ----------------------------------------------------------------------------------


def run_search(search: Search, knee: float) -> list[float]:
    probes = []
    while (load := search.next_load()) is not None:
        probes.append(load)
        search.record(load, load <= knee)
        assert len(probes) < 100
    return probes


@pytest.mark.parametrize("knee", [1, 2, 7, 20, 21, 63, 64, 1000])
def test_search_finds_a_whole_knee_exactly(knee: int) -> None:
    search = Search(start=1, maximum=4096, resolution=1, whole=True)
    probes = run_search(search, knee)
    assert search.passed == knee
    assert len(probes) == len(set(probes))


def test_search_doubles_then_bisects() -> None:
    search = Search(start=1, maximum=4096, resolution=1, whole=True)
    assert run_search(search, 21) == [1, 2, 4, 8, 16, 32, 24, 20, 22, 21]


def test_search_of_a_rate_stops_at_the_resolution() -> None:
    search = Search(start=1.0, maximum=1024.0, resolution=0.5, whole=False)
    run_search(search, 13.3)
    assert search.passed is not None and search.failed is not None
    assert search.passed <= 13.3 < search.failed
    assert search.failed - search.passed <= 0.5


def test_search_stops_at_the_maximum_or_when_the_start_fails() -> None:
    search = Search(start=1, maximum=10, resolution=1, whole=True)
    assert run_search(search, 1000) == [1, 2, 4, 8, 10]
    assert search.passed == 10
    search = Search(start=4, maximum=10, resolution=1, whole=True)
    assert run_search(search, 2) == [4]
    assert search.passed is None


# -- the summary CSV -----------------------------------------------------------------------------


def test_summary_csv_has_a_row_per_point_and_every_statistic() -> None:
    points = [
        {"index": 0, "values": {"concurrency": 1}, "run_dir": "concurrency_1", "status": "ok",
         "metrics": {"ttft": {"avg": 1.5, "p50": 1.25, "p90": 2.0, "p99": 3.0}, "rps": {"avg": 9.0}}},
        {"index": 1, "values": {"concurrency": 4}, "run_dir": "concurrency_4", "status": "failed",
         "metrics": {}},
    ]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(summary_csv(["concurrency"], points, "sweep"))))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert rows[0]["ttft.p90"] == "2.0" and rows[0]["rps.avg"] == "9.0"
    assert rows[1]["status"] == "failed" and rows[1]["ttft.avg"] == ""
