"""Built-in load strategies: fixed concurrency (closed loop) and request rate (open loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from aiperf._types import LoadContext, LoadStrategyType

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig


@attrs.define
class ConcurrencyStrategy:
    """N workers, each sends its next request as soon as its previous one finished."""

    concurrency: int

    async def drive(self, ctx: LoadContext) -> None:
        async def worker() -> None:
            while (index := ctx.claim()) is not None:
                await ctx.execute(index)

        async with trio.open_nursery() as nursery:
            for _ in range(self.concurrency):
                nursery.start_soon(worker)


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

    def _gap(self, ctx: LoadContext) -> float:
        if self.poisson:
            return ctx.random.expovariate(self.rate)
        return 1.0 / self.rate

    async def drive(self, ctx: LoadContext) -> None:
        limiter = trio.Semaphore(self.max_in_flight) if self.max_in_flight else None

        async def send(index: int, intended: int) -> None:
            try:
                await ctx.execute(index, intended)
            finally:
                if limiter is not None:
                    limiter.release()

        async with trio.open_nursery() as nursery:
            deadline = trio.current_time()
            while True:
                await trio.sleep_until(deadline)
                index = ctx.claim()
                if index is None:
                    break
                intended = ctx.to_perf_ns(deadline)
                if limiter is not None:
                    await limiter.acquire()
                nursery.start_soon(send, index, intended)
                deadline += self._gap(ctx)


def _concurrency(config: ProfileConfig) -> ConcurrencyStrategy:
    return ConcurrencyStrategy(config.effective_concurrency or 1)


def _constant(config: ProfileConfig) -> RateStrategy:
    assert config.request_rate is not None
    return RateStrategy(config.request_rate, poisson=False, max_in_flight=config.concurrency)


def _poisson(config: ProfileConfig) -> RateStrategy:
    assert config.request_rate is not None
    return RateStrategy(config.request_rate, poisson=True, max_in_flight=config.concurrency)


CONCURRENCY = LoadStrategyType(
    name="concurrency", create=_concurrency, description="fixed number of requests in flight"
)
CONSTANT = LoadStrategyType(
    name="constant", create=_constant, description="--request-rate with equal gaps"
)
POISSON = LoadStrategyType(
    name="poisson", create=_poisson, description="--request-rate with exponential gaps"
)
