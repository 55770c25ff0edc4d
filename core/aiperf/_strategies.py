"""Built-in load strategies: fixed concurrency (closed loop) and request rate (open loop).

Both can ramp (``--concurrency-ramp-duration``, ``--request-rate-ramp-duration``); the
schedules themselves are in :mod:`aiperf._arrivals`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from aiperf import _arrivals, _workload
from aiperf._types import LoadContext, LoadStrategyType

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig


@attrs.define
class ConcurrencyStrategy:
    """N workers, each sends its next request as soon as its previous one finished.

    With ``ramp_s`` the workers start one after another over that many seconds (the first at
    once, the last at ``ramp_s``); a worker still waiting when the phase runs out of requests
    is never started.
    """

    concurrency: int
    ramp_s: float | None = None

    async def drive(self, ctx: LoadContext) -> None:
        exhausted = trio.Event()

        async def worker(start: float | None) -> None:
            if start is not None:
                with trio.move_on_at(start):
                    await exhausted.wait()
                if exhausted.is_set():
                    return
            while (index := ctx.claim()) is not None:
                await ctx.execute(index)
            exhausted.set()  # nothing left: the workers not yet started never will be

        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for offset in _arrivals.ramp_starts(self.concurrency, self.ramp_s):
                nursery.start_soon(worker, t0 + offset if offset else None)


@attrs.define
class RateStrategy:
    """Requests leave on an absolute schedule: the k-th at ``t0 + sum of k gaps``.

    Sleeping until absolute deadlines (rather than ``sleep(gap)`` after each send) means a late
    wake-up never pushes every later request back: the schedule does not drift, and a client
    that falls behind shows up as send lag instead of silently lowering the offered load.
    With ``--concurrency`` too, a request that finds every slot busy waits for one; its lag
    counts from the intended time, so the queueing stays visible (no coordinated omission).
    """

    rate: float
    poisson: bool
    max_in_flight: int | None = None
    #: ``constant``, ``poisson`` or ``gamma`` (None: ``poisson`` or ``constant`` from the flag).
    mode: str | None = None
    #: gamma shape (``--arrival-smoothness``).
    smoothness: float | None = None
    #: ``--request-rate-ramp-duration``: the rate rises linearly to ``rate`` over this long.
    ramp_s: float | None = None
    #: ``--concurrency-ramp-duration``: the in-flight cap rises from 1 to ``max_in_flight``.
    concurrency_ramp_s: float | None = None

    def _gap(self, ctx: LoadContext) -> float:
        mode = self.mode or ("poisson" if self.poisson else "constant")
        return _arrivals.unit_gap(ctx.random, mode, self.smoothness)

    async def drive(self, ctx: LoadContext) -> None:
        cap = self.max_in_flight
        slots = _arrivals.ramp_starts(cap, self.concurrency_ramp_s) if cap else []
        limiter = trio.Semaphore(1 if slots and self.concurrency_ramp_s else cap) if cap else None

        async def send(index: int, intended: int) -> None:
            try:
                await ctx.execute(index, intended)
            finally:
                if limiter is not None:
                    limiter.release()

        async def open_slots(t0: float) -> None:
            assert limiter is not None
            for offset in slots[1:]:
                await trio.sleep_until(t0 + offset)
                limiter.release()

        schedule = _arrivals.Schedule(self.rate, self.ramp_s)
        async with trio.open_nursery() as nursery:
            t0 = trio.current_time()
            ramp = trio.CancelScope()
            if limiter is not None and self.concurrency_ramp_s and len(slots) > 1:

                async def ramping() -> None:
                    with ramp:
                        await open_slots(t0)

                nursery.start_soon(ramping)
            work = 0.0
            while True:
                deadline = t0 + schedule.seconds_at(work)
                await trio.sleep_until(deadline)
                index = ctx.claim()
                if index is None:
                    break
                intended = ctx.to_perf_ns(deadline)
                if limiter is not None:
                    await limiter.acquire()
                nursery.start_soon(send, index, intended)
                work += self._gap(ctx)
            ramp.cancel()


def _concurrency(config: ProfileConfig) -> ConcurrencyStrategy:
    ramp = _workload.of(config).concurrency_ramp_duration
    return ConcurrencyStrategy(config.effective_concurrency or 1, ramp_s=ramp)


def rate_strategy(config: ProfileConfig, mode: str) -> RateStrategy:
    """``--request-rate`` with gaps of ``mode``, the ramps and the in-flight cap of ``config``."""
    assert config.request_rate is not None
    work = _workload.of(config)
    return RateStrategy(
        config.request_rate,
        poisson=mode == "poisson",
        max_in_flight=config.concurrency,
        mode=mode,
        smoothness=work.arrival_smoothness,
        ramp_s=work.request_rate_ramp_duration,
        concurrency_ramp_s=work.concurrency_ramp_duration,
    )


def _constant(config: ProfileConfig) -> RateStrategy:
    return rate_strategy(config, "constant")


def _poisson(config: ProfileConfig) -> RateStrategy:
    return rate_strategy(config, "poisson")


CONCURRENCY = LoadStrategyType(
    name="concurrency", create=_concurrency, description="fixed number of requests in flight"
)
CONSTANT = LoadStrategyType(
    name="constant", create=_constant, description="--request-rate with equal gaps"
)
POISSON = LoadStrategyType(
    name="poisson", create=_poisson, description="--request-rate with exponential gaps"
)
