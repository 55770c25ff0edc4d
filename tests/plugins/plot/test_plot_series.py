"""Binned series: tokens are conserved, in-flight means are exact."""

from __future__ import annotations

import numpy as np
import pytest
from aiperf_plot.rundir import Request, load_run
from aiperf_plot.series import (
    bin_edges,
    ecdf,
    output_tokens_per_s,
    requests_in_flight,
    run_span_s,
    token_arrivals,
)

S = 1_000_000_000


def _request(start_s: float, end_s: float, **metrics: object) -> Request:
    return Request(start_ns=int(start_s * S), end_ns=int(end_s * S), ok=True, metrics=metrics)


class TestBins:
    """1 s bins."""

    @pytest.mark.parametrize(
        ("end", "edges"),
        [
            (3.0, [0, 1, 2, 3]),
            (3.7, [0, 1, 2, 3, 3.7]),
            (3.2, [0, 1, 2, 3.2]),
            (0.3, [0, 1]),
        ],
    )
    def test_bin_edges(self, end, edges):
        assert edges == pytest.approx(bin_edges(end).tolist())


class TestTokens:
    """Output tokens per second."""

    def test_streamed_tokens_spread_over_chunks(self):
        # TTFT 500 ms then chunks at +1000 ms and +1000 ms: chunks at 0.5, 1.5, 2.5 s.
        request = _request(
            0,
            2.5,
            output_sequence_length=6,
            time_to_first_token=500.0,
            inter_chunk_latency=[1000.0, 1000.0],
        )
        times, weights = token_arrivals([request], 0)
        assert [0.5, 1.5, 2.5] == pytest.approx(times.tolist())
        assert [2, 2, 2] == pytest.approx(weights.tolist())

    def test_unstreamed_tokens_count_at_end(self):
        times, weights = token_arrivals([_request(1, 2.25, output_sequence_length=9)], 0)
        assert ([2.25], [9]) == (times.tolist(), weights.tolist())

    def test_failed_requests_bring_no_tokens(self):
        failed = Request(start_ns=0, end_ns=S, ok=False, metrics={"output_sequence_length": 5})
        times, _ = token_arrivals([failed], 0)
        assert 0 == times.size

    def test_tokens_conserved_over_bins(self, make_run):
        run = load_run(make_run(requests=50, concurrency=4))
        t0 = run.t0_ns
        edges = bin_edges(run_span_s(run.requests, t0))
        binned = output_tokens_per_s(run.requests, t0, edges)
        expected = sum(r.value("output_sequence_length") for r in run.requests)
        assert expected == pytest.approx(float((binned.values * binned.widths).sum()))


class TestInFlight:
    """Mean requests in flight per bin."""

    def test_in_flight_exact_values(self):
        requests = [_request(0, 2), _request(0.5, 1), _request(1.5, 3)]
        binned = requests_in_flight(requests, 0, np.array([0.0, 1.0, 2.0, 3.0]))
        # [0,1): 1 + 0.5; [1,2): 1 + 0.5; [2,3): 1
        assert [1.5, 1.5, 1.0] == pytest.approx(binned.values.tolist())

    def test_in_flight_matches_brute_force(self):
        rng = np.random.default_rng(7)
        starts = rng.uniform(0, 9, 200)
        ends = starts + rng.uniform(0.01, 2, 200)
        requests = [_request(s, e) for s, e in zip(starts, ends, strict=True)]
        edges = bin_edges(float(ends.max()))
        binned = requests_in_flight(requests, 0, edges)
        left, right = edges[:-1], edges[1:]
        overlap = np.clip(
            np.minimum(ends[:, None], right) - np.maximum(starts[:, None], left), 0, None
        )
        assert (overlap.sum(axis=0) / (right - left)) == pytest.approx(binned.values, abs=1e-6)


def test_ecdf_reaches_100_percent():
    xs, shares = ecdf([3.0, 1.0, 2.0, 2.0])
    assert ([1, 2, 2, 3], [25, 50, 75, 100]) == (xs.tolist(), shares.tolist())
