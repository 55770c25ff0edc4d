"""When requests leave: gamma gaps, linear ramps of rate and concurrency, and which requests
the client cancels.

Open-loop arrivals are drawn in *operational time*, where the rate is always 1: gaps of
mean 1 (all 1 for ``constant``, exponential for ``poisson``, gamma of shape ``k`` and scale
``1/k`` for ``gamma``). A schedule maps operational time ``w`` to seconds since the start of
the phase. Without a ramp that is ``w / rate``. With ``--request-rate-ramp-duration S`` the
rate rises linearly from ``rate * 0.1 / S`` (so that a ramp starts near zero, never at zero)
to ``rate`` at ``S``, then stays there; the k-th arrival is where the integral of the rate
reaches the k-th point, so the gaps keep their distribution's shape (a Poisson process stays
Poisson, with the ramped intensity) and the schedule stays absolute: nothing drifts.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import TYPE_CHECKING

import attrs

from aiperf import _workload
from aiperf._types import LoadStrategyType

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._strategies import RateStrategy

#: the step of the rate ramp's start: the rate starts at ``rate * RAMP_START_STEP_S / S``.
RAMP_START_STEP_S = 0.1


@attrs.frozen
class Schedule:
    """Operational time -> seconds after the phase started, for a rate and an optional ramp."""

    rate: float
    ramp_s: float | None = None

    @property
    def start_rate(self) -> float:
        if not self.ramp_s:
            return self.rate
        return self.rate * min(1.0, RAMP_START_STEP_S / self.ramp_s)

    def work_at(self, t: float) -> float:
        """The expected number of arrivals in ``[0, t]`` (the integral of the rate)."""
        rate, ramp = self.rate, self.ramp_s
        if not ramp:
            return rate * t
        r0 = self.start_rate
        if t <= ramp:
            return r0 * t + (rate - r0) * t * t / (2 * ramp)
        return ramp * (r0 + rate) / 2 + rate * (t - ramp)

    def seconds_at(self, work: float) -> float:
        """The inverse of :meth:`work_at`: when the integral of the rate reaches ``work``."""
        rate, ramp = self.rate, self.ramp_s
        if not ramp:
            return work / rate
        r0 = self.start_rate
        ramped = ramp * (r0 + rate) / 2
        if work >= ramped:
            return ramp + (work - ramped) / rate
        a = (rate - r0) / (2 * ramp)
        if a <= 0:
            return work / r0
        # a t^2 + r0 t - work = 0, the positive root, written to stay exact for small work.
        return 2 * work / (r0 + math.sqrt(r0 * r0 + 4 * a * work))

    def rate_at(self, t: float) -> float:
        if not self.ramp_s or t >= self.ramp_s:
            return self.rate
        return self.start_rate + (self.rate - self.start_rate) * t / self.ramp_s


def unit_gap(rng: random.Random, mode: str, smoothness: float | None = None) -> float:
    """One gap of mean 1 in operational time: ``constant`` 1, ``poisson`` exponential,
    ``gamma`` of shape ``smoothness`` (coefficient of variation ``1/sqrt(smoothness)``)."""
    if mode == "poisson":
        return rng.expovariate(1.0)
    if mode == "gamma":
        k = smoothness or 1.0
        return rng.gammavariate(k, 1.0 / k)
    return 1.0


def ramp_starts(concurrency: int, ramp_s: float | None) -> list[float]:
    """When each of ``concurrency`` slots opens, in seconds after the phase started: the first
    at once, then one more at even steps, the last at ``ramp_s`` exactly."""
    if not ramp_s or concurrency < 2:
        return [0.0] * concurrency
    step = ramp_s / (concurrency - 1)
    return [i * step for i in range(concurrency)]


# -- client-side cancellation ------------------------------------------------------------------


@attrs.frozen
class Cancellation:
    """Which requests the client closes early, and when (``--request-cancellation-*``).

    The choice is a hash of the seed and the request index: the same requests are cancelled
    in every run with the same seed, whichever process (``--workers``) sends them.
    """

    rate_percent: float
    delay_s: float
    seed: int

    def delay_for(self, index: int) -> float | None:
        """Seconds after the request is fully sent before its connection is closed, or None
        for a request that is left to finish."""
        digest = hashlib.blake2b(f"{self.seed}:{index}".encode(), digest_size=8).digest()
        draw = int.from_bytes(digest, "little") / 2.0**64
        return self.delay_s if draw * 100.0 < self.rate_percent else None


def cancellation(config: ProfileConfig) -> Cancellation | None:
    work = _workload.of(config)
    if not work.request_cancellation_rate:
        return None
    return Cancellation(
        rate_percent=work.request_cancellation_rate,
        delay_s=work.request_cancellation_delay,
        seed=config.random_seed or 0,
    )


# -- the gamma load strategy -----------------------------------------------------------------


def _gamma(config: ProfileConfig) -> RateStrategy:
    from aiperf._strategies import rate_strategy

    return rate_strategy(config, "gamma")


GAMMA = LoadStrategyType(
    name="gamma",
    create=_gamma,
    description="--request-rate with gamma gaps of tunable burstiness (--arrival-smoothness)",
)
