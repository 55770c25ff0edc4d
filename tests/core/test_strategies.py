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


def _cv(values: list[float]) -> float:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return var**0.5 / mean


class TestGamma:
    @pytest.mark.parametrize("smoothness", [0.25, 1.0, 4.0])
    def test_gamma_gaps_have_mean_one_over_rate_and_cv_one_over_sqrt_k(self, smoothness: float) -> None:
        """Gamma(k) gaps (seeded): mean 1/rate, coefficient of variation 1/sqrt(k)."""
        load = FakeLoad(count=6000)
        run_mock(RateStrategy(50.0, poisson=False, mode="gamma", smoothness=smoothness), load)
        times = [t for _, t, _ in load.sends]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert pytest.approx(0.02, rel=0.05) == sum(gaps) / len(gaps)
        assert pytest.approx(1 / smoothness**0.5, rel=0.08) == _cv(gaps)

    def test_smoothness_orders_burstiness(self) -> None:
        """Lower smoothness, burstier: the CVs of the three settings are strictly ordered."""
        cvs = []
        for k in (0.5, 1.0, 8.0):
            load = FakeLoad(count=3000)
            run_mock(RateStrategy(100.0, poisson=False, mode="gamma", smoothness=k), load)
            times = [t for _, t, _ in load.sends]
            cvs.append(_cv([b - a for a, b in zip(times, times[1:])]))
        assert cvs[0] > 1.2 > cvs[1] > 0.8 > 0.5 > cvs[2]

    def test_gamma_strategy_is_registered_for_the_flag(self) -> None:
        """--request-rate-mode gamma builds a gamma RateStrategy with --arrival-smoothness."""
        from aiperf._arrivals import GAMMA
        from aiperf._config import ProfileConfig

        config = ProfileConfig(model="m", request_rate=5.0, request_rate_mode="gamma",
                               plugin_options={"arrival_smoothness": 0.5})  # fmt: skip
        strategy = GAMMA.create(config)
        assert ("gamma", 0.5, 5.0) == (strategy.mode, strategy.smoothness, strategy.rate)


class TestRamps:
    def test_rate_ramp_sends_follow_the_integral_of_a_linear_rate(self) -> None:
        """Constant mode, 20/s reached over 2 s: the k-th send is where the ramped rate's
        integral reaches k; after the ramp the gaps are 1/rate."""
        from aiperf._arrivals import Schedule

        load = FakeLoad(count=80)
        run_mock(RateStrategy(20.0, poisson=False, ramp_s=2.0), load)
        t0 = load.sends[0][1]
        offsets = [t - t0 for _, t, _ in load.sends]
        schedule = Schedule(20.0, 2.0)
        for k, offset in enumerate(offsets):
            assert pytest.approx(schedule.seconds_at(k), abs=1e-9) == offset
        # Slow at first, the full rate at the end.
        in_first_half_second = sum(1 for o in offsets if o < 0.5)
        in_last_half_second_of_ramp = sum(1 for o in offsets if 1.5 <= o < 2.0)
        assert in_first_half_second <= 2 < 7 <= in_last_half_second_of_ramp
        late = [b - a for a, b in zip(offsets, offsets[1:]) if a >= 2.0]
        assert late and all(pytest.approx(0.05, abs=1e-9) == g for g in late)

    def test_schedule_inverts_its_integral(self) -> None:
        """seconds_at(work_at(t)) == t inside and after the ramp; the rate is linear in t."""
        from aiperf._arrivals import Schedule

        schedule = Schedule(10.0, 3.0)
        for t in (0.0, 0.01, 0.5, 1.5, 2.999, 3.0, 7.25):
            assert pytest.approx(t, abs=1e-9) == schedule.seconds_at(schedule.work_at(t))
        assert pytest.approx(10.0 * 0.1 / 3.0) == schedule.rate_at(0.0)
        assert pytest.approx((schedule.rate_at(0.0) + 10.0) / 2) == schedule.rate_at(1.5)
        assert 10.0 == schedule.rate_at(3.0) == schedule.rate_at(9.0)

    def test_concurrency_ramp_opens_one_slot_per_step(self) -> None:
        """4 workers over 3 s: they start at 0, 1, 2 and 3 s; never more in flight than open."""
        load = FakeLoad(count=8, service_s=10.0)
        run_mock(ConcurrencyStrategy(4, ramp_s=3.0), load)
        starts = sorted(t for _, t, _ in load.sends)
        t0 = starts[0]
        assert [0.0, 1.0, 2.0, 3.0] == [pytest.approx(s - t0) for s in starts[:4]]
        assert 4 == load.max_in_flight

    def test_ramp_that_outlasts_the_requests_does_not_hold_the_phase(self) -> None:
        """2 requests, 4 workers ramped over 100 s: the phase ends after the 2 requests, not
        after the ramp."""
        load = FakeLoad(count=2, service_s=1.0)
        clock = trio.testing.MockClock(autojump_threshold=0)

        async def main() -> float:
            await ConcurrencyStrategy(4, ramp_s=100.0).drive(load)
            return trio.current_time()

        assert trio.run(main, clock=clock) < 40.0
        assert 2 == len(load.sends)

    def test_in_flight_cap_ramps_under_a_rate(self) -> None:
        """--request-rate with --concurrency 4 ramped over 3 s: at time t at most 1 + t
        requests in flight (each lasts long), 4 once the ramp is over."""
        load = FakeLoad(count=40, service_s=30.0)
        run_mock(RateStrategy(100.0, poisson=False, max_in_flight=4, concurrency_ramp_s=3.0), load)
        starts = [t for _, t, _ in load.sends]
        t0 = starts[0]
        for t in starts:
            in_flight = sum(1 for s in starts if s <= t < s + 30.0)
            assert in_flight <= 1 + int(t - t0 + 1e-9)
        # One more slot each second: the first four sends at 0, 1, 2, 3 s.
        assert [0.0, 1.0, 2.0, 3.0] == [pytest.approx(s - t0) for s in starts[:4]]
        assert 4 == load.max_in_flight
