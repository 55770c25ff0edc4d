"""Fixed schedules: requests sent at the times an input file recorded (``--fixed-schedule``).

Three parts. :class:`Timeline` reads the times of an input file's lines as they stream past
(``timestamp`` in ms, or ``delay`` after the line before), checks that they never go back,
keeps the lines in the ``--fixed-schedule-start-offset/-end-offset`` window (both ends
included; reading stops at the first line past the end) and places each kept line on the
schedule: ``send_at_ms`` after it starts. The schedule starts at 0 ms of the file's clock,
at the start offset, or with ``--fixed-schedule-auto-offset`` at the first line's time.

:class:`FixedScheduleStrategy` is the load strategy (``fixed_schedule``) that sends request
``i`` at ``start + send_at_ms`` on the engine's absolute clock: a late wake-up never pushes
later requests back, and each request's lag (first byte sent minus intended time) is measured
like any open-loop send. Requests leave in file order, those with equal times too.

:class:`ScheduleReport` measures how faithful the replay was from the run's own records: lag
p50/p99/max and whether the sends kept the file's order; it adds a ``fixed_schedule`` section
to the exports and warns when the lag p99 is over :data:`LAG_P99_BOUND_MS`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio

from aiperf._types import LoadContext, LoadStrategyType, ReportSection, UsageError

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Prompt, RunContext, RunResult, SamplerContext

log = structlog.get_logger()

#: The schedule lag p99 above which a replay is reported as unfaithful.
#:
#: Why 2 ms: trace times have millisecond resolution, and aiperf's own timer wakes within about
#: a millisecond of a deadline (the kernel's event wait counts whole milliseconds); on a busy
#: 2-core machine the replay bench measures a p99 near that (bench/replay_results.json). A p99
#: above 2 ms is therefore the client running behind, not the timer's grain: the bursts of the
#: trace reach the server flattened (a burst of 10 requests within 1 ms arriving over 5 ms is
#: a different load for a batching server). Latencies stay right (they are timed from the
#: actual send), but the offered load is no longer the production one.
LAG_P99_BOUND_MS = 2.0
#: the longest the schedule waits for the loop to be idle before it starts.
SETTLE_S = 1.0
#: a first request further than this from the schedule's start (Unix-time timestamps, say)
#: is an error unless the start is given: the run would just wait.
MAX_FIRST_WAIT_MS = 600_000


# -- reading the times of a file ------------------------------------------------------------------


@attrs.define
class Timeline:
    """The schedule of an input file, built line by line while it is read."""

    label: str
    #: ``--fixed-schedule``: True, False, or None (on when the first line has a time).
    wanted: bool | None
    start_ms: int | None = None
    end_ms: int | None = None
    auto_offset: bool = False
    #: whether the file's format carries times at all (random_pool does not).
    timed_format: bool = True
    format_name: str = ""
    on: bool | None = None
    origin_ms: float | None = None
    send_at_ms: list[float] = attrs.field(factory=list)
    before: int = 0
    after: int = 0
    _last_ms: float | None = None
    _last_line: int = 0
    _clock_ms: float = 0.0

    @classmethod
    def of(cls, config: ProfileConfig, label: str, *, timed_format: bool, format_name: str) -> Timeline:
        timeline = cls(
            label=label,
            wanted=config.fixed_schedule,
            start_ms=config.fixed_schedule_start_offset,
            end_ms=config.fixed_schedule_end_offset,
            auto_offset=config.fixed_schedule_auto_offset,
            timed_format=timed_format,
            format_name=format_name,
        )
        if not timed_format and config.fixed_schedule:
            raise UsageError(
                f"--fixed-schedule: {format_name} files have no times (their requests are drawn "
                "at random); use single_turn or mooncake_trace lines with a \"timestamp\""
            )
        return timeline

    def admit(self, line: int, timestamp: float | None, delay: float | None) -> bool | None:
        """Whether line ``line`` is replayed: True, False (before the window), or None when
        it is past the window's end (and so is every later line: stop reading)."""
        if self.on is None:
            self.on = self.wanted if self.wanted is not None else (
                self.timed_format and (timestamp is not None or delay is not None)
            )
        if not self.on:
            return True
        where = f"{self.label}: line {line}:"
        if timestamp is not None:
            at = float(timestamp)
        elif delay is not None:
            at = self._clock_ms + float(delay)
        else:
            raise UsageError(
                f'{where} "timestamp": missing; on a fixed schedule every line needs a '
                '"timestamp" (ms) or a "delay" (ms after the line before); --no-fixed-schedule '
                "sends the file without its times"
            )
        if self._last_ms is not None and at < self._last_ms:
            raise UsageError(
                f'{where} "timestamp": {at:g} ms is earlier than line {self._last_line}\'s '
                f"{self._last_ms:g} ms; a fixed schedule sends the lines in file order, so their "
                "times must not go back (sort the file by timestamp)"
            )
        self._last_ms, self._last_line, self._clock_ms = at, line, at
        if self.start_ms is not None and at < self.start_ms:
            self.before += 1
            return False
        if self.end_ms is not None and at > self.end_ms:
            self.after += 1
            return None
        if self.origin_ms is None:
            self.origin_ms = (
                float(self.start_ms) if self.start_ms is not None
                else at if self.auto_offset
                else 0.0
            )  # fmt: skip
            if self.start_ms is None and at - self.origin_ms > MAX_FIRST_WAIT_MS:
                raise UsageError(
                    f'{where} "timestamp": the first request is at {at:g} ms on the file\'s clock, '
                    f"so the run would wait {(at - self.origin_ms) / 3.6e6:,.1f} h for it; pass "
                    "--fixed-schedule-auto-offset to start at the first request (or "
                    "--fixed-schedule-start-offset 0 to wait after all)"
                )
        self.send_at_ms.append(at - self.origin_ms)
        return True

    def check_kept(self, kept: int) -> None:
        """One line when the window holds no line of the file."""
        if kept or not self.on or not (self.before or self.after):
            return
        window = f"[{self.start_ms if self.start_ms is not None else 0}, "
        window += f"{self.end_ms if self.end_ms is not None else 'end'}] ms"
        raise UsageError(
            f"--fixed-schedule-start-offset/--fixed-schedule-end-offset: no line of {self.label} "
            f"is in {window} ({self.before} before it, the rest after it)"
        )

    def place(self, prompts: list[Prompt]) -> list[Prompt]:
        """The prompts with their ``send_at_ms`` (one per kept line, in order)."""
        if not self.on:
            return prompts
        assert len(prompts) == len(self.send_at_ms), "a timed format makes one prompt per line"
        return [attrs.evolve(p, send_at_ms=at) for p, at in zip(prompts, self.send_at_ms)]


def number_field(where: str, obj: dict[str, Any], key: str) -> float | None:
    """``timestamp`` or ``delay``: a finite number >= 0 (ms), or absent."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        shown = json.dumps(value) if isinstance(value, int | float) and not isinstance(value, bool) else _kind(value)
        raise UsageError(f'{where} "{key}" must be a number of milliseconds >= 0, got {shown}')
    return float(value)


def times(where: str, obj: dict[str, Any]) -> tuple[float | None, float | None]:
    timestamp, delay = number_field(where, obj, "timestamp"), number_field(where, obj, "delay")
    if timestamp is not None and delay is not None:
        raise UsageError(f'{where} give one of "timestamp", "delay", not both')
    return timestamp, delay


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number"


# -- the run ---------------------------------------------------------------------------------------


def settle(config: ProfileConfig, prompts: Sequence[Prompt]) -> ProfileConfig:
    """The config once the prompts are known: on a fixed schedule when they carry times, with
    one request per line (fewer with ``--request-count``; ``--benchmark-duration`` may end it
    sooner, but the schedule never wraps around)."""
    timed = bool(prompts) and prompts[0].send_at_ms is not None
    if not timed:
        if config.fixed_schedule:
            raise UsageError(
                "--fixed-schedule: these prompts carry no times; give an --input-file whose "
                'lines have a "timestamp" (or drop --fixed-schedule)'
            )
        return config
    if config.request_rate is not None:
        raise UsageError(
            "--request-rate: the --input-file has times, so it is replayed on a fixed schedule; "
            "pass --no-fixed-schedule to send its lines at --request-rate instead"
        )
    if config.warmup_request_count:
        raise UsageError(
            "--warmup-request-count: a fixed schedule replays the file from its start; "
            "warm the server up with a separate run, or --no-fixed-schedule"
        )
    if config.request_count is not None and config.request_count > len(prompts):
        raise UsageError(
            f"--request-count: the schedule holds {len(prompts)} requests; ask for at most that "
            "many (or --no-fixed-schedule to cycle through the file)"
        )
    if config.workers is not None and config.workers > 1:
        raise UsageError(
            "--workers: a fixed schedule runs in one process, so that its requests leave in "
            "file order on one clock; drop --workers"
        )
    updates: dict[str, Any] = {"fixed_schedule": True, "workers": 1}
    if config.request_count is None:
        updates["request_count"] = len(prompts)
    return attrs.evolve(config, **updates)


@attrs.define
class FixedScheduleStrategy:
    """Request ``i`` leaves at ``start + prompt(i).send_at_ms``, in index order.

    The file's order holds on the wire: a request is handed to the engine only once the one
    before it has its bytes with the kernel (``execute``'s ``sent`` event). trio runs the tasks
    that became ready together in no fixed order, and a request that must first open a
    connection would otherwise be overtaken by the next one on a pooled connection. The wait
    costs nothing in the usual case (the request before wrote in its first step) and delays a
    request by at most the connection set-up of the one before. With ``--concurrency`` a
    request that finds every slot busy waits for one; its lag counts from its scheduled time.
    """

    max_in_flight: int | None = None

    async def drive(self, ctx: LoadContext) -> None:
        limiter = trio.Semaphore(self.max_in_flight) if self.max_in_flight else None

        async def send(index: int, intended: int, after: trio.Event | None, sent: trio.Event) -> None:
            try:
                if after is not None and not after.is_set():
                    await after.wait()
                await ctx.execute(index, intended, sent)
            finally:
                sent.set()
                if limiter is not None:
                    limiter.release()

        # Time zero once the loop is quiet: samplers and sinks that start with the run do their
        # set-up first (a GPU library load held the loop for 150 ms), not during the schedule.
        with trio.move_on_after(SETTLE_S):
            await _wait_idle()
        start = trio.current_time()
        previous: trio.Event | None = None
        async with trio.open_nursery() as nursery:
            while (index := ctx.claim()) is not None:
                at_ms = ctx.prompt(index).send_at_ms
                deadline = start + (at_ms or 0.0) / 1e3
                # Always a scheduling point, even when the deadline has passed: the request
                # started before gets its first step before this one is started.
                await trio.sleep_until(deadline)
                intended = ctx.to_perf_ns(deadline)
                if limiter is not None:
                    await limiter.acquire()
                sent = trio.Event()
                nursery.start_soon(send, index, intended, previous, sent)
                previous = sent


async def _wait_idle() -> None:
    from aiperf._engine import _wait_idle as wait

    await wait()


def _fixed_schedule(config: ProfileConfig) -> FixedScheduleStrategy:
    return FixedScheduleStrategy(max_in_flight=config.concurrency)


FIXED_SCHEDULE = LoadStrategyType(
    name="fixed_schedule",
    create=_fixed_schedule,
    description="--input-file times: each request at its recorded time (--fixed-schedule)",
)


def strategy_name(config: ProfileConfig) -> str:
    """The load strategy a config asks for."""
    if config.fixed_schedule:
        return "fixed_schedule"
    return "concurrency" if config.request_rate is None else config.request_rate_mode


# -- how faithful the replay was -------------------------------------------------------------------


def lag_figures(lines: Sequence[dict[str, Any]], bound_ms: float = LAG_P99_BOUND_MS) -> dict[str, Any]:
    """Schedule lag and order of a replay, from the records of its measured requests."""
    import numpy as np

    sent = [
        line for line in lines
        if line.get("phase") == "profile" and line.get("intended_start_time_ns") is not None
        and line.get("start_time_ns") is not None
    ]  # fmt: skip
    sent.sort(key=lambda line: line["request_index"])
    lags = np.array([(ln["start_time_ns"] - ln["intended_start_time_ns"]) / 1e6 for ln in sent])
    starts = [line["start_time_ns"] for line in sent]
    out_of_order = sum(1 for a, b in zip(starts, starts[1:]) if b < a)
    data: dict[str, Any] = {"requests": len(sent), "bound_p99_ms": bound_ms}
    if len(sent):
        intended = [line["intended_start_time_ns"] for line in sent]
        data.update(
            lag_ms={
                "avg": float(lags.mean()),
                "p50": float(np.percentile(lags, 50)),
                "p90": float(np.percentile(lags, 90)),
                "p99": float(np.percentile(lags, 99)),
                "max": float(lags.max()),
                "min": float(lags.min()),
            },
            schedule_duration_s=(intended[-1] - intended[0]) / 1e9,
        )
        data["within_bound"] = data["lag_ms"]["p99"] <= bound_ms
    data["out_of_order"] = out_of_order
    data["order_preserved"] = out_of_order == 0
    return data


@attrs.define
class ScheduleReport:
    """A sampler that samples nothing: at the end it reads the run's records and reports the
    replay's fidelity (the ``fixed_schedule`` section, and a warning over the bound)."""

    name: str = "fixed_schedule"
    _note: str | None = None

    async def run(self, ctx: SamplerContext) -> None:
        await trio.sleep_forever()

    def sections(self, run: RunContext, result: RunResult) -> Sequence[ReportSection]:
        from aiperf._exporters import JSONL_FILE

        path = run.run_dir / JSONL_FILE
        try:
            with path.open(encoding="utf-8") as handle:
                lines = [json.loads(text) for text in handle if text.strip()]
        except (OSError, ValueError) as exc:
            self._note = f"the fixed schedule's lag was not measured: cannot read {path} ({exc})"
            return []
        data = lag_figures(lines)
        lag = data.get("lag_ms")
        rows: tuple[dict[str, Any], ...] = ()
        if lag is not None:
            rows = (
                {
                    "requests": data["requests"],
                    "lag p50 (ms)": f"{lag['p50']:.3f}",
                    "lag p99 (ms)": f"{lag['p99']:.3f}",
                    "lag max (ms)": f"{lag['max']:.3f}",
                    "in file order": "yes" if data["order_preserved"] else f"no ({data['out_of_order']} out of order)",
                },
            )
            if not data["within_bound"]:
                self._note = (
                    f"fixed schedule: send lag p99 {lag['p99']:.2f} ms is over {LAG_P99_BOUND_MS:g} ms; "
                    "the client sent late, so the server saw a smoother load than the file's "
                    "(latencies are still timed from the actual sends; see docs/datasets.md)"
                )
                log.warning("fixed_schedule_late", p99_ms=round(lag["p99"], 3), bound_ms=LAG_P99_BOUND_MS)
        if not data["order_preserved"]:
            note = f"fixed schedule: {data['out_of_order']} requests left out of file order"
            self._note = f"{self._note}; {note}" if self._note else note
        return [
            ReportSection(name="fixed_schedule", title="Fixed schedule", data=data, rows=rows, console=True)
        ]

    def report(self) -> str | None:
        return self._note
