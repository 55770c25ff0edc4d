"""The scenarios of aiperf's benchmark suite and the harness that runs them.

Each scenario declares its figures (with their goals), then runs ``aiperf profile`` as a
subprocess against the mock server, once per repeat, and adds one value per figure per repeat.
Repeats of a scenario run back to back, and within a repeat the variants (concurrencies,
rates, sinks off/on) run in turn, so that a burst of load from elsewhere on the machine
touches one repeat of every variant rather than every repeat of one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from benchlib import analysis, lagprobe, pcap
from benchlib import wire as wirelib
from benchlib.clients import Load, OtherClient, hf_tokenizer
from benchlib.figures import Figure, Figures, Goal
from benchlib.proc import Measured, cpu_seconds, run_measured

MODEL = "mock-model"
INPUT_TOKENS = 128
OUTPUT_TOKENS = 16
TTFT_MS = 50.0
ITL_MS = 10.0
CONCURRENCIES = (1, 16, 64, 256)
RATES = (100, 500, 1000)
RATE_MODES = ("constant", "poisson")
#: what the aggregator keeps per request (7 per-request metric floats, 15 chunk gaps); RSS
#: growth beyond about twice this per request is growth that should not be there.
KEPT_BYTES_PER_REQUEST = 8 * (7 + OUTPUT_TOKENS - 1)
BENCH_DIR = Path(__file__).resolve().parent.parent
#: environment variables that could send a benchmark's telemetry or traffic somewhere other
#: than loopback; the suite sets what it needs itself.
_SCRUBBED_PREFIXES = ("OTEL_", "MLFLOW_")
_SCRUBBED = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}
#: a user's installation caches bytecode; without the cache every start compiles every module
#: again, and a plugin's lazy import inside a run compiles while holding the interpreter lock.
_SCRUBBED |= {"PYTHONDONTWRITEBYTECODE"}


class ScenarioError(RuntimeError):
    """A scenario could not produce its figures (aiperf failed, the server disagreed)."""


@attrs.frozen(kw_only=True)
class Sizes:
    """Request counts of one suite mode; concurrency and rate scenarios scale with them."""

    capacity: Mapping[int, int]
    accuracy: Mapping[int, int]
    rate_seconds: float
    memory_requests: int
    postproc_records: int
    sinks_capacity: int
    sinks_accuracy: int
    startup_repeats: int
    #: requests per concurrency of the wire scenario.
    wire: Mapping[int, int]
    #: requests per concurrency of the measurement-health calibration.
    health: Mapping[int, int]
    #: requests of each run of the telemetry-tail scenario (concurrency 64, instant server).
    tail: int
    #: streams held open at once by the streams scenario, one run each.
    streams: tuple[int, ...] = (1000, 5000, 10_000)


FULL = Sizes(
    capacity={1: 500, 16: 1000, 64: 2000, 256: 4000},
    accuracy={1: 40, 16: 320, 64: 1000, 256: 2000},
    rate_seconds=3.0,
    memory_requests=100_000,
    postproc_records=1_000_000,
    sinks_capacity=2000,
    sinks_accuracy=1000,
    startup_repeats=7,
    wire={16: 2000, 64: 2000},
    health={16: 320, 64: 1000, 256: 2000, 1024: 4096},
    tail=4000,
)
QUICK = Sizes(
    # enough for a few CPU polls inside the load (0.05 s apart) at 2,000 to 5,000 req/s
    capacity={1: 300, 16: 600, 64: 1000, 256: 2000},
    accuracy={1: 15, 16: 96, 64: 256, 256: 512},
    rate_seconds=1.0,
    memory_requests=20_000,
    postproc_records=200_000,
    sinks_capacity=400,
    sinks_accuracy=256,
    startup_repeats=5,
    wire={16: 320, 64: 640},
    health={16: 96, 64: 256, 256: 512, 1024: 2048},
    tail=1000,
    streams=(500, 2000),
)


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in environ.items()
        if name not in _SCRUBBED and not name.startswith(_SCRUBBED_PREFIXES)
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def aiperf_command(python: str = sys.executable) -> list[str]:
    """The ``aiperf`` console script of this interpreter's environment, as a user runs it."""
    script = Path(python).parent / "aiperf"
    return [str(script)] if script.exists() else [python, "-m", "aiperf"]


@attrs.frozen(kw_only=True)
class ProfileRun:
    measured: Measured
    summary: dict[str, Any]
    run_dir: Path

    @property
    def requests(self) -> int:
        return int(analysis.metric(self.summary, "request_count"))

    @property
    def throughput(self) -> float:
        return analysis.metric(self.summary, "request_throughput")


@attrs.define(kw_only=True)
class Bench:
    """What every scenario shares: where to work, how often to repeat, the figures to fill."""

    scratch: Path
    sizes: Sizes
    repeats: int
    figures: Figures
    workers: int | None = None
    #: other clients (each installed in an environment of its own) to grade beside aiperf in
    #: the wire scenario.
    others: tuple[OtherClient, ...] = ()
    memory_repeats: int = 1
    #: where scenarios write tables of their own (the health calibration), beside results.
    report_dir: Path = BENCH_DIR
    python: str = sys.executable
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    env: dict[str, str] = attrs.field(factory=lambda: clean_environment(os.environ))
    runs: int = 0

    # -- figures ---------------------------------------------------------------------------------

    def figure(
        self,
        figure_id: str,
        group: str,
        name: str,
        unit: str,
        goal: Goal | None = None,
        digits: int = 2,
    ) -> Figure:
        return self.figures.declare(
            Figure(id=figure_id, group=group, name=name, unit=unit, goal=goal, digits=digits)
        )

    # -- running aiperf --------------------------------------------------------------------------

    def profile(
        self,
        url: str,
        *,
        count: int,
        concurrency: int | None = None,
        rate: float | None = None,
        mode: str | None = None,
        seed: int = 1,
        extra: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout_s: float = 300.0,
        monitor_interval_s: float = 0.1,
        command: Sequence[str] | None = None,
    ) -> ProfileRun:
        """One ``aiperf profile`` run (``command`` replaces the ``aiperf`` executable)."""
        self.runs += 1
        name = f"run{self.runs:04d}"
        run_dir = self.scratch / name
        argv = [
            *(command or aiperf_command(self.python)), "profile",
            "--url", url,
            "--model", MODEL,
            "--endpoint-type", "chat",
            "--streaming",
            "--synthetic-input-tokens-mean", str(INPUT_TOKENS),
            "--output-tokens-mean", str(OUTPUT_TOKENS),
            "--request-count", str(count),
            "--random-seed", str(seed),
            # relative to the working directory, so no machine path shows up in a profile
            "--artifact-dir", name,
            "--no-progress",
        ]  # fmt: skip
        if concurrency is not None:
            argv += ["--concurrency", str(concurrency)]
        if rate is not None:
            argv += ["--request-rate", f"{rate:g}", "--request-rate-mode", mode or "constant"]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        argv += list(extra)
        measured = run_measured(
            argv,
            cwd=self.scratch,
            env={**self.env, **(env or {})},
            timeout_s=timeout_s,
            monitor_interval_s=monitor_interval_s,
        )
        if not measured.ok:
            tail = (measured.stderr.strip() or measured.stdout.strip())[-600:]
            raise ScenarioError(f"aiperf profile exited {measured.returncode}: {tail}")
        summary = analysis.read_summary(run_dir)
        return ProfileRun(measured=measured, summary=summary, run_dir=run_dir)

    def drop(self, run: ProfileRun) -> None:
        """Remove a run directory that has been read (the 100k-request JSONL is large)."""
        shutil.rmtree(run.run_dir, ignore_errors=True)


def load1() -> float:
    return os.getloadavg()[0]


def check_counts(run: ProfileRun, expected: int, server_ok: int | None = None) -> None:
    """A run that lost requests cannot be compared with anything: stop the scenario."""
    errors = int(analysis.metric(run.summary, "error_request_count"))
    if run.requests != expected or errors:
        raise ScenarioError(
            f"aiperf reported {run.requests} good and {errors} failed requests of {expected}"
        )
    if server_ok is not None and server_ok != expected:
        raise ScenarioError(f"the server completed {server_ok} requests, aiperf sent {expected}")


@contextmanager
def mock_server(**options: Any) -> Iterator[Any]:
    from aiperf.testing import MockServer

    with MockServer(**options) as server:
        yield server


# -- capacity ------------------------------------------------------------------------------------


def capacity(bench: Bench) -> None:
    """Requests per second against an instant server, and what they cost in CPU and memory."""
    counts = bench.sizes.capacity
    for c in CONCURRENCIES:
        goal = Goal(op=">=", bound=1000, text="≥ 1000 req/s") if c == 64 else None
        bench.figure(f"capacity_c{c}", "capacity", f"capacity, concurrency {c}, instant server", "req/s", goal, 0)
        bench.figure(f"client_cpu_per_1k_c{c}", "capacity", f"aiperf CPU per 1000 requests under load, concurrency {c}", "CPU s", digits=3)
    bench.figure("client_cpu_total_per_1k_c64", "capacity", "aiperf CPU per 1000 requests, whole run (start-up and exports too), concurrency 64", "CPU s", digits=3)
    bench.figure("server_cpu_per_1k_c64", "capacity", "mock server CPU per 1000 requests, concurrency 64", "CPU s", digits=3)
    for c in (64, 256):
        bench.figure(f"peak_rss_c{c}", "capacity", f"peak RSS, all aiperf processes, concurrency {c}", "MiB", digits=0)
    bench.figure("processes_c64", "capacity", "aiperf processes at concurrency 64", "", digits=0)
    # With aiperf's own choice of workers above, the load split over two processes as well.
    split = bench.workers is None
    if split:
        bench.figure("capacity_c64_workers2", "capacity", "capacity, concurrency 64, `--workers 2`", "req/s", digits=0)
        bench.figure("peak_rss_c64_workers2", "capacity", "peak RSS, all aiperf processes, c64 `--workers 2`", "MiB", digits=0)
    with mock_server() as server:
        for rep in range(bench.repeats):
            if split:
                capacity_split(bench, server, rep)
            for c in CONCURRENCIES:
                count = counts[c]
                load = load1()
                server.reset_stats()
                server_cpu0 = cpu_seconds(server.pid)
                run = bench.profile(server.url, count=count, concurrency=c, seed=rep + 1, monitor_interval_s=0.05)
                server_cpu = cpu_seconds(server.pid) - server_cpu0
                check_counts(run, count, server.stats()["requests"]["ok"])
                per_1k = steady_cpu_per_1k(run)
                bench.figures[f"capacity_c{c}"].add(run.throughput, load)
                bench.figures[f"client_cpu_per_1k_c{c}"].add(per_1k, load)
                if c == 64:
                    bench.figures["client_cpu_total_per_1k_c64"].add(run.measured.cpu_s / count * 1000, load)
                    bench.figures["server_cpu_per_1k_c64"].add(server_cpu / count * 1000, load)
                    bench.figures["processes_c64"].add(run.measured.processes, load)
                if c in (64, 256):
                    bench.figures[f"peak_rss_c{c}"].add(run.measured.peak_rss_kib / 1024, load)
                bench.say(
                    f"  capacity c{c} run {rep + 1}/{bench.repeats}: {run.throughput:.0f} req/s, "
                    f"{per_1k:.3f} CPU s/1000, {run.measured.peak_rss_kib / 1024:.0f} MiB, load {load:.1f}"
                )
                bench.drop(run)


def capacity_split(bench: Bench, server: Any, rep: int) -> None:
    count = bench.sizes.capacity[64]
    load = load1()
    server.reset_stats()
    run = bench.profile(server.url, count=count, concurrency=64, seed=rep + 1, extra=["--workers", "2"])
    check_counts(run, count, server.stats()["requests"]["ok"])
    bench.figures["capacity_c64_workers2"].add(run.throughput, load)
    bench.figures["peak_rss_c64_workers2"].add(run.measured.peak_rss_kib / 1024, load)
    bench.say(
        f"  capacity c64 --workers 2 run {rep + 1}/{bench.repeats}: {run.throughput:.0f} req/s, "
        f"{run.measured.processes} processes, {run.measured.peak_rss_kib / 1024:.0f} MiB, load {load:.1f}"
    )
    bench.drop(run)


# -- workers --------------------------------------------------------------------------------------

#: the concurrency of the workers scenario: where one process on two cores falls behind.
WORKERS_CONCURRENCY = 256


def worker_counts(cpus: float) -> list[int]:
    """``--workers`` values to compare: 1, 2 and 4 always; 8 and 16 where there are the cores."""
    return [1, 2, 4] + [n for n in (8, 16) if cpus >= n]


def workers(bench: Bench) -> None:
    """Capacity and TTFT accuracy at concurrency 256 with the load spread over 1, 2, 4 (8, 16)
    processes. Where there are fewer cores than workers (plus the server), the figures show
    what oversubscribing costs."""
    from aiperf._health import available_cpus

    c = WORKERS_CONCURRENCY
    counts = worker_counts(available_cpus())
    for n in counts:
        label = f"c{c}, `--workers {n}`"
        bench.figure(f"workers{n}_capacity", "workers", f"capacity, instant server, {label}", "req/s", digits=0)
        bench.figure(f"workers{n}_peak_rss", "workers", f"peak RSS, all aiperf processes, {label}", "MiB", digits=0)
        bench.figure(f"workers{n}_ttft_p50_err", "workers", f"TTFT p50 error (50 ms / 10 ms server), {label}", "ms", digits=3)
        bench.figure(f"workers{n}_ttft_p99_err", "workers", f"TTFT p99 error (50 ms / 10 ms server), {label}", "ms", digits=3)
        bench.figure(f"workers{n}_gap_p99_err", "workers", f"per-chunk gap p99 error, {label}", "ms", digits=3)
    with mock_server() as instant, mock_server(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as timed:
        for rep in range(bench.repeats):
            for n in counts:
                flags = ["--workers", str(n)]
                count = bench.sizes.capacity[c]
                load = load1()
                instant.reset_stats()
                run = bench.profile(instant.url, count=count, concurrency=c, seed=rep + 1, extra=flags)
                check_counts(run, count, instant.stats()["requests"]["ok"])
                bench.figures[f"workers{n}_capacity"].add(run.throughput, load)
                bench.figures[f"workers{n}_peak_rss"].add(run.measured.peak_rss_kib / 1024, load)
                bench.drop(run)
                errors, _stats, load = measure_accuracy(
                    bench, timed, c, bench.sizes.accuracy[c], seed=rep + 1, extra=flags
                )
                bench.figures[f"workers{n}_ttft_p50_err"].add(errors.ttft_p50, load)
                bench.figures[f"workers{n}_ttft_p99_err"].add(errors.ttft_p99, load)
                bench.figures[f"workers{n}_gap_p99_err"].add(errors.chunk_gap_p99, load)
                bench.say(
                    f"  workers {n} c{c} run {rep + 1}/{bench.repeats}: {run.throughput:.0f} req/s, "
                    f"{run.measured.peak_rss_kib / 1024:.0f} MiB; TTFT err p50 {errors.ttft_p50:+.3f} "
                    f"p99 {errors.ttft_p99:+.3f} ms, gap p99 {errors.chunk_gap_p99:+.3f} ms, load {load:.1f}"
                )


@attrs.frozen(kw_only=True)
class LoadPhase:
    """When a run's requests were in flight, in seconds since its process started."""

    window: tuple[float, float]
    #: every request's completion time.
    ends: tuple[float, ...]

    @classmethod
    def of(cls, run: ProfileRun) -> LoadPhase:
        t0 = run.measured.started_at
        starts, ends = [], []
        for record in analysis.iter_records(run.run_dir):
            if record.get("phase", "profile") == "profile":
                starts.append(record["start_time_ns"] / 1e9 - t0)
                ends.append(record["end_time_ns"] / 1e9 - t0)
        return cls(window=(min(starts), max(ends)), ends=tuple(ends))


# -- accuracy ------------------------------------------------------------------------------------


def accuracy(bench: Bench) -> None:
    """Reported timing minus the server's own, with a 50 ms TTFT and 10 ms per token."""
    for c in CONCURRENCIES:
        gated = c in (16, 64)
        bench.figure(
            f"ttft_p50_err_c{c}", "accuracy", f"TTFT p50 error, concurrency {c}", "ms",
            Goal(op="abs<=", bound=0.5, text="≤ 0.5 ms") if gated else None, 3,
        )  # fmt: skip
        bench.figure(
            f"ttft_p99_err_c{c}", "accuracy", f"TTFT p99 error, concurrency {c}", "ms",
            Goal(op="abs<=", bound=3.0, text="≤ 3 ms") if gated else None, 3,
        )  # fmt: skip
        bench.figure(
            f"gap_p99_err_c{c}", "accuracy", f"per-chunk gap p99 error, concurrency {c}", "ms",
            Goal(op="abs<=", bound=2.0, text="≤ 2 ms") if c == 64 else None, 3,
        )  # fmt: skip
        bench.figure(f"itl_p50_err_c{c}", "accuracy", f"ITL p50 error, concurrency {c}", "ms", digits=3)
        bench.figure(f"true_ttft_p99_c{c}", "accuracy", f"server's own TTFT p99 (true 50), concurrency {c}", "ms", digits=2)
    counts = bench.sizes.accuracy
    with mock_server(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as server:
        for rep in range(bench.repeats):
            for c in CONCURRENCIES:
                errors, stats, load = measure_accuracy(bench, server, c, counts[c], seed=rep + 1)
                record_accuracy(bench, c, errors, stats, load, suffix="")
                bench.say(
                    f"  accuracy c{c} run {rep + 1}/{bench.repeats}: TTFT err p50 {errors.ttft_p50:+.3f} "
                    f"p99 {errors.ttft_p99:+.3f} ms, gap p99 {errors.chunk_gap_p99:+.3f} ms, load {load:.1f}"
                )


def measure_accuracy(
    bench: Bench,
    server: Any,
    concurrency: int,
    count: int,
    *,
    seed: int,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[analysis.AccuracyErrors, dict[str, Any], float]:
    load = load1()
    server.reset_stats()
    run = bench.profile(
        server.url, count=count, concurrency=concurrency, seed=seed, extra=extra, env=env
    )
    stats = server.stats(raw=True)
    check_counts(run, count, stats["requests"]["ok"])
    bench.drop(run)
    return analysis.accuracy_errors(run.summary, stats), stats, load


def record_accuracy(
    bench: Bench,
    c: int,
    errors: analysis.AccuracyErrors,
    stats: Mapping[str, Any],
    load: float,
    suffix: str,
) -> None:
    bench.figures[f"ttft_p50_err_c{c}{suffix}"].add(errors.ttft_p50, load)
    bench.figures[f"ttft_p99_err_c{c}{suffix}"].add(errors.ttft_p99, load)
    if not suffix:
        bench.figures[f"gap_p99_err_c{c}"].add(errors.chunk_gap_p99, load)
        bench.figures[f"itl_p50_err_c{c}"].add(errors.itl_p50, load)
        bench.figures[f"true_ttft_p99_c{c}"].add(analysis.truth(stats, "ttft_ms", "p99"), load)


# -- request rate --------------------------------------------------------------------------------


def rate(bench: Bench) -> None:
    """Open-loop rates: did requests leave when the schedule said, at the rate asked for?"""
    within_1pct = Goal(op="abs<=", bound=1.0, text="within 1 %")
    for mode in RATE_MODES:
        for r in RATES:
            key = f"{mode}_{r}"
            label = f"{mode} {r} req/s"
            bench.figure(
                f"rate_sent_vs_requested_{key}", "rate", f"{label}: achieved send rate vs requested",
                "%", within_1pct if mode == "constant" else None, 2,
            )  # fmt: skip
            bench.figure(
                f"rate_sent_vs_schedule_{key}", "rate", f"{label}: achieved send rate vs its schedule",
                "%", within_1pct, 2,
            )  # fmt: skip
            bench.figure(
                f"rate_throughput_vs_requested_{key}", "rate",
                f"{label}: request_count / benchmark_duration vs requested", "%", digits=2,
            )  # fmt: skip
            bench.figure(f"send_lag_p50_{key}", "rate", f"{label}: send lag p50", "ms", digits=3)
            bench.figure(f"send_lag_p99_{key}", "rate", f"{label}: send lag p99", "ms", digits=3)
    with mock_server() as server:
        for rep in range(bench.repeats):
            for mode in RATE_MODES:
                for r in RATES:
                    measure_rate(bench, server, mode, r, seed=rep + 1, rep=rep)


def measure_rate(bench: Bench, server: Any, mode: str, r: int, *, seed: int, rep: int) -> None:
    count = max(50, int(r * bench.sizes.rate_seconds))
    key = f"{mode}_{r}"
    load = load1()
    server.reset_stats()
    run = bench.profile(server.url, count=count, rate=r, mode=mode, seed=seed)
    check_counts(run, count, server.stats()["requests"]["ok"])
    rates = analysis.send_rates(analysis.iter_records(run.run_dir))
    sent_vs_requested = analysis.relative_error_pct(rates.sent_rate, r)
    bench.figures[f"rate_sent_vs_requested_{key}"].add(sent_vs_requested, load)
    bench.figures[f"rate_sent_vs_schedule_{key}"].add(
        analysis.relative_error_pct(rates.sent_rate, rates.intended_rate), load
    )
    bench.figures[f"rate_throughput_vs_requested_{key}"].add(
        analysis.relative_error_pct(run.throughput, r), load
    )
    bench.figures[f"send_lag_p50_{key}"].add(analysis.send_lag(run.summary, "p50"), load)
    bench.figures[f"send_lag_p99_{key}"].add(analysis.send_lag(run.summary, "p99"), load)
    if mode == "poisson" and rep == 0:
        sigma = analysis.poisson_rate_sigma_pct(count)
        bench.figures[f"rate_sent_vs_requested_{key}"].notes.append(
            f"a Poisson schedule of {count} requests is itself off its rate by ±{sigma:.1f} % (1 σ)"
        )
    bench.say(
        f"  rate {mode} {r}/s run {rep + 1}/{bench.repeats}: sent {rates.sent_rate:.1f}/s "
        f"(schedule {rates.intended_rate:.1f}/s), lag p99 {analysis.send_lag(run.summary, 'p99'):.2f} ms, "
        f"load {load:.1f}"
    )
    bench.drop(run)


# -- start-up ------------------------------------------------------------------------------------


def startup(bench: Bench) -> None:
    """``aiperf --help`` and a whole 1-request run, wall time, as a user waits for them."""
    help_fig = bench.figure(
        "help_wall", "startup", "`aiperf --help` wall time, every plugin installed", "s",
        Goal(op="<=", bound=0.25, text="≤ 0.25 s"), 3,
    )  # fmt: skip
    python_fig = bench.figure("python_wall", "startup", "bare interpreter start (`python -c pass`), for scale", "s", digits=3)
    one_fig = bench.figure(
        "one_request_wall", "startup", "1-request `aiperf profile` wall time", "s",
        Goal(op="<=", bound=1.0, text="≤ 1 s"), 3,
    )  # fmt: skip
    one_cpu = bench.figure("one_request_cpu", "startup", "1-request `aiperf profile` CPU time", "CPU s", digits=3)
    repeats = max(bench.repeats, bench.sizes.startup_repeats)
    aiperf = aiperf_command(bench.python)
    timed = {"monitor_interval_s": None, "env": bench.env, "cwd": bench.scratch}
    # One untimed run of each first: the first start after an install reads the files from
    # disk and writes bytecode; a user's second start does neither.
    run_measured([*aiperf, "--help"], **timed)  # type: ignore[arg-type]
    for _ in range(repeats):
        load = load1()
        help_run = run_measured([*aiperf, "--help"], **timed)  # type: ignore[arg-type]
        if not help_run.ok:
            raise ScenarioError(f"aiperf --help exited {help_run.returncode}: {help_run.stderr[-400:]}")
        help_fig.add(help_run.wall_s, load)
        python_fig.add(run_measured([bench.python, "-c", "pass"], **timed).wall_s, load)  # type: ignore[arg-type]
    with mock_server() as server:
        bench.profile(server.url, count=1, concurrency=1)
        for rep in range(repeats):
            load = load1()
            run = bench.profile(server.url, count=1, concurrency=1, seed=rep + 1, monitor_interval_s=1.0)
            check_counts(run, 1)
            one_fig.add(run.measured.wall_s, load)
            one_cpu.add(run.measured.cpu_s, load)
            bench.drop(run)
    bench.say(
        f"  startup: --help {help_fig.summary.median:.3f} s, 1-request run {one_fig.summary.median:.3f} s"
    )


# -- memory --------------------------------------------------------------------------------------


def memory(bench: Bench) -> None:
    """RSS of every aiperf process over a long run: the peak, and whether it keeps growing."""
    count = bench.sizes.memory_requests
    label = f"{count // 1000}k" if count % 1000 == 0 else str(count)
    peak = bench.figure(
        "memory_peak", "memory", f"peak RSS at {count:,} requests, all aiperf processes (c64)",
        "MiB", Goal(op="<=", bound=150, text="≤ 150 MiB"), 0,
    )  # fmt: skip
    growth = bench.figure(
        "memory_growth", "memory",
        f"RSS growth after warm-up, {label} requests (aggregator keeps {KEPT_BYTES_PER_REQUEST} B/request)",
        "B/request", Goal(op="<=", bound=2 * KEPT_BYTES_PER_REQUEST, text=f"≤ {2 * KEPT_BYTES_PER_REQUEST} B/request"), 0,
    )  # fmt: skip
    late = bench.figure("memory_load_end", "memory", f"RSS at the end of the load, {label} requests", "MiB", digits=0)
    cpu = bench.figure("memory_cpu_per_1k", "memory", f"aiperf CPU per 1000 requests under load, {label} requests", "CPU s", digits=3)
    trend_samples: list[dict[str, float]] = []
    with mock_server() as server:
        for rep in range(bench.memory_repeats):
            load = load1()
            run = bench.profile(
                server.url, count=count, concurrency=64, seed=rep + 1, timeout_s=900, monitor_interval_s=0.25
            )
            check_counts(run, count, server.stats()["requests"]["ok"])
            trend, series = load_phase_trend(run)
            per_1k = steady_cpu_per_1k(run)
            peak.add(run.measured.peak_rss_kib / 1024, load)
            growth.add(trend.slope_mib_per_s * 2**20 / run.throughput, load)
            late.add(trend.late_mib, load)
            cpu.add(per_1k, load)
            trend_samples = series
            bench.say(
                f"  memory {count} requests run {rep + 1}: peak {run.measured.peak_rss_kib / 1024:.0f} MiB, "
                f"after warm-up {trend.early_mib:.0f} -> {trend.late_mib:.0f} MiB, load {load:.1f}"
            )
            bench.drop(run)
    if trend_samples:
        # Every 10th sample: enough to draw the curve, small enough to commit.
        peak.data["rss_over_time"] = trend_samples[::10]


#: how long the streams scenario's server waits before its first token: long enough that every
#: stream is open at once, even the last of 10,000 to connect.
STREAMS_TTFT_MS = 8000.0


def streams(bench: Bench) -> None:
    """Many streams open at once: none fails for the client's sake (descriptors, memory), and
    what one costs in memory (the run's own ``bytes_per_in_flight_stream``)."""
    for n in bench.sizes.streams:
        bench.figure(
            f"streams_failed_{n}", "streams", f"requests failed with {n:,} streams open at once", "requests",
            Goal(op="<=", bound=0, text="0"), 0,
        )  # fmt: skip
        bench.figure(f"streams_in_flight_{n}", "streams", f"most streams in flight, {n:,} asked", "streams", digits=0)
        bench.figure(
            f"streams_bytes_{n}", "streams", f"memory per stream in flight, {n:,} streams (the run's own figure)",
            "KiB", digits=1,
        )  # fmt: skip
        bench.figure(f"streams_rss_{n}", "streams", f"peak RSS, all aiperf processes, {n:,} streams", "MiB", digits=0)
    with mock_server(ttft_ms=STREAMS_TTFT_MS, itl_ms=1.0) as server:
        for n in bench.sizes.streams:
            load = load1()
            run = bench.profile(server.url, count=n, concurrency=n, timeout_s=600)
            failed = int(analysis.metric(run.summary, "error_request_count"))
            block = run.summary.get("measurement_health") or {}
            in_flight = sum(p.get("memory", {}).get("in_flight_peak", 0) for p in block.get("processes", []))
            per_stream = block.get("bytes_per_in_flight_stream")
            # Every stream asked for that did not come back good: failed, or never sent.
            bench.figures[f"streams_failed_{n}"].add(n - run.requests, load)
            bench.figures[f"streams_in_flight_{n}"].add(in_flight, load)
            bench.figures[f"streams_bytes_{n}"].add(math.nan if per_stream is None else per_stream / 1024, load)
            bench.figures[f"streams_rss_{n}"].add(run.measured.peak_rss_kib / 1024, load)
            bench.say(
                f"  streams {n}: {run.requests} ok, {failed} failed, {in_flight} in flight at most, "
                f"{'?' if per_stream is None else f'{per_stream / 1024:.1f}'} KiB each, "
                f"peak {run.measured.peak_rss_kib / 1024:.0f} MiB, load {load:.1f}"
            )
            bench.drop(run)


def steady_cpu_per_1k(run: ProfileRun) -> float:
    phase = LoadPhase.of(run)
    samples = [(s.t, s.cpu_s) for s in run.measured.samples]
    return analysis.steady_cpu_per_1k(samples, phase.ends, phase.window)


def load_phase_trend(run: ProfileRun) -> tuple[analysis.MemoryTrend, list[dict[str, float]]]:
    """RSS over the load phase (first send to last answer), warm-up being its first fifth."""
    t_first, t_last = LoadPhase.of(run).window
    inside = [
        (s.t - t_first, s.rss_kib / 1024) for s in run.measured.samples if t_first <= s.t <= t_last
    ]
    trend = analysis.memory_trend(inside, warmup_s=(t_last - t_first) / 5)
    series = [{"t_s": round(t, 2), "rss_mib": round(m, 1)} for t, m in inside]
    return trend, series


# -- post-processing -----------------------------------------------------------------------------


def postproc(bench: Bench) -> None:
    """Summary statistics over a million synthetic records, with aiperf's own aggregator."""
    records = bench.sizes.postproc_records
    # The goal is about a million records; a smaller (quick) run is for information only.
    goal = Goal(op="<=", bound=5.0, text="≤ 5 s") if records >= 1_000_000 else None
    summary = bench.figure(
        "postproc_summary", "postproc", f"summary statistics of {records:,} records, wall", "s", goal, 3
    )
    summary_cpu = bench.figure("postproc_summary_cpu", "postproc", f"summary statistics of {records:,} records, CPU", "CPU s", digits=3)
    ingest = bench.figure("postproc_ingest", "postproc", "aggregator ingest per record (during the run), CPU", "µs", digits=2)
    script = BENCH_DIR / "benchlib" / "postproc.py"
    for rep in range(bench.repeats):
        load = load1()
        result = subprocess.run(
            [bench.python, str(script), "--records", str(records), "--seed", str(rep)],
            capture_output=True,
            text=True,
            env=bench.env,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            raise ScenarioError(f"postproc exited {result.returncode}: {result.stderr[-600:]}")
        data = json.loads(result.stdout)
        summary.add(data["summary_s"], load)
        summary_cpu.add(data["summary_cpu_s"], load)
        ingest.add(data["ingest_cpu_s"] / records * 1e6, load)
        bench.say(
            f"  postproc run {rep + 1}/{bench.repeats}: summary {data['summary_s']:.3f} s, "
            f"ingest {data['ingest_cpu_s']:.2f} CPU s, load {load:.1f}"
        )


# -- sinks ---------------------------------------------------------------------------------------


def sinks(bench: Bench) -> None:
    """Capacity and TTFT accuracy at concurrency 64 with OTel and MLflow streaming live.

    Each repeat runs capacity with no sink, OTel only, MLflow only and both, in turn, so that
    the cost of each sink is compared with a run under the same machine load.
    """
    ratio = bench.figure(
        "sinks_capacity_ratio", "sinks", "capacity c64 with OTel + MLflow on / off", "×",
        Goal(op=">=", bound=0.95, text="≥ 0.95 (within 5 %)"), 3,
    )  # fmt: skip
    on = bench.figure("sinks_capacity_c64_on", "sinks", "capacity c64, sinks on", "req/s", digits=0)
    off = bench.figure("sinks_capacity_c64_off", "sinks", "capacity c64, sinks off (paired runs)", "req/s", digits=0)
    for variant, label in SINK_VARIANTS.items():
        bench.figure(
            f"sinks_cpu_ratio_{variant}", "sinks",
            f"aiperf CPU per request under load c64, {label} / no sink", "×", digits=3,
        )  # fmt: skip
    run_cpu_ratio = bench.figure("sinks_run_cpu_ratio", "sinks", "aiperf CPU of the whole c64 run (start-up, upload), OTel + MLflow / no sink", "×", digits=3)
    for name, bound in (("p50", 0.5), ("p99", 3.0)):
        bench.figure(
            f"ttft_{name}_err_c64_sinks", "sinks", f"TTFT {name} error c64, sinks on", "ms",
            Goal(op="abs<=", bound=bound, text=f"≤ {bound:g} ms"), 3,
        )  # fmt: skip
        bench.figure(f"ttft_{name}_err_c64_nosinks", "sinks", f"TTFT {name} error c64, sinks off (paired runs)", "ms", digits=3)
    exports = bench.figure("sinks_otlp_exports", "sinks", "OTLP exports received per OTel + MLflow run", "", digits=0)
    lost = bench.figure("sinks_mlflow_points_lost", "sinks", "MLflow live points dropped or failed per OTel + MLflow c64 run", "", digits=0)
    processes = bench.figure("sinks_processes", "sinks", "aiperf processes, OTel + MLflow c64", "", digits=0)
    rss = bench.figure("sinks_peak_rss", "sinks", "peak RSS, all aiperf processes, OTel + MLflow c64", "MiB", digits=0)
    with otlp_sink(bench) as otlp, mock_server() as instant, mock_server(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as timed:
        for rep in range(bench.repeats):
            runs: dict[str, ProfileRun] = {}
            for variant in ("none", *SINK_VARIANTS):
                load = load1()
                before = otlp.counts()
                instant.reset_stats()
                run = bench.profile(
                    instant.url, count=bench.sizes.sinks_capacity, concurrency=64, seed=rep + 1,
                    extra=sink_flags(bench, otlp.url, variant), monitor_interval_s=0.05,
                )  # fmt: skip
                check_counts(run, bench.sizes.sinks_capacity, instant.stats()["requests"]["ok"])
                check_sinks(run, otlp, before, variant)
                runs[variant] = run
                if variant == "both":
                    exports.add(otlp.exports_since(before), load)
                    lost.add(mlflow_points_lost(run), load)
                    processes.add(run.measured.processes, load)
                    rss.add(run.measured.peak_rss_kib / 1024, load)
                if variant in ("none", "both"):
                    (on if variant == "both" else off).add(run.throughput, load)
                    errors, _, load = measure_accuracy(
                        bench, timed, 64, bench.sizes.sinks_accuracy, seed=rep + 1,
                        extra=sink_flags(bench, otlp.url, variant),
                    )  # fmt: skip
                    suffix = "_sinks" if variant == "both" else "_nosinks"
                    bench.figures[f"ttft_p50_err_c64{suffix}"].add(errors.ttft_p50, load)
                    bench.figures[f"ttft_p99_err_c64{suffix}"].add(errors.ttft_p99, load)
            base = steady_cpu_per_1k(runs["none"])
            for variant in SINK_VARIANTS:
                bench.figures[f"sinks_cpu_ratio_{variant}"].add(steady_cpu_per_1k(runs[variant]) / base, load)
            ratio.add(runs["both"].throughput / runs["none"].throughput, load)
            run_cpu_ratio.add(runs["both"].measured.cpu_s / runs["none"].measured.cpu_s, load)
            bench.say(
                f"  sinks run {rep + 1}/{bench.repeats}: "
                + ", ".join(f"{v} {r.throughput:.0f} req/s" for v, r in runs.items())
                + f", load {load:.1f}"
            )
            for run in runs.values():
                bench.drop(run)


SINK_VARIANTS = {"otel": "OTel", "mlflow": "MLflow", "both": "OTel + MLflow"}


def sink_flags(bench: Bench, otlp_url: str, variant: str) -> list[str]:
    # One store for the scenario: each run adds an MLflow run to it, as a user's sweep would.
    store = bench.scratch / "mlruns"
    otel = ["--otel-url", otlp_url]
    mlflow = ["--mlflow-tracking-uri", f"file:{store}", "--mlflow-experiment", "aiperf-bench"]
    return {"none": [], "otel": otel, "mlflow": mlflow, "both": otel + mlflow}[variant]


def mlflow_points_lost(run: ProfileRun) -> int:
    """What the live MLflow sink did not log (buffer full, failed): it should keep up."""
    counts = json.loads((run.run_dir / "mlflow_export.json").read_text())["live_points"]
    return int(counts["dropped"]) + int(counts["failed"])


def check_sinks(run: ProfileRun, otlp: OtlpSink, before: Mapping[str, Any], variant: str) -> None:
    """The sinks really ran: telemetry reached the receiver, the MLflow run was recorded."""
    exported = otlp.exports_since(before)
    if variant in ("otel", "both") and exported == 0:
        raise ScenarioError(f"the OTLP receiver got no export from a run with {variant} on")
    if variant in ("none", "mlflow") and exported:
        raise ScenarioError(f"the OTLP receiver got {exported} exports from a run without OTel")
    if (variant in ("mlflow", "both")) != (run.run_dir / "mlflow_export.json").exists():
        raise ScenarioError(f"mlflow_export.json does not match the {variant} run")


@attrs.define
class OtlpSink:
    url: str
    process: subprocess.Popen[bytes]

    def counts(self) -> dict[str, Any]:
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/counts", timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result

    def exports_since(self, before: Mapping[str, Any]) -> int:
        return sum(self.counts()["requests"].values()) - sum(before["requests"].values())


@contextmanager
def otlp_sink(bench: Bench) -> Iterator[OtlpSink]:
    from benchlib.otlp_sink import LISTENING_PREFIX

    process = subprocess.Popen(
        [bench.python, str(BENCH_DIR / "benchlib" / "otlp_sink.py")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=bench.env,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith(LISTENING_PREFIX):
            raise ScenarioError(f"the OTLP receiver did not start: {line!r}")
        yield OtlpSink(url=line[len(LISTENING_PREFIX) :].strip(), process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# -- warm-up -------------------------------------------------------------------------------------


def warm_up(bench: Bench) -> None:
    """One untimed ``--help`` and one 1-request run with every sink on, before any figure.

    A fresh environment (``nox -s bench`` makes one) has no bytecode cache: the first start
    compiles every module aiperf and its plugins import, some of them lazily in the middle of
    a run. A user's machine has compiled them by its second run, so the suite measures that.
    """
    bench.say("[warm-up]")
    run_measured([*aiperf_command(bench.python), "--help"], env=bench.env, cwd=bench.scratch, monitor_interval_s=None)
    with otlp_sink(bench) as otlp, mock_server() as server:
        run = bench.profile(server.url, count=1, concurrency=1, extra=sink_flags(bench, otlp.url, "both"))
        check_counts(run, 1)
        bench.drop(run)


# -- profiles ------------------------------------------------------------------------------------


def profiles(bench: Bench, out_dir: Path) -> list[Path]:
    """Where the time goes: pyinstrument over the runs behind the goals not met.

    A 1-request run (start-up), the capacity run at c64, the same with both sinks on, and the
    accuracy run at c64; written as text trees into ``out_dir``. pyinstrument samples wall
    time, so on a busy machine the time spent waiting for a CPU shows up inside whatever
    was running.
    """
    try:
        import pyinstrument  # noqa: F401
    except ImportError as exc:
        raise ScenarioError(
            "--profile needs pyinstrument in the benchmark's environment: pip install pyinstrument"
        ) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    capacity_count = bench.sizes.capacity[64]
    with otlp_sink(bench) as otlp, mock_server() as instant, mock_server(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as timed:
        cases = (
            ("one_request", instant, 1, 1, []),
            ("capacity_c64", instant, capacity_count, 64, []),
            ("capacity_c64_sinks", instant, capacity_count, 64, sink_flags(bench, otlp.url, "both")),
            ("accuracy_c64", timed, bench.sizes.accuracy[64], 64, []),
        )
        for name, server, count, concurrency, extra in cases:
            raw = bench.scratch / f"{name}.txt"
            command = [bench.python, "-m", "pyinstrument", "--interval", "0.001", "-o", str(raw), "-m", "aiperf"]
            run = bench.profile(server.url, count=count, concurrency=concurrency, command=command, extra=extra)
            check_counts(run, count)
            target = out_dir / f"{name}.txt"
            text = scrub(raw.read_text(), [instant.url, timed.url, otlp.url], bench.scratch)
            target.write_text(text)
            written.append(target)
            bench.say(f"  profile of {name}: {target.relative_to(BENCH_DIR.parent)}")
            bench.drop(run)
    return written


def scrub(text: str, urls: Sequence[str], scratch: Path) -> str:
    """A profile as it may be published: no machine paths, no port of the moment."""
    for url in urls:
        text = text.replace(url, "http://127.0.0.1:PORT")
    for path in sorted({str(scratch), str(BENCH_DIR.parent), sys.prefix, sys.base_prefix}, key=len, reverse=True):
        text = text.replace(path + os.sep, "").replace(path, ".")
    return text


# -- wire ----------------------------------------------------------------------------------------

WIRE_CONCURRENCIES = (16, 64)
#: a request's ideal latency against the 50/10 server: TTFT plus 15 token gaps.
WIRE_LATENCY_S = (TTFT_MS + (OUTPUT_TOKENS - 1) * ITL_MS) / 1000


def wire(bench: Bench) -> None:
    """aiperf graded by a loopback packet capture: send spread, turnaround, TTFT, stalls."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise ScenarioError(
            "the wire scenario needs tcpdump to capture loopback traffic: apt-get install tcpdump"
        )
    for c in WIRE_CONCURRENCIES:
        gated = c == 64
        ideal = c / WIRE_LATENCY_S
        for fid, name, unit, goal, digits in (
            ("send_spread_p50", "request send spread (last − first packet) p50", "ms", None, 3),
            ("send_spread_p99", "request send spread p99", "ms", None, 3),
            ("multi_packet", "requests sent as more than one packet", "", None, 0),
            ("turnaround_p50", "turnaround (response end → next request) p50", "ms",
             Goal(op="<=", bound=1.0, text="≤ 1 ms") if gated else None, 3),
            ("turnaround_p99", "turnaround p99", "ms", Goal(op="<=", bound=5.0, text="≤ 5 ms") if gated else None, 3),
            ("turnaround_max", "turnaround max", "ms", None, 2),
            ("turnaround_stalls", f"turnarounds over {wirelib.STALL_MS:g} ms", "", None, 0),
            ("ttft_p50", "TTFT by the wire (first request packet → first content) p50", "ms", None, 2),
            ("ttft_p99", "TTFT by the wire p99", "ms", None, 2),
            ("ttft_last_p99", "TTFT from the last request packet (the server's view) p99", "ms", None, 2),
            ("ttft_err_p50", "aiperf TTFT − wire TTFT, per request, p50", "ms", None, 3),
            ("ttft_err_p99", "aiperf TTFT − wire TTFT, per request, p99", "ms", None, 3),
            ("gap_err_p99", "aiperf chunk gap − wire gap, per gap, p99", "ms", None, 3),
            ("rate", f"steady request rate by the wire (ideal {ideal:.0f})", "req/s",
             Goal(op=">=", bound=round(0.99 * ideal), text=f"≥ {0.99 * ideal:.0f} req/s (99 %)") if gated else None, 1),
            ("rate_pct", "steady request rate / ideal", "%", None, 1),
            ("throughput", "aiperf's request_throughput (whole run, ramp and drain included)", "req/s", None, 1),
            ("lag_p99", "event-loop lag p99 (1 ms probe)", "ms", None, 3),
            ("lag_max", "event-loop lag max", "ms", None, 2),
            ("loop_stalls", f"event-loop stalls over {wirelib.STALL_MS:g} ms, any cause", "", None, 0),
            ("loop_stalls_own", f"event-loop stalls over {wirelib.STALL_MS:g} ms with the loop's thread "
             f"running over {wirelib.STALL_MS:g} ms (aiperf's own work)", "",
             Goal(op="<=", bound=0, text="0") if gated else None, 0),
            ("busy_max", "the loop's longest stretch of CPU between two probe wake-ups", "ms", None, 2),
            ("gc_max", "longest garbage collection during the load", "ms", None, 2),
            ("gc_cpu_max", "CPU time of the costliest collection during the load", "ms", None, 2),
            ("gc_slow", f"garbage collections over {wirelib.STALL_MS:g} ms during the load", "", None, 0),
            ("match_offset_p99", "first request packet − aiperf's start time, p99 (pairing check)", "ms", None, 3),
            ("dropped", "packets tcpdump dropped", "", None, 0),
        ):  # fmt: skip
            bench.figure(f"wire_{fid}_c{c}", "wire", f"c{c}: {name}", unit, goal, digits)
    for client in bench.others:
        for c in WIRE_CONCURRENCIES:
            for fid, name, unit, digits in OTHER_CLIENT_FIGURES:
                bench.figure(f"wire_{client.key}_{fid}_c{c}", "wire", f"c{c}, {client.name}: {name}", unit, digits=digits)
    probe = [bench.python, str(Path(lagprobe.__file__))]
    with mock_server(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as server:
        for rep in range(bench.repeats):
            for c in WIRE_CONCURRENCIES:
                measure_wire(bench, server, tcpdump, probe, c, rep)
                for client in bench.others:
                    measure_other_client(bench, server, tcpdump, client, c, rep)


#: what the wire and its own records say about another client.
OTHER_CLIENT_FIGURES = (
    ("send_spread_p50", "request send spread p50", "ms", 3),
    ("send_spread_p99", "request send spread p99", "ms", 3),
    ("multi_packet", "requests sent as more than one packet", "", 0),
    ("turnaround_p50", "turnaround p50", "ms", 3),
    ("turnaround_p99", "turnaround p99", "ms", 3),
    ("turnaround_stalls", f"turnarounds over {wirelib.STALL_MS:g} ms", "", 0),
    ("ttft_p50", "TTFT by the wire p50", "ms", 2),
    ("ttft_p99", "TTFT by the wire p99", "ms", 2),
    ("ttft_last_p99", "TTFT from the last request packet (the server's view) p99", "ms", 2),
    ("reported_ttft_p50", "TTFT it reported, p50", "ms", 2),
    ("reported_ttft_p99", "TTFT it reported, p99", "ms", 2),
    ("ttft_err_p50", "its TTFT − wire TTFT, per request, p50", "ms", 3),
    ("ttft_err_p99", "its TTFT − wire TTFT, per request, p99", "ms", 3),
    ("match_offset_p50", "first request packet − its start stamp, p50 (pairing check)", "ms", 3),
    ("rate", "steady request rate by the wire", "req/s", 1),
    ("rate_pct", "steady request rate / ideal", "%", 1),
)


def measure_other_client(
    bench: Bench, server: Any, tcpdump: str, client: OtherClient, c: int, rep: int
) -> None:
    """The same load from another client, graded by the same capture and its own records."""
    count = bench.sizes.wire[c]
    work = bench.scratch / f"wire_{client.key}_c{c}_{rep + 1}"
    work.mkdir(parents=True, exist_ok=True)
    load_spec = Load(
        url=server.url, model=MODEL, concurrency=c, count=count, input_tokens=INPUT_TOKENS,
        output_tokens=OUTPUT_TOKENS, tokenizer=hf_tokenizer(bench.scratch / "hf-tokenizer"), work=work,
    )  # fmt: skip
    command = client.command(load_spec)
    capture_file = work / "lo.pcap"
    load = load1()
    server.reset_stats()
    with packet_capture(tcpdump, capture_file, server.port):
        done = subprocess.run(
            command, cwd=work, env=client.environment(bench.env), capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise ScenarioError(
            f"{client.name} exited {done.returncode}: {(done.stderr or done.stdout)[-400:]}"
        )
    served = server.stats()["requests"]["ok"]
    if served != count:
        raise ScenarioError(f"{client.name}: the server completed {served} requests of {count}")
    records = client.records(load_spec)
    if len(records) != count:
        raise ScenarioError(
            f"{client.name}: its records hold {len(records)} successful requests of {count}"
        )
    found = wirelib.exchanges(pcap.read_tcp(capture_file), server.port)
    try:
        grade = wirelib.grade(found, [r.as_wire_record() for r in records], c)
    except ValueError as exc:
        raise ScenarioError(f"{client.name} c{c}: {exc}") from None
    reported = [r.ttft_ms for r in records]
    ideal = c / WIRE_LATENCY_S
    values = {
        "send_spread_p50": grade.send_spread_p50,
        "send_spread_p99": grade.send_spread_p99,
        "multi_packet": grade.multi_packet_requests,
        "turnaround_p50": grade.turnaround_p50,
        "turnaround_p99": grade.turnaround_p99,
        "turnaround_stalls": grade.turnarounds_over_stall,
        "ttft_p50": grade.wire_ttft_p50,
        "ttft_p99": grade.wire_ttft_p99,
        "ttft_last_p99": grade.wire_ttft_from_last_p99,
        "reported_ttft_p50": wirelib.pct(reported, 50),
        "reported_ttft_p99": wirelib.pct(reported, 99),
        "ttft_err_p50": grade.ttft_err_p50,
        "ttft_err_p99": grade.ttft_err_p99,
        "match_offset_p50": grade.match_offset_p50,
        "rate": grade.steady_rate,
        "rate_pct": 100 * grade.steady_rate / ideal,
    }
    for fid, value in values.items():
        bench.figures[f"wire_{client.key}_{fid}_c{c}"].add(value, load)
    bench.say(
        f"  wire {client.name} c{c} run {rep + 1}/{bench.repeats}: spread p99 {grade.send_spread_p99:.2f} ms "
        f"({grade.multi_packet_requests} multi-packet), turnaround p50 {grade.turnaround_p50:.2f} "
        f"p99 {grade.turnaround_p99:.2f} ms, TTFT err p50 {grade.ttft_err_p50:+.3f} p99 {grade.ttft_err_p99:+.3f} ms, "
        f"{grade.steady_rate:.1f} req/s, load {load:.1f}"
    )
    shutil.rmtree(work, ignore_errors=True)


def measure_wire(bench: Bench, server: Any, tcpdump: str, probe: list[str], c: int, rep: int) -> None:
    count = bench.sizes.wire[c]
    tag = f"wire_c{c}_{rep + 1}"
    capture_file = bench.scratch / f"{tag}.pcap"
    probe_file = bench.scratch / f"{tag}.probe.json"
    load = load1()
    server.reset_stats()
    with packet_capture(tcpdump, capture_file, server.port) as dropped:
        run = bench.profile(
            server.url, count=count, concurrency=c, seed=rep + 1, command=[*probe, str(probe_file)]
        )
    check_counts(run, count, server.stats()["requests"]["ok"])
    stats = pcap.ReadStats()
    found = wirelib.exchanges(pcap.read_tcp(capture_file, stats), server.port)
    records = list(analysis.iter_records(run.run_dir))
    try:
        grade = wirelib.grade(found, records, c)
    except ValueError as exc:
        raise ScenarioError(f"wire c{c}: {exc} (capture: {stats})") from None
    window = (min(r["start_time_ns"] for r in records), max(r["end_time_ns"] for r in records))
    loop = wirelib.loop_figures(json.loads(probe_file.read_text()), window)
    ideal = c / WIRE_LATENCY_S
    values = {
        "send_spread_p50": grade.send_spread_p50,
        "send_spread_p99": grade.send_spread_p99,
        "multi_packet": grade.multi_packet_requests,
        "turnaround_p50": grade.turnaround_p50,
        "turnaround_p99": grade.turnaround_p99,
        "turnaround_max": grade.turnaround_max,
        "turnaround_stalls": grade.turnarounds_over_stall,
        "ttft_p50": grade.wire_ttft_p50,
        "ttft_p99": grade.wire_ttft_p99,
        "ttft_last_p99": grade.wire_ttft_from_last_p99,
        "ttft_err_p50": grade.ttft_err_p50,
        "ttft_err_p99": grade.ttft_err_p99,
        "gap_err_p99": grade.gap_err_p99,
        "rate": grade.steady_rate,
        "rate_pct": 100 * grade.steady_rate / ideal,
        "throughput": run.throughput,
        "lag_p99": loop.lag_p99,
        "lag_max": loop.lag_max,
        "loop_stalls": loop.stalls,
        "loop_stalls_own": loop.stalls_own,
        "busy_max": loop.busy_max,
        "gc_max": loop.gc_max,
        "gc_cpu_max": loop.gc_cpu_max,
        "gc_slow": loop.gc_slow,
        "match_offset_p99": grade.match_offset_p99,
        "dropped": dropped[0],
    }
    for fid, value in values.items():
        bench.figures[f"wire_{fid}_c{c}"].add(value, load)
    if grade.gaps_uncompared_requests and rep == 0:
        bench.figures[f"wire_gap_err_p99_c{c}"].notes.append(
            f"{grade.gaps_uncompared_requests} requests had a different number of chunks in "
            "aiperf's record and on the wire; their gaps are left out"
        )
    bench.say(
        f"  wire c{c} run {rep + 1}/{bench.repeats}: spread p99 {grade.send_spread_p99:.2f} ms "
        f"({grade.multi_packet_requests} multi-packet), turnaround p50 {grade.turnaround_p50:.2f} "
        f"p99 {grade.turnaround_p99:.2f} ms, TTFT err p50 {grade.ttft_err_p50:+.3f} "
        f"p99 {grade.ttft_err_p99:+.3f} ms, {grade.steady_rate:.1f} req/s ({100 * grade.steady_rate / ideal:.1f} %), "
        f"loop lag max {loop.lag_max:.1f} ms, {loop.stalls} stalls ({loop.stalls_own} own, "
        f"longest busy {loop.busy_max:.1f} ms), gc max {loop.gc_max:.1f} ms, "
        f"match offset p99 {grade.match_offset_p99:.3f} ms, load {load:.1f}"
    )
    bench.drop(run)
    capture_file.unlink(missing_ok=True)


CAPTURE_SETTLE_S = 1.5


@contextmanager
def packet_capture(tcpdump: str, path: Path, port: int) -> Iterator[list[int]]:
    """tcpdump on the loopback device for the length of the block; yields [packets dropped],
    filled when the capture has stopped."""
    dropped = [0]
    process = subprocess.Popen(
        # -B: a 32 MiB kernel buffer, so that a burst of 64 streams is not dropped while
        # tcpdump waits for a CPU; nanosecond stamps, the kernel's own.
        [tcpdump, "-i", "lo", "-n", "-s", "0", "-B", "32768", "--time-stamp-precision=nano",
         # As root, tcpdump drops to a "tcpdump" user that a container may not have.
         *(["-Z", "root"] if os.geteuid() == 0 else []),
         "-w", str(path), f"tcp port {port}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        said = ""
        while "listening on" not in said:
            line = process.stderr.readline()
            if not line:  # tcpdump exited: no permission, no such device, ...
                process.wait(timeout=5)
                raise ScenarioError(f"tcpdump did not start: {said.strip()[-300:]}")
            said += line
        yield dropped
    finally:
        # libpcap hands packets over a block at a time, when a block fills or its timeout
        # (tcpdump's is 1 s) expires, and tcpdump stops at SIGINT without reading a block the
        # kernel has not handed over: the last requests' packets would be missing. Waiting
        # past the timeout keeps them; immediate mode would cost a wake-up per packet, CPU
        # taken from the client being measured.
        time.sleep(CAPTURE_SETTLE_S)
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        for text in (err or "").splitlines():
            if "dropped by kernel" in text:
                dropped[0] = int(text.split()[0])


# -- telemetry tail ------------------------------------------------------------------------------

TAIL_VARIANTS = ("none", "otel", "mlflow", "both")
#: what the end of a run says when its sinks took longer than a second after the load.
_FLUSH_DONE = re.compile(r"aiperf: live telemetry finished ([0-9.]+) s after the load")


def tail(bench: Bench) -> None:
    """How long a run takes to exit after its last response, with the live sinks off and on.

    Concurrency 64 against the instant server, OTel to the OTLP receiver the tests use and
    MLflow to a real local ``mlflow server`` (sqlite store), the four variants in turn in each
    repeat. The tail is the process's exit (wall clock) minus the last response's end in
    ``profile_export.jsonl``: the live sinks' catching up and final flush, the exports, the
    MLflow upload. The goal is on the difference with both sinks on and off, which a busy
    machine affects less than either figure.
    """
    import sys as _sys

    tests_dir = str(BENCH_DIR.parent / "tests")
    if tests_dir not in _sys.path:
        _sys.path.insert(0, tests_dir)
    from support.mlflow_server import MlflowServer, MlflowServerError
    from support.otlp_receiver import OtlpReceiver

    for variant in TAIL_VARIANTS:
        bench.figure(f"tail_s_{variant}", "tail", f"last response to exit, c64, {variant if variant != 'none' else 'no sink'}", "s", digits=2)
    extra = bench.figure(
        "tail_extra_s_both", "tail", "last response to exit, OTel + MLflow minus no sink (paired runs)", "s",
        Goal(op="<=", bound=1.0, text="≤ 1 s"), 2,
    )  # fmt: skip
    flush = bench.figure("tail_flush_s_both", "tail", "time the end of an OTel + MLflow run waited on the sinks (0: under 1 s)", "s", digits=2)
    thinned = bench.figure("tail_mlflow_thinned_share", "tail", "requests whose live MLflow points were thinned out, OTel + MLflow", "%", digits=0)
    count = bench.sizes.tail
    try:
        mlflow = MlflowServer(bench.scratch / "mlflow-server")
        mlflow.start()
    except MlflowServerError as exc:
        raise ScenarioError(f"the MLflow server did not start: {exc}") from None
    try:
        with OtlpReceiver(keep=False) as otlp, mock_server() as server:
            flags = {
                "none": [],
                "otel": ["--otel-url", otlp.url],
                "mlflow": ["--mlflow-tracking-uri", mlflow.url, "--mlflow-experiment", "aiperf-bench-tail"],
            }
            flags["both"] = flags["otel"] + flags["mlflow"]
            for rep in range(bench.repeats):
                tails: dict[str, float] = {}
                for variant in TAIL_VARIANTS:
                    load = load1()
                    server.reset_stats()
                    run = bench.profile(server.url, count=count, concurrency=64, seed=rep + 1, extra=flags[variant])
                    check_counts(run, count, server.stats()["requests"]["ok"])
                    tails[variant] = last_response_to_exit(run)
                    bench.figures[f"tail_s_{variant}"].add(tails[variant], load)
                    if variant == "both":
                        found = _FLUSH_DONE.search(run.measured.stderr)
                        flush.add(float(found.group(1)) if found else 0.0, load)
                        live = json.loads((run.run_dir / "mlflow_export.json").read_text())["live_points"]
                        thinned.add(100.0 * live.get("thinned", 0) / count, load)
                    bench.drop(run)
                extra.add(tails["both"] - tails["none"], load)
                bench.say(
                    f"  tail run {rep + 1}/{bench.repeats}: "
                    + ", ".join(f"{v} {t:.2f} s" for v, t in tails.items())
                    + f", load {load:.1f}"
                )
    finally:
        mlflow.stop()


def last_response_to_exit(run: ProfileRun) -> float:
    """Seconds from the last response's end (its JSONL line) to the process's exit."""
    last_end = max(record["end_time_ns"] for record in analysis.iter_records(run.run_dir) if record.get("end_time_ns"))
    return run.measured.started_at + run.measured.wall_s - last_end / 1e9


# -- measurement health ------------------------------------------------------------------------

HEALTH_CONCURRENCIES = (16, 64, 256, 1024)
HEALTH_TABLE = "health_calibration"


def health(bench: Bench) -> None:
    """Calibrate the measurement-health bound against the mock server's truth.

    Every run reports "client overhead below X ms at p99" (the load processes' event-loop lag
    p99, ``measurement_health.overhead_p99_ms``). Against the 50/10 server, the TTFT error
    (aiperf's p50 and p99 minus the server's) must stay within that bound: the margin (bound
    minus the larger error) is the figure, its goal ≥ 0. Every run also goes into
    ``health_calibration.md`` / ``.json`` beside the results, one row each.
    """
    for c in HEALTH_CONCURRENCIES:
        bench.figure(
            f"health_margin_c{c}", "health",
            f"reported overhead bound minus TTFT error (larger of p50, p99), concurrency {c}", "ms",
            Goal(op=">=", bound=0.0, text="≥ 0 (bound covers the error)"), 2,
        )  # fmt: skip
        bench.figure(f"health_bound_c{c}", "health", f"reported client overhead p99, concurrency {c}", "ms", digits=2)
    rows: list[dict[str, Any]] = []
    counts = bench.sizes.health
    with mock_server(ttft_ms=TTFT_MS, itl_ms=ITL_MS) as server:
        for rep in range(bench.repeats):
            for c in HEALTH_CONCURRENCIES:
                load = load1()
                server.reset_stats()
                run = bench.profile(server.url, count=counts[c], concurrency=c, seed=rep + 1, timeout_s=600)
                stats = server.stats(raw=True)
                check_counts(run, counts[c], stats["requests"]["ok"])
                row = calibration_row(run.summary, stats, c, rep + 1, load)
                rows.append(row)
                # Kept as the runs go: a failure later still leaves the rows so far.
                write_calibration(bench.report_dir / HEALTH_TABLE, rows)
                bench.figures[f"health_margin_c{c}"].add(row["margin_ms"], load)
                bench.figures[f"health_bound_c{c}"].add(row["bound_ms"], load)
                bench.say(
                    f"  health c{c} run {rep + 1}/{bench.repeats}: bound {row['bound_ms']:.2f} ms, "
                    f"TTFT err p50 {row['err_p50_ms']:+.2f} p99 {row['err_p99_ms']:+.2f} ms "
                    f"({'covered' if row['covered'] else 'NOT covered'}), {row['verdict']}, load {load:.1f}"
                )
                bench.drop(run)
    write_calibration(bench.report_dir / HEALTH_TABLE, rows)


def calibration_row(summary: Mapping[str, Any], stats: Mapping[str, Any], c: int, rep: int, load: float) -> dict[str, Any]:
    """One run of the calibration: the bound the run reported against its TTFT error."""
    block = summary.get("measurement_health") or {}
    bound = block.get("overhead_p99_ms")
    bound = math.nan if bound is None else float(bound)
    errors = analysis.accuracy_errors(summary, stats)
    worst = max(errors.ttft_p50, errors.ttft_p99)
    return {
        "concurrency": c,
        "run": rep,
        "load_1m": round(load, 2),
        "aiperf_ttft_p50_ms": analysis.metric(summary, "time_to_first_token", "p50"),
        "aiperf_ttft_p99_ms": analysis.metric(summary, "time_to_first_token", "p99"),
        "server_ttft_p50_ms": analysis.truth(stats, "ttft_ms", "p50"),
        "server_ttft_p99_ms": analysis.truth(stats, "ttft_ms", "p99"),
        "err_p50_ms": errors.ttft_p50,
        "err_p99_ms": errors.ttft_p99,
        "gap_err_p99_ms": errors.chunk_gap_p99,
        "bound_ms": bound,
        "margin_ms": bound - worst,
        "covered": bound >= worst,
        "verdict": block.get("verdict"),
        "loop_busy_pct": block.get("loop_busy_pct"),
        "cpu_wait_pct": block.get("cpu_wait_pct"),
        "lag_max_ms": (block.get("loop_lag_ms") or {}).get("max"),
        "lag_count": (block.get("loop_lag_ms") or {}).get("count"),
    }


def write_calibration(stem: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """``stem.json`` (every row) and ``stem.md`` (the table docs/performance.md quotes)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(list(rows), indent=2) + "\n")
    head = (
        "| concurrency | run | load (1 min) | TTFT p50 aiperf / server | TTFT p99 aiperf / server "
        "| error p50 | error p99 | reported bound (lag p99) | covered | verdict | loop busy | CPU wait | lag max |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['concurrency']} | {r['run']} | {r['load_1m']:.1f} "
            f"| {r['aiperf_ttft_p50_ms']:.2f} / {r['server_ttft_p50_ms']:.2f} "
            f"| {r['aiperf_ttft_p99_ms']:.2f} / {r['server_ttft_p99_ms']:.2f} "
            f"| {r['err_p50_ms']:+.2f} | {r['err_p99_ms']:+.2f} | {r['bound_ms']:.2f} "
            f"| {'yes' if r['covered'] else '**no**'} | {r['verdict']} "
            f"| {_pct(r['loop_busy_pct'])} | {_pct(r['cpu_wait_pct'])} | {_num(r['lag_max_ms'])} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} %"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "startup": startup,
    "postproc": postproc,
    "capacity": capacity,
    "accuracy": accuracy,
    "workers": workers,
    "rate": rate,
    "sinks": sinks,
    "wire": wire,
    "health": health,
    "tail": tail,
    "streams": streams,
    "memory": memory,
}
#: left out of --quick unless named with --scenario.
SLOW = ("memory", "health", "streams")
#: scenarios that need the full ``mlflow`` package (its server); left out, with a message,
#: where only mlflow-skinny is installed.
NEEDS_MODULE = {"tail": "mlflow.server"}
#: scenarios that need a program aiperf does not install: the full suite leaves them out,
#: with a message, where it is missing; naming one with --scenario fails with its reason.
NEEDS = {"wire": "tcpdump"}


def run_scenario(bench: Bench, name: str) -> float:
    """Run one scenario; a failure marks its figures as errors and does not stop the suite."""
    before = set(bench.figures.by_id)
    t0 = time.perf_counter()
    bench.say(f"[{name}]")
    try:
        SCENARIOS[name](bench)
    except (ScenarioError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
        reason = f"{name}: {exc}".splitlines()[0][:300]
        bench.say(f"  FAILED {reason}")
        new = set(bench.figures.by_id) - before
        bench.figures.fail_scenario(new, reason)
    return time.perf_counter() - t0
