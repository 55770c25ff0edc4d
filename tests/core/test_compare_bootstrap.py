"""The statistics of ``aiperf compare`` on synthetic per-request samples: how often two samples
of the same distribution are called different (the intervals' promise), that a real change is
found, and the rules for percentiles near the extremes."""

from __future__ import annotations

import numpy as np
import pytest
from aiperf import _bootstrap
from aiperf._bootstrap import check_stat, compare_samples, min_requests
from support.compare_runs import synthetic_metrics

STATS = ("avg", "p50", "p90")
TRIALS = 40
REQUESTS = 200


def _plan(metrics: dict[str, np.ndarray], stats: tuple[str, ...] = STATS) -> list[tuple[str, tuple[str, ...]]]:
    return [(m, stats) for m in metrics]


def _flagged(family: _bootstrap.Family) -> list[tuple[str, str]]:
    return [(e.metric, e.stat) for e in family.estimates if e.low > 0 or e.high < 0]


@pytest.mark.parametrize("block", [1, 8])
def test_same_distribution_no_difference_in_every_row_in_95_percent_of_40_trials(block: int) -> None:
    """Two runs of the same server, 40 times: in at least 38 of them every one of the 27 rows
    (9 metrics, avg/p50/p90) says no difference; requests resampled one by one, and in blocks
    of 8 as for a run at concurrency 4."""
    clean = 0
    flagged_rows = []
    for trial in range(TRIALS):
        rng = np.random.default_rng(10_000 + trial)
        a, b = synthetic_metrics(rng, REQUESTS), synthetic_metrics(rng, REQUESTS)
        family = compare_samples(a, b, _plan(a), seed=trial, blocks=(block, block))
        assert len(family.estimates) == 27
        flagged = _flagged(family)
        flagged_rows += flagged
        clean += not flagged
    assert clean >= 38, flagged_rows


def test_rows_taken_one_by_one_would_not_keep_that_promise() -> None:
    """The same trials with each row's own interval at 95 %, as if alone: false differences
    show up in many trials. This is why a table's intervals are taken together."""
    trials_with_a_false_difference = 0
    for trial in range(TRIALS):
        rng = np.random.default_rng(10_000 + trial)
        a, b = synthetic_metrics(rng, REQUESTS), synthetic_metrics(rng, REQUESTS)
        found = False
        for metric in a:
            for stat in STATS:
                family = compare_samples(a, b, [(metric, (stat,))], seed=trial, resamples=500,
                                         confidence=0.95)  # fmt: skip
                found = found or bool(_flagged(family))
        trials_with_a_false_difference += found
    assert trials_with_a_false_difference >= 8


def test_a_single_row_is_called_different_about_as_often_as_its_level_allows() -> None:
    """One row at 80 %: two samples of the same distribution differ in roughly 20 % of trials
    (the interval is neither too narrow nor uselessly wide)."""
    rejected = 0
    trials = 200
    for trial in range(trials):
        rng = np.random.default_rng(20_000 + trial)
        a = {"time_to_first_token": 50 + rng.gamma(2.0, 1.2, 100)}
        b = {"time_to_first_token": 50 + rng.gamma(2.0, 1.2, 100)}
        family = compare_samples(a, b, [("time_to_first_token", ("avg",))], seed=trial,
                                 resamples=1000, confidence=0.8)  # fmt: skip
        rejected += bool(_flagged(family))
    assert 0.12 * trials <= rejected <= 0.30 * trials


@pytest.mark.parametrize("seed", range(5))
def test_ttft_50_vs_55_ms_is_found_on_p50(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = synthetic_metrics(rng, 100, ttft_ms=50.0)
    b = synthetic_metrics(rng, 100, ttft_ms=55.0)
    family = compare_samples(a, b, _plan(a), seed=seed)
    row = next(e for e in family.estimates if (e.metric, e.stat) == ("time_to_first_token", "p50"))
    assert row.low > 0
    assert 0.07 < row.relative < 0.13
    assert row.relative_low > 0.05
    # ITL did not change, and is not called different.
    itl = next(e for e in family.estimates if (e.metric, e.stat) == ("inter_token_latency", "p50"))
    assert itl.low <= 0 <= itl.high


def test_the_same_seed_gives_the_same_intervals_another_seed_others() -> None:
    rng = np.random.default_rng(1)
    a, b = synthetic_metrics(rng, 150), synthetic_metrics(rng, 150)
    first = compare_samples(a, b, _plan(a), seed=7)
    again = compare_samples(a, b, _plan(a), seed=7)
    other = compare_samples(a, b, _plan(a), seed=8)
    assert first == again
    assert [e.difference for e in first.estimates] == [e.difference for e in other.estimates]
    assert [e.low for e in first.estimates] != [e.low for e in other.estimates]


def test_memory_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    a, b = synthetic_metrics(rng, 120), synthetic_metrics(rng, 130)
    whole = compare_samples(a, b, _plan(a), seed=3, resamples=500)
    monkeypatch.setattr(_bootstrap, "CHUNK_VALUES", 1000)  # 8 resamples at a time
    chunked = compare_samples(a, b, _plan(a), seed=3, resamples=500)
    assert whole == chunked


def test_point_estimates_are_the_summary_statistics() -> None:
    rng = np.random.default_rng(3)
    a, b = synthetic_metrics(rng, 101), synthetic_metrics(rng, 99)
    family = compare_samples(a, b, [("request_latency", ("avg", "p50", "p90", "p99.9"))],
                             resamples=200)  # fmt: skip
    by_stat = {e.stat: e for e in family.estimates}
    assert by_stat["avg"].baseline == pytest.approx(a["request_latency"].mean())
    assert by_stat["p90"].run == pytest.approx(np.percentile(b["request_latency"], 90))
    assert by_stat["p99.9"].baseline == pytest.approx(np.percentile(a["request_latency"], 99.9))
    assert by_stat["p50"].difference == pytest.approx(
        np.median(b["request_latency"]) - np.median(a["request_latency"])
    )


def test_constant_metrics_equal_and_unequal() -> None:
    a = {"output_sequence_length": np.full(50, 8.0), "input_sequence_length": np.full(50, 16.0)}
    b = {"output_sequence_length": np.full(60, 16.0), "input_sequence_length": np.full(60, 16.0)}
    family = compare_samples(a, b, _plan(a, ("avg", "p50")), resamples=200)
    rows = {(e.metric, e.stat): e for e in family.estimates}
    osl = rows[("output_sequence_length", "avg")]
    assert (osl.difference, osl.low, osl.high, osl.relative) == (8.0, 8.0, 8.0, 1.0)
    isl = rows[("input_sequence_length", "p50")]
    assert (isl.low, isl.high) == (0.0, 0.0)


def test_missing_values_are_left_out_not_counted_as_zero() -> None:
    """A metric some requests lack (NaN in the column) is compared over those that have it."""
    rng = np.random.default_rng(4)
    a = synthetic_metrics(rng, 200)
    b = {k: v.copy() for k, v in synthetic_metrics(rng, 200).items()}
    b["time_to_second_token"][::2] = np.nan
    family = compare_samples(a, b, _plan(a), seed=1)
    row = next(e for e in family.estimates if (e.metric, e.stat) == ("time_to_second_token", "avg"))
    assert row.run == pytest.approx(np.nanmean(b["time_to_second_token"]))
    assert row.low <= 0 <= row.high


def test_one_wild_metric_does_not_widen_the_others() -> None:
    """A mean pulled about by one huge outlier has a wide interval of its own; TTFT's interval
    stays what it is without it."""
    rng = np.random.default_rng(5)
    a, b = synthetic_metrics(rng, 200), synthetic_metrics(rng, 200)
    calm = {k: a[k] for k in ("time_to_first_token", "request_latency")}
    calm_b = {k: b[k] for k in calm}
    wild_a = {**calm, "request_send_time": a["request_send_time"].copy()}
    wild_b = {**calm_b, "request_send_time": b["request_send_time"].copy()}
    wild_a["request_send_time"][3] = 150.0
    without = compare_samples(calm, calm_b, _plan(calm), seed=1)
    with_wild = compare_samples(wild_a, wild_b, _plan(wild_a), seed=1)

    def width(family: _bootstrap.Family, metric: str, stat: str) -> float:
        e = next(e for e in family.estimates if (e.metric, e.stat) == (metric, stat))
        return e.high - e.low

    assert width(with_wild, "time_to_first_token", "p50") < 1.3 * width(without, "time_to_first_token", "p50")
    assert width(with_wild, "request_send_time", "avg") > 10 * width(with_wild, "request_send_time", "p50")


def _correlated(rng: np.random.Generator, n: int, rho: float = 0.6) -> np.ndarray:
    """TTFTs where each request shares part of its delay with the one before (a busy spell
    slows the requests in flight together)."""
    shocks = rng.gamma(2.0, 1.2, n)
    out = np.empty(n)
    out[0] = shocks[0]
    for i in range(1, n):
        out[i] = rho * out[i - 1] + shocks[i]
    return 50.0 + (1 - rho) * out


def test_blocks_of_consecutive_requests_keep_the_promise_when_neighbours_share_delays() -> None:
    """Resampled one by one, requests that share their delays look like more evidence than
    they are: two runs of the same server are called different far too often. Resampled in
    blocks, about as often as the level allows."""
    called_different = {1: 0, 8: 0}
    trials = 60
    for trial in range(trials):
        rng = np.random.default_rng(30_000 + trial)
        a = {"time_to_first_token": _correlated(rng, 200)}
        b = {"time_to_first_token": _correlated(rng, 200)}
        for block in called_different:
            family = compare_samples(a, b, [("time_to_first_token", ("avg", "p50"))], seed=trial,
                                     resamples=1000, confidence=0.95, blocks=(block, block))  # fmt: skip
            called_different[block] += bool(_flagged(family))
    assert called_different[1] >= 0.2 * trials
    assert called_different[8] <= 0.15 * trials


@pytest.mark.parametrize(
    ("stat", "needed"), [("avg", 2), ("p50", 10), ("p90", 50), ("p95", 100), ("p99", 500), ("p1", 500), ("p99.9", 5000)]
)
def test_requests_needed_per_statistic(stat: str, needed: int) -> None:
    assert min_requests(stat) == needed


@pytest.mark.parametrize("stat", ["avg", "p50", "p99", "p99.9", "p1", "p0.5"])
def test_known_statistics(stat: str) -> None:
    assert check_stat(stat) is None


@pytest.mark.parametrize("stat", ["mean", "p100", "p0", "p", "max", "p50x", "P50"])
def test_unknown_statistics(stat: str) -> None:
    assert check_stat(stat) is not None
