"""The server-metrics sampler: scrapes every endpoint on its own schedule beside the benchmark,
puts the common values on the live bus, appends every scrape to
``server_metrics_export.jsonl`` and keeps the series for the summary.

The request path never waits on a scrape: fetching is async, and parsing and storing (which
for a large answer take real CPU time) run in a worker thread. After a slow parse the next
scrape waits longer, so that a huge answer cannot keep the interpreter lock busy more than a
fraction of the time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
import structlog
import trio
from aiperf import Phase, ServerMetricSample, describe_error, record_artifacts

from aiperf_server_metrics.config import Endpoint, ServerMetricsConfig
from aiperf_server_metrics.parse import NotPrometheus, parse_body
from aiperf_server_metrics.store import PROFILE_END, PROFILE_START, EndpointStore, LiveValue
from aiperf_server_metrics.summary import (
    COMPARISON_SECTION,
    SECTION,
    common_rows,
    comparison,
    comparison_rows,
    derived_entries,
    series_entries,
)

if TYPE_CHECKING:
    import httpx
    from aiperf import ReportSection, RunContext, RunResult, SamplerContext

log = structlog.get_logger()


JSONL_FILE = "server_metrics_export.jsonl"
#: how long the last scrape, taken as the sampler is stopped, may take.
FINAL_SCRAPE_BUDGET_S = 1.0
#: the most of one answer that is read; a larger one counts as a failed scrape.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: a scrape's parse may use at most this share of the time between scrapes.
PARSE_SHARE = 0.25


def phase_at(run: RunContext, perf_ns: int) -> Phase | None:
    """The phase a scrape belongs to: ``None`` once the measured phase is over."""
    if run.profile_end_ns is not None and perf_ns > run.profile_end_ns:
        return None
    if run.profile_start_ns is not None and perf_ns >= run.profile_start_ns:
        return Phase.PROFILE
    return Phase.WARMUP


class ScrapeFailed(Exception):
    pass


@attrs.define(kw_only=True)
class EndpointState:
    """One endpoint's scrapes: what worked, what did not, said once."""

    endpoint: Endpoint
    store: EndpointStore
    #: answered with metrics at least once.
    answered: bool = False
    #: no metrics here (404, not Prometheus text): scraping stopped after one line.
    unavailable: str | None = None
    scrapes: int = 0
    failures: int = 0
    last_error: str | None = None
    bad_lines: int = 0
    #: the measured phase starts or started: the next scrape is its baseline.
    baseline_due: bool = False
    #: set when the baseline asked for last is over (answered or not).
    baseline_taken: trio.Event = attrs.field(factory=trio.Event)
    #: set to cut the pause between scrapes short (the measured phase started).
    wake: trio.Event = attrs.field(factory=trio.Event)
    _warned: bool = False

    @property
    def label(self) -> str:
        return self.endpoint.label

    def say(self, event: str, **fields: Any) -> None:
        """A loss in the middle of the run. Polled several times a second, an endpoint gets one
        warning at most; what follows is debug-level, and the end-of-run note counts it all."""
        if self._warned:
            log.debug(event, url=self.label, **fields)
            return
        self._warned = True
        log.warning(event, url=self.label, **fields)

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.answered:
            self.say("server_metrics_scrape_failed", error=error)

    def report(self) -> str | None:
        parts = []
        if self.unavailable is not None and self.endpoint.explicit:
            parts.append(f"{self.label}: {self.unavailable}")
        if self.failures and (self.answered or self.endpoint.explicit):
            parts.append(
                f"{self.failures} of {self.scrapes} scrapes of {self.label} failed "
                f"({self.last_error})"
            )
        if self.bad_lines:
            parts.append(f"{self.bad_lines} lines from {self.label} did not parse and were skipped")
        store = self.store
        if store.refused:
            parts.append(
                f"{self.label} served {store.largest_answer} series; kept {store.kept} "
                f"(the common ones and the first {store.max_series}), "
                f"{len(store.refused)} others were not recorded"
            )
        return "; ".join(parts) or None


@attrs.define
class JsonlWriter:
    """Appends scrape lines to the JSONL file, from a worker thread, one call at a time."""

    path: Path
    _file: IO[str] | None = None
    failed: bool = False

    def write(self, lines: Sequence[str]) -> None:
        if self.failed or not lines:
            return
        try:
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8")
            self._file.write("".join(lines))
            self._file.flush()
        except OSError as exc:
            self.failed = True
            log.warning("server_metrics_write_failed", path=str(self.path), error=str(exc))

    def finish(self, lines: Sequence[str]) -> None:
        self.write(lines)
        if self._file is not None:
            self._file.close()
            self._file = None


@attrs.define
class ServerMetricsSampler:
    """Scrapes every endpoint each ``interval_s`` until cancelled (see :class:`aiperf.Sampler`)."""

    endpoints: Sequence[Endpoint]
    interval_s: float
    jsonl_path: Path
    timeout_s: float = 1.0
    #: closed when the sampler stops; made at first use when not given.
    client: httpx.AsyncClient | None = None
    name: str = "server_metrics"
    #: no warm-up: nothing is sent before :meth:`before_profile` returns, so every
    #: endpoint's first scrape, taken as the sampler starts, is already the baseline.
    first_is_baseline: bool = False
    states: list[EndpointState] = attrs.field(init=False)
    summary: dict[str, Any] | None = None
    _writer: JsonlWriter = attrs.field(init=False)
    _pending: trio.MemorySendChannel[str] | None = None

    def __attrs_post_init__(self) -> None:
        self.states = [
            EndpointState(endpoint=e, store=EndpointStore(source=e.label)) for e in self.endpoints
        ]
        self._writer = JsonlWriter(self.jsonl_path)
        if self.first_is_baseline:
            for state in self.states:
                state.baseline_due = True

    async def before_profile(self) -> None:
        """The measured phase is about to start (after the warm-up, if any): scrape every
        endpoint now (without a warm-up, the first scrape, under way since the sampler
        started, is the one). The core holds the first measured request until this returns
        (at most 2 s), so every counter's baseline comes before the phase's first request and
        after the last warm-up one, and even a short run's counts are whole."""
        states = [state for state in self.states if state.unavailable is None]
        if not self.first_is_baseline:
            for state in states:
                state.baseline_taken = trio.Event()
                state.baseline_due = True
                state.wake.set()
        for state in states:
            await state.baseline_taken.wait()

    async def run(self, ctx: SamplerContext) -> None:
        # The file is written by its own task so that a slow disk never delays a scrape.
        send, receive = trio.open_memory_channel[str](math.inf)
        self._pending = send
        if self.client is None:
            self.client = _make_client(None)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_lines, receive)
                watcher = await nursery.start(self._mark_profile_start, ctx)
                async with trio.open_nursery() as scraping:
                    for state in self.states:
                        scraping.start_soon(self._scrape_endpoint, ctx, state)
                watcher.cancel()
                send.close()
        finally:
            send.close()
            rest = _drain(receive)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._writer.finish, rest)
                if self.client is not None:
                    await self.client.aclose()
                    self.client = None

    async def _write_lines(self, receive: trio.MemoryReceiveChannel[str]) -> None:
        async for line in receive:
            batch = [line, *_drain(receive)]
            await trio.to_thread.run_sync(self._writer.write, batch)

    async def _mark_profile_start(
        self, ctx: SamplerContext, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        """At the start of the measured phase every endpoint without a baseline (taken in
        :meth:`before_profile`) is scraped at once, whatever its schedule: that scrape is the
        baseline its counters are measured from. The core only sets an event; the scrape runs
        here, never on the request path."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await ctx.phase_started(Phase.PROFILE)
            for state in self.states:
                if state.store.baseline_ns is None:
                    state.baseline_due = True
                    state.wake.set()

    async def _scrape_endpoint(self, ctx: SamplerContext, state: EndpointState) -> None:
        try:
            next_at = trio.current_time()
            while state.unavailable is None:
                started = trio.current_time()
                # Taken before the scrape: one already under way when the phase starts was
                # sent before it, and the baseline follows it at once.
                baseline, state.baseline_due = state.baseline_due, False
                state.wake = trio.Event()
                parse_s = await self.scrape_once(ctx, state, PROFILE_START if baseline else None)
                if baseline:
                    state.baseline_taken.set()
                # A read that took longer than the interval: skip the missed ticks instead of
                # bursting to catch up. A slow parse stretches the pause, so a huge answer
                # costs the load generator at most PARSE_SHARE of the interpreter.
                next_at = max(
                    next_at + self.interval_s, trio.current_time(), started + parse_s / PARSE_SHARE
                )
                with trio.move_on_at(next_at):
                    await state.wake.wait()
        finally:
            state.baseline_taken.set()  # no more scrapes: before_profile waits no longer
            # The core stops samplers right after the measured phase ends: one more scrape
            # brackets the phase's end, so counters are measured up to it, not cut short.
            if state.answered and state.unavailable is None:
                with trio.move_on_after(FINAL_SCRAPE_BUDGET_S, shield=True):
                    await self.scrape_once(ctx, state, PROFILE_END)

    async def scrape_once(
        self, ctx: SamplerContext, state: EndpointState, mark: str | None = None
    ) -> float:
        """One scrape of one endpoint; returns the seconds its parse and store took.

        ``mark`` names a scrape that brackets the measured phase (``PROFILE_START`` or
        ``PROFILE_END``): counters and histograms are measured between those two.
        """
        state.scrapes += 1
        try:
            body, content_type, perf_ns = await self._fetch(state)
        except ScrapeFailed as exc:
            if _is_absent(exc):
                self._not_available(state, str(exc))
            else:
                state.failed(str(exc))
            return 0.0
        run = ctx.run
        phase = phase_at(run, perf_ns)
        if mark == PROFILE_START and phase is None:
            mark = None  # the phase was over before the answer came: no baseline
        wall_ns = run.to_wall_ns(perf_ns)
        started = time.perf_counter()
        try:
            live, line, bad = await trio.to_thread.run_sync(
                _parse_and_store, state.store, body, content_type, wall_ns, phase, mark
            )
        except NotPrometheus as exc:
            if state.answered:
                state.failed(str(exc))
            else:
                self._not_available(state, str(exc))
            return time.perf_counter() - started
        elapsed = time.perf_counter() - started
        if bad and not state.bad_lines:
            state.say("server_metrics_malformed_lines", lines=bad)
        state.bad_lines += bad
        if not state.answered:
            state.answered = True
            log.debug(
                "server_metrics_scraping", url=state.label, engines=sorted(state.store.engines)
            )
        for value in live:
            ctx.publish(_event(state.label, value, wall_ns, phase))
        assert self._pending is not None, "scraped outside run()"
        # Unbounded: a line is never dropped or delayed for the file's sake.
        self._pending.send_nowait(line)
        return elapsed

    def _not_available(self, state: EndpointState, why: str) -> None:
        if state.answered:
            state.failed(why)
            return
        state.unavailable = why
        # One line, then silence: most servers without metrics answer 404 at /metrics.
        if state.endpoint.explicit:
            log.warning("server_metrics_unavailable", url=state.label, reason=why)
        else:
            log.info("server_metrics_unavailable", url=state.label, reason=why)

    async def _fetch(self, state: EndpointState) -> tuple[bytes, str, int]:
        import httpx

        assert self.client is not None, "run() first"
        try:
            with trio.fail_after(self.timeout_s):
                async with self.client.stream("GET", state.endpoint.url) as response:
                    if response.status_code != 200:
                        raise ScrapeFailed(f"HTTP {response.status_code}")
                    chunks = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_BODY_BYTES:
                            raise ScrapeFailed(
                                f"the answer is larger than {MAX_BODY_BYTES // 2**20} MiB"
                            )
                        chunks.append(chunk)
                    perf_ns = time.perf_counter_ns()
                    return b"".join(chunks), response.headers.get("content-type", ""), perf_ns
        except trio.TooSlowError:
            raise ScrapeFailed(f"no answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            # httpx quotes the URL in some messages: describe_error drops its userinfo.
            raise ScrapeFailed(describe_error(exc)) from None

    def sections(self, run: RunContext, result: RunResult) -> Sequence[ReportSection]:
        from aiperf import ReportSection

        stores = [s.store for s in self.states if s.store.scrapes]
        if not stores or run.profile_start_ns is None:
            return []
        end = run.profile_end_ns if run.profile_end_ns is not None else run.profile_start_ns
        start_ns, end_ns = run.to_wall_ns(run.profile_start_ns), run.to_wall_ns(end)
        entries = series_entries(stores, start_ns, end_ns)
        entries += derived_entries(entries)
        compared = comparison(entries, result)
        self.summary = {
            "window": {
                "start_ns": start_ns,
                "end_ns": end_ns,
                "duration_s": (end_ns - start_ns) / 1e9,
            },
            "interval_s": self.interval_s,
            "endpoints": [self._endpoint_entry(s) for s in self.states],
            "series": entries,
            COMPARISON_SECTION: compared,
        }
        rows = common_rows(entries)
        common = [e for e in entries if e.get("common")]
        sections = [
            ReportSection(
                name=SECTION,
                title="Server Metrics (as the server reported them)",
                data={
                    "endpoints": self.summary["endpoints"],
                    "common": common,
                },
                rows=tuple(rows),
                console=bool(rows),
            )
        ]
        if compared:
            sections.append(
                ReportSection(
                    name=COMPARISON_SECTION,
                    title="aiperf vs server (difference: network, HTTP stack, queues in front)",
                    data=compared,
                    rows=tuple(comparison_rows(compared)),
                    console=True,
                )
            )
        return sections

    def _endpoint_entry(self, state: EndpointState) -> dict[str, Any]:
        return {
            "url": state.label,
            "explicit": state.endpoint.explicit,
            "status": "unavailable" if state.unavailable else "ok" if state.answered else "failed",
            "reason": state.unavailable,
            "engines": sorted(state.store.engines),
            "scrapes": state.scrapes,
            "failed_scrapes": state.failures,
            "series": state.store.kept,
            # the scrapes at the measured phase's start and end (None: that scrape failed).
            "baseline_ns": state.store.baseline_ns,
            "final_ns": state.store.final_ns,
        }

    def report(self) -> str | None:
        lines = [line for state in self.states if (line := state.report())]
        if self._writer.failed:
            lines.append(f"could not write {self.jsonl_path.name}; scrapes after that are missing")
        return "server-metrics: " + "; ".join(lines) if lines else None


def _parse_and_store(
    store: EndpointStore,
    body: bytes,
    content_type: str,
    wall_ns: int,
    phase: Phase | None,
    mark: str | None,
) -> tuple[list[LiveValue], str, int]:
    parsed = parse_body(body, content_type)
    live, line = store.ingest(parsed, wall_ns, None if phase is None else phase.value, mark)
    return live, line, parsed.bad_lines


def _event(source: str, value: LiveValue, wall_ns: int, phase: Phase | None) -> ServerMetricSample:
    return ServerMetricSample(
        source=source,
        name=value.name,
        value=value.value,
        unit=value.unit,
        wall_ns=wall_ns,
        phase=phase,
        labels=value.labels,
    )


def _is_absent(exc: ScrapeFailed) -> bool:
    return str(exc) in ("HTTP 404", "HTTP 405", "HTTP 501")


def _drain(receive: trio.MemoryReceiveChannel[str]) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return out


def _make_client(ca_bundle: Path | None) -> httpx.AsyncClient:
    import httpx

    verify: Any = True
    if ca_bundle is not None:
        import ssl

        verify = ssl.create_default_context(cafile=str(ca_bundle))
    # Our own timeout (trio.fail_after) bounds the whole scrape, body included.
    return httpx.AsyncClient(verify=verify, follow_redirects=True, timeout=None)


def create_sampler(
    config: ServerMetricsConfig, run: RunContext, ca_bundle: Path | None = None
) -> ServerMetricsSampler:
    # Imported now, before the clock starts: on the event loop these imports would hold up
    # the first requests, and in a thread they would hold up the first scrape (the baseline
    # of every counter) by as long.
    import httpx  # noqa: F401
    import prometheus_client.openmetrics.parser  # noqa: F401
    import prometheus_client.parser  # noqa: F401

    # In the run's manifest, so that uploaders (MLflow) send it.
    record_artifacts(run, [run.run_dir / JSONL_FILE])
    return ServerMetricsSampler(
        # Made now for the same reason: loading the CA bundle takes a while.
        client=_make_client(ca_bundle),
        endpoints=config.endpoints,
        interval_s=config.interval_s,
        jsonl_path=run.run_dir / JSONL_FILE,
        first_is_baseline=not run.config.warmup_request_count,
        # A scrape may take up to twice the interval (at least a second) before it counts as
        # failed: a busy server answers /metrics late, and a late answer still counts.
        timeout_s=max(1.0, 2 * config.interval_s),
    )
