"""Measurement health: how far the client's own overhead may have moved the run's figures.

Each process that sends requests and reads responses (the only one, or each ``--workers``
process) watches itself while the measured phase runs:

- **Event-loop lag.** One task asks to wake every :data:`LAG_PERIOD_S` and records how late it
  woke. While the loop is late, a response that arrives waits in its socket: aiperf stamps
  reads with the kernel's receive time, but segments that wait are merged and the read carries
  the newest one's time, so a late loop moves TTFT and the per-chunk gaps by up to its
  lateness. The lag's p99 is the bound the run reports ("client overhead below X ms at p99").
  The wake-up itself has the poller's 1 ms resolution, so an idle loop reads 0 to 1 ms late:
  the bound errs high by that much, never low.
- **CPU.** The loop thread's CPU time against the wall time (a loop busy with its own work
  most of the time falls behind), and the time it waited for a core while it could have run
  (the kernel's ``schedstat``: another process had the CPU), against the CPUs this process may
  use (its affinity and its cgroup's quota).
- **Send lag** (open loop only): how late requests left against their schedule; the
  aggregator keeps it (``RunResult.send_lag``).
- **Memory per stream.** The resident size before the first request and at its largest,
  with the most streams in flight, read once a second: what one more concurrent stream
  costs, so a user planning 10,000 streams knows the memory they need.

The verdict (:func:`assess`) turns these into one line for the console and a
``measurement_health`` block for ``profile_export_aiperf.json``. With several worker
processes, each reports its figures to the coordinator and the verdict takes the worst.
"""

from __future__ import annotations

import bisect
import os
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

#: how often the lag monitor asks to wake.
LAG_PERIOD_S = 0.010
#: the bound above which a run is flagged whatever its figures (the bench's stall goal).
LAG_WARN_MS = 5.0
#: ... and above which it is flagged when it is this share of the TTFT p50 ...
LAG_WARN_SHARE_TTFT = 0.10
#: ... or of the ITL p50. Reads carry the kernel's receive time, so a late loop moves a
#: chunk's time only when the next chunk arrives before the read (the two are merged): the
#: error grows from nothing to the whole lag as the lag nears the gap between tokens.
LAG_WARN_SHARE_ITL = 0.50
#: below this the lag is the poller's resolution, not overhead: never flagged for its share.
LAG_FLOOR_MS = 1.0
#: a loop thread busy this share of the wall time (of the CPU it may use) has no slack left.
BUSY_SHARE = 0.90
#: a loop thread that waited for a core this share of the wall time shares its CPUs (an
#: otherwise idle machine: a few percent).
WAIT_SHARE = 0.10
#: open loop: requests leaving this late at p99 did not follow the schedule.
SEND_LAG_WARN_MS = 10.0
#: how many lag ticks between two readings of the resident size and the streams in flight.
MEMORY_EVERY_TICKS = 100
#: fewer streams than this in flight: the resident size moves too little to divide by them.
MEMORY_MIN_STREAMS = 100
#: what to do about a run the client could not keep up with.
REMEDY = "use --workers N, fewer streams per process (a lower --concurrency per process) or more machines"


def _edges_ns() -> tuple[int, ...]:
    """Upper bucket edges: 100 us steps to 10 ms, 1 ms to 100 ms, 10 ms to 1 s, 100 ms to 10 s."""
    edges: list[int] = []
    for step_us, stop_us in ((100, 10_000), (1_000, 100_000), (10_000, 1_000_000), (100_000, 10_000_000)):
        start = edges[-1] // 1000 if edges else 0
        edges += [us * 1000 for us in range(start + step_us, stop_us + 1, step_us)]
    return tuple(edges)


#: upper edges (ns) of the lag histogram's buckets; a last bucket holds everything beyond.
EDGES_NS = _edges_ns()


@attrs.define
class LagHistogram:
    """Lateness counts in fixed buckets: constant memory, one ``bisect`` per value."""

    counts: array[int] = attrs.field(factory=lambda: array("q", bytes(8 * (len(EDGES_NS) + 1))))
    count: int = 0
    max_ns: int = 0

    def add(self, late_ns: int) -> None:
        self.counts[bisect.bisect_left(EDGES_NS, late_ns)] += 1
        self.count += 1
        if late_ns > self.max_ns:
            self.max_ns = late_ns

    def percentile_ns(self, q: float) -> int | None:
        """The upper edge of the bucket that holds the ``q``-th percentile (errs high, by at
        most one bucket: 0.1 ms below 10 ms), never above the largest value seen."""
        if not self.count:
            return None
        rank = max(1, -(-self.count * q // 100))  # ceil(count * q / 100)
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                edge = EDGES_NS[index] if index < len(EDGES_NS) else self.max_ns
                return min(edge, self.max_ns)
        return self.max_ns  # pragma: no cover - the counts add up to count


@attrs.frozen(kw_only=True)
class CpuReading:
    """One process's clocks, read together on its loop thread."""

    wall_ns: int
    process_ns: int
    thread_ns: int
    #: time the thread spent runnable but waiting for a core (Linux schedstat), or None.
    wait_ns: int | None

    @classmethod
    def now(cls) -> CpuReading:
        return cls(
            wall_ns=time.perf_counter_ns(),
            process_ns=time.process_time_ns(),
            thread_ns=time.thread_time_ns(),
            wait_ns=_run_delay_ns(),
        )


def _run_delay_ns(path: str = "/proc/thread-self/schedstat") -> int | None:
    """Nanoseconds this thread waited on a run queue (field 2 of ``schedstat``), or None."""
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def resident_bytes(path: str = "/proc/self/statm") -> int | None:
    """This process's resident size in bytes (field 2 of ``statm``), or None off Linux."""
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_cpu_max(text: str) -> float | None:
    """CPUs a cgroup v2 ``cpu.max`` allows (``"50000 100000"`` -> 0.5); None when unlimited."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> float | None:
    """The tightest CPU quota of this process's cgroup and its parents, or None."""
    limits: list[float] = []
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: walk up from our group to the root
            here = root / path.lstrip("/")
            while True:
                try:
                    limit = parse_cpu_max((here / "cpu.max").read_text())
                except OSError:
                    limit = None
                if limit is not None:
                    limits.append(limit)
                if here == root or root not in here.parents:
                    break
                here = here.parent
        elif "cpu" in controllers.split(","):  # cgroup v1: the group as mounted here
            for mount in (root / controllers, root / "cpu"):
                try:
                    quota = int((mount / "cpu.cfs_quota_us").read_text())
                    period = int((mount / "cpu.cfs_period_us").read_text())
                except (OSError, ValueError):
                    continue
                if quota > 0 and period > 0:
                    limits.append(quota / period)
                break
    return min(limits) if limits else None


def available_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by its cgroup's quota."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cpus, limit) if limit is not None else cpus


@attrs.frozen(kw_only=True)
class ProcessHealth:
    """What one load process measured about itself over the measured phase (picklable)."""

    #: the worker's number, or None for a run in one process.
    worker: int | None
    lag_count: int
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    wall_s: float
    cpu_s: float
    loop_cpu_s: float
    #: time the loop thread waited for a core while runnable; None where the kernel says not.
    cpu_wait_s: float | None
    cpus_available: float
    #: resident size before the first request, and the largest read during the run (bytes).
    rss_before_bytes: int | None = None
    rss_peak_bytes: int | None = None
    #: the most streams in flight at one reading.
    in_flight_peak: int = 0

    @property
    def bytes_per_stream(self) -> float | None:
        """What one stream in flight costs in memory, at most: the growth of the resident
        size over the most streams in flight (it also holds the kept figures of finished
        requests, about 200 bytes each); None with too few streams to tell."""
        if self.rss_before_bytes is None or self.rss_peak_bytes is None or self.in_flight_peak < MEMORY_MIN_STREAMS:
            return None
        return max(0, self.rss_peak_bytes - self.rss_before_bytes) / self.in_flight_peak

    @property
    def loop_busy(self) -> float | None:
        """The loop thread's CPU time over the wall time, of the (at most one) CPU it can use."""
        if self.wall_s <= 0:
            return None
        return self.loop_cpu_s / self.wall_s / min(1.0, self.cpus_available)

    @property
    def cpu_wait(self) -> float | None:
        if self.cpu_wait_s is None or self.wall_s <= 0:
            return None
        return self.cpu_wait_s / self.wall_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "loop_lag_ms": {
                "p50": _round(self.lag_p50_ms),
                "p99": _round(self.lag_p99_ms),
                "max": _round(self.lag_max_ms),
                "count": self.lag_count,
            },
            "wall_s": round(self.wall_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "loop_cpu_s": round(self.loop_cpu_s, 3),
            "loop_busy_pct": _pct(self.loop_busy),
            "cpu_wait_pct": _pct(self.cpu_wait),
            "cpus_available": round(self.cpus_available, 2),
            "memory": {
                "rss_before_load_mib": _mib(self.rss_before_bytes),
                "rss_peak_mib": _mib(self.rss_peak_bytes),
                "in_flight_peak": self.in_flight_peak,
                "bytes_per_in_flight_stream": _whole(self.bytes_per_stream),
            },
        }


@attrs.define
class LoopMonitor:
    """One trio task that wakes every :data:`LAG_PERIOD_S` and records how late it woke.

    A tick costs one clock read, one ``bisect`` and a few integer updates; the histogram has
    a fixed size. Lateness is recorded only between :meth:`begin` and :meth:`end` (the
    measured phase); the largest lateness since the last :meth:`take_recent_ms` is kept at
    all times, for live sinks.
    """

    period_s: float = LAG_PERIOD_S
    histogram: LagHistogram = attrs.field(factory=LagHistogram)
    recording: bool = False
    #: how many streams are in flight now (the engine's count), for the memory per stream.
    in_flight: Callable[[], int] | None = None
    _recent_ns: int = -1
    _start: CpuReading | None = None
    _end: CpuReading | None = None
    _rss_before: int | None = None
    _rss_peak: int | None = None
    _in_flight_peak: int = 0

    async def run(self) -> None:
        clock = trio.current_time
        period = self.period_s
        histogram = self.histogram
        # Started before the first request leaves: the size of everything but the streams.
        self._rss_before = resident_bytes()
        in_flight = self.in_flight
        ticks = 0
        while True:
            deadline = clock() + period
            await trio.sleep_until(deadline)
            late_ns = int((clock() - deadline) * 1e9)
            if late_ns > self._recent_ns:
                self._recent_ns = late_ns
            if self.recording:
                histogram.add(late_ns)
            ticks += 1
            # A new most of streams in flight is read at once (they ramp up in a few ticks);
            # the resident size, which grows as their responses arrive, once a second too.
            if ticks == MEMORY_EVERY_TICKS or (in_flight is not None and in_flight() > self._in_flight_peak):
                ticks = 0
                self.read_memory()

    def read_memory(self) -> None:
        """One reading of the resident size and the streams in flight (about 10 us)."""
        if self.in_flight is not None:
            self._in_flight_peak = max(self._in_flight_peak, self.in_flight())
        rss = resident_bytes()
        if rss is not None and (self._rss_peak is None or rss > self._rss_peak):
            self._rss_peak = rss

    def begin(self) -> None:
        """The measured phase starts (call on the loop thread: it reads that thread's clocks)."""
        self._start = CpuReading.now()
        self.recording = True

    def end(self) -> None:
        if self.recording:
            self.recording = False
            self._end = CpuReading.now()
            self.read_memory()

    def take_recent_ms(self) -> float | None:
        """The largest lateness since the last call (ms), or None when no tick happened."""
        recent, self._recent_ns = self._recent_ns, -1
        return recent / 1e6 if recent >= 0 else None

    def figures(self, worker: int | None = None) -> ProcessHealth | None:
        """The measured phase's figures; None when it never began."""
        start = self._start
        if start is None:
            return None
        end = self._end or CpuReading.now()
        hist = self.histogram

        def ms(value: int | None) -> float | None:
            return None if value is None else value / 1e6

        wait = None
        if start.wait_ns is not None and end.wait_ns is not None:
            wait = (end.wait_ns - start.wait_ns) / 1e9
        return ProcessHealth(
            worker=worker,
            lag_count=hist.count,
            lag_p50_ms=ms(hist.percentile_ns(50)),
            lag_p99_ms=ms(hist.percentile_ns(99)),
            lag_max_ms=ms(hist.max_ns) if hist.count else None,
            wall_s=(end.wall_ns - start.wall_ns) / 1e9,
            cpu_s=(end.process_ns - start.process_ns) / 1e9,
            loop_cpu_s=(end.thread_ns - start.thread_ns) / 1e9,
            cpu_wait_s=wait,
            cpus_available=available_cpus(),
            rss_before_bytes=self._rss_before,
            rss_peak_bytes=self._rss_peak,
            in_flight_peak=self._in_flight_peak,
        )


# -- the verdict -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MeasurementHealth:
    """The run's verdict on its own timing, from the worst of its load processes."""

    #: ``ok``, ``warning``, or ``unknown`` (nothing measured: the phase was too short).
    verdict: str
    #: the bound: the worst process's event-loop lag p99 (ms).
    overhead_p99_ms: float | None
    #: the one line for the console.
    line: str
    processes: tuple[ProcessHealth, ...] = ()
    #: the process the bound comes from (its worker number, None for a single process).
    worst: int | None = None
    send_lag_p99_ms: float | None = None
    #: what made the verdict a warning, in words.
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def as_dict(self) -> dict[str, Any]:
        worst = self._worst_process()
        return {
            "verdict": self.verdict,
            "overhead_p99_ms": _round(self.overhead_p99_ms),
            "message": self.line,
            "reasons": list(self.reasons),
            "worst_worker": self.worst,
            "loop_lag_ms": worst.as_dict()["loop_lag_ms"] if worst else None,
            "loop_busy_pct": _pct(max_of(p.loop_busy for p in self.processes)),
            "cpu_wait_pct": _pct(max_of(p.cpu_wait for p in self.processes)),
            "cpus_available": worst.cpus_available if worst else None,
            "send_lag_p99_ms": _round(self.send_lag_p99_ms),
            "load_processes": len(self.processes),
            # the costliest process's memory per stream in flight (see ProcessHealth)
            "bytes_per_in_flight_stream": _whole(max_of(p.bytes_per_stream for p in self.processes)),
            "processes": [p.as_dict() for p in self.processes],
            "thresholds": {
                "loop_lag_ms": LAG_WARN_MS,
                "loop_lag_share_of_ttft_p50": LAG_WARN_SHARE_TTFT,
                "loop_lag_share_of_itl_p50": LAG_WARN_SHARE_ITL,
                "loop_busy_pct": BUSY_SHARE * 100,
                "cpu_wait_pct": WAIT_SHARE * 100,
                "send_lag_ms": SEND_LAG_WARN_MS,
            },
        }

    def _worst_process(self) -> ProcessHealth | None:
        for process in self.processes:
            if process.worker == self.worst:
                return process
        return None


def max_of(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def assess(
    processes: Sequence[ProcessHealth],
    *,
    ttft_p50_ms: float | None = None,
    itl_p50_ms: float | None = None,
    send_lag_p99_ms: float | None = None,
) -> MeasurementHealth:
    """The verdict: thresholds (module constants) applied to the worst process's figures."""
    measured = [p for p in processes if p.lag_p99_ms is not None]
    if not measured:
        return MeasurementHealth(
            verdict="unknown",
            overhead_p99_ms=None,
            line="Measurement health: client overhead not measured (the measured phase was "
            f"shorter than the {LAG_PERIOD_S * 1e3:g} ms the lag monitor needs)",
            processes=tuple(processes),
            send_lag_p99_ms=send_lag_p99_ms,
        )
    worst = max(measured, key=lambda p: p.lag_p99_ms or 0.0)
    assert worst.lag_p99_ms is not None
    # As the block gives it (3 decimals), so the line and the JSON never read differently
    # (40.5501 ms would print 40.6 here and 40.550 -> 40.5 from the JSON).
    bound = round(worst.lag_p99_ms, 3)
    shares = {
        name: bound / p50
        for name, p50 in (("TTFT", ttft_p50_ms), ("ITL", itl_p50_ms))
        if p50 is not None and p50 > 0
    }
    lag_reason = None
    lag_figure = f"event-loop lag p99 {_ms(bound)} ms"
    if bound > LAG_WARN_MS:
        lag_reason = f"{lag_figure} is above {LAG_WARN_MS:g} ms"
    elif bound > LAG_FLOOR_MS:
        limits = {"TTFT": LAG_WARN_SHARE_TTFT, "ITL": LAG_WARN_SHARE_ITL}
        over = [(name, share) for name, share in shares.items() if share > limits[name]]
        if over:
            name, share = max(over, key=lambda kv: kv[1] / limits[kv[0]])
            lag_reason = f"{lag_figure} is {share:.0%} of the {name} p50"
    late_sends = send_lag_p99_ms is not None and send_lag_p99_ms > SEND_LAG_WARN_MS
    where = _where(worst, len(processes))
    if lag_reason is None and not late_sends:
        busy = worst.loop_busy
        load = f", loop {busy:.0%} busy" if busy is not None else ""
        line = (
            f"Measurement health: client overhead below {_ms(bound)} ms at p99 "
            f"(event-loop lag, {where}{load})"
        )
        return MeasurementHealth(
            verdict="ok",
            overhead_p99_ms=bound,
            line=line,
            processes=tuple(processes),
            worst=worst.worker,
            send_lag_p99_ms=send_lag_p99_ms,
        )
    reasons: list[str] = []
    parts: list[str] = []
    if lag_reason is not None:
        reasons.append(lag_reason)
        inflate = f"TTFT and ITL may read up to {_ms(bound)} ms high"
        if shares:
            inflate += " (" + ", ".join(f"{v:.0%} of the {k} p50" for k, v in shares.items()) + ")"
        parts.append(f"{lag_reason} ({where}, max {_ms(worst.lag_max_ms)} ms): {inflate}")
    if late_sends:
        reason = f"send lag p99 {_ms(send_lag_p99_ms)} ms is above {SEND_LAG_WARN_MS:g} ms"
        reasons.append(reason)
        parts.append(f"{reason}: requests left that late against their schedule, the load offered fell short of the rate asked")
    parts.append(_cause(worst))
    line = "Measurement health: WARNING: " + "; ".join(parts) + f"; {REMEDY}"
    return MeasurementHealth(
        verdict="warning",
        overhead_p99_ms=bound,
        line=line,
        processes=tuple(processes),
        worst=worst.worker,
        send_lag_p99_ms=send_lag_p99_ms,
        reasons=tuple(reasons),
    )


def _cause(process: ProcessHealth) -> str:
    """Why the loop was late, as far as its clocks tell."""
    busy, wait = process.loop_busy, process.cpu_wait
    causes = []
    if busy is not None and busy >= BUSY_SHARE:
        causes.append(f"the load process kept its CPU {busy:.0%} busy (it cannot keep up)")
    if wait is not None and wait >= WAIT_SHARE:
        causes.append(
            f"the load process waited for a CPU {wait:.0%} of the time (other processes had the CPUs)"
        )
    if not causes:
        load = f" ({busy:.0%} busy)" if busy is not None else ""
        causes.append(
            f"the loop had CPU to spare{load}: something blocked it now and then (a plugin, a "
            "synchronous call, a pause of the whole machine)"
        )
    return "; ".join(causes)


def _where(process: ProcessHealth, count: int) -> str:
    if process.worker is None or count <= 1:
        return "1 load process"
    return f"worst of {count} worker processes: worker {process.worker}"


def _ms(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)
