"""Load strategies under trio's MockClock: exact schedules, no drift, caps respected."""

from __future__ import annotations

import random

import attrs
import pytest
import trio
import trio.testing
from aiperf._strategies import ConcurrencyStrategy, RateStrategy


@attrs.define
class FakeLoad:
    """A LoadContext whose requests take ``service_s`` of (mock) time."""

    count: int
    service_s: float = 0.0
    concurrency: int | None = None
    request_rate: float | None = None
    random: random.Random = attrs.field(factory=lambda: random.Random(1))
    issued: int = 0
    sends: list[tuple[int, float, int | None]] = attrs.field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def claim(self) -> int | None:
        if self.issued >= self.count:
            return None
        self.issued += 1
        return self.issued - 1

    async def execute(self, index: int, intended_ns: int | None = None) -> None:
        self.sends.append((index, trio.current_time(), intended_ns))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await trio.sleep(self.service_s)
        self.in_flight -= 1

    def to_perf_ns(self, trio_time: float) -> int:
        return round(trio_time * 1e9)


def run_mock(strategy: object, load: FakeLoad) -> None:
    trio.run(strategy.drive, load, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[attr-defined]


class TestConcurrency:
    def test_concurrency_keeps_exactly_n_in_flight(self) -> None:
        """N workers: never more than N in flight, and all requests sent."""
        load = FakeLoad(count=20, service_s=1.0)
        run_mock(ConcurrencyStrategy(4), load)
        assert 20 == len(load.sends)
        assert 4 == load.max_in_flight
        starts = sorted(t for _, t, _ in load.sends)
        # closed loop: 4 start at t0, the next 4 one service time later, ...
        assert 4 == sum(1 for t in starts if t == starts[0])
        assert pytest.approx(starts[0] + 4.0) == starts[-1]


class TestRate:
    def test_constant_rate_is_an_exact_absolute_schedule(self) -> None:
        """Constant rate: the k-th send happens at t0 + k/rate, and the intended time says so."""
        load = FakeLoad(count=50, service_s=0.37)
        run_mock(RateStrategy(10.0, poisson=False), load)
        t0 = load.sends[0][1]
        for k, (_index, t, intended) in enumerate(load.sends):
            assert pytest.approx(t0 + k / 10.0, abs=1e-9) == t
            assert pytest.approx((t0 + k / 10.0) * 1e9, abs=1) == intended

    def test_poisson_rate_mean_gap(self) -> None:
        """Poisson arrivals: exponential gaps averaging 1/rate (seeded)."""
        load = FakeLoad(count=4000)
        run_mock(RateStrategy(100.0, poisson=True), load)
        times = [t for _, t, _ in load.sends]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert pytest.approx(0.01, rel=0.05) == sum(gaps) / len(gaps)
        assert min(gaps) < 0.001 < 0.03 < max(gaps)

    def test_rate_with_concurrency_cap_queues_and_keeps_intended_times(self) -> None:
        """A cap holds sends back; the intended time stays on the schedule, so lag shows."""
        load = FakeLoad(count=10, service_s=1.0)
        run_mock(RateStrategy(10.0, poisson=False, max_in_flight=2), load)
        assert 2 == load.max_in_flight
        lags = [t - intended / 1e9 for _, t, intended in load.sends if intended is not None]
        assert 0.0 == pytest.approx(lags[0], abs=1e-9)
        assert lags[-1] > 3.0
