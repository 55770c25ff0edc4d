"""The sampler on its own: what it publishes, and that a slow parse never holds up trio."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from aiperf import (
    LiveEvent,
    Phase,
    ProfileConfig,
    RunContext,
    RunResult,
    RunStatus,
    ServerMetricSample,
    testing,
)
from aiperf_server_metrics import sampler as sampler_module
from aiperf_server_metrics.config import Endpoint
from aiperf_server_metrics.sampler import ServerMetricsSampler
from structlog.testing import capture_logs

BODY = b"""# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 4
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="m"} 100
"""


def make_run(run_dir: Path, *, started: bool = True) -> RunContext:
    """A run in its measured phase, or (``started=False``) still warming up."""
    return testing.make_run(
        run_dir, config=ProfileConfig(model="test-model", url="http://127.0.0.1:8000"),
        benchmark_id="b" * 32, provider="_OTHER", anchor_perf_ns=time.perf_counter_ns(),
        profile_start_ns=time.perf_counter_ns() if started else None,
        phase=Phase.PROFILE if started else Phase.WARMUP,
    )  # fmt: skip


@attrs.define
class RecordingContext:
    run: RunContext
    events: list[LiveEvent] = attrs.field(factory=list)
    #: set when the measured phase starts (at once when the run says it already has).
    profile: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        if self.run.profile_start_ns is not None:
            self.profile.set()

    def publish(self, event: LiveEvent) -> None:
        self.events.append(event)

    def start_profile(self) -> None:
        """The measured phase starts, as the core announces it."""
        self.run.phase = Phase.PROFILE
        self.run.profile_start_ns = time.perf_counter_ns()
        self.profile.set()

    async def phase_started(self, phase: Phase) -> None:
        if phase is not Phase.PROFILE:
            await trio.sleep_forever()
        await self.profile.wait()


def sampler_for(
    tmp_path: Path,
    answer: httpx.Response | Callable[[httpx.Request], httpx.Response],
    *,
    explicit: bool = True,
    interval_s: float = 0.05,
) -> ServerMetricsSampler:
    """A sampler of one endpoint whose answers come from ``answer`` (a response, or a function
    of the request)."""
    transport = httpx.MockTransport(answer if callable(answer) else lambda request: answer)
    return ServerMetricsSampler(
        endpoints=[Endpoint(url="http://server/metrics", explicit=explicit)],
        interval_s=interval_s,
        jsonl_path=tmp_path / "server_metrics_export.jsonl",
        client=httpx.AsyncClient(transport=transport),
    )


def summarise(sampler: ServerMetricsSampler, run: RunContext) -> dict[str, Any]:
    """The sampler's summary of a finished run."""
    result = RunResult(
        status=RunStatus.FINISHED, was_cancelled=False, metrics={}, run_metrics={}, errors=(),
        start_wall_ns=None, end_wall_ns=None,
    )  # fmt: skip
    sampler.sections(run, result)
    assert sampler.summary is not None
    return sampler.summary


def scrape_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (tmp_path / "server_metrics_export.jsonl").open()]


async def test_sampler_publishes_common_values(tmp_path: Path) -> None:
    """Gauges go on the bus under their common name, with the engine's labels."""
    ctx = RecordingContext(run=make_run(tmp_path))
    sampler = sampler_for(tmp_path, httpx.Response(200, content=BODY))
    with trio.move_on_after(0.3):
        await sampler.run(ctx)
    running = [
        e for e in ctx.events if isinstance(e, ServerMetricSample) and e.name == "requests_running"
    ]
    assert running and all(4.0 == e.value for e in running)
    assert (("model_name", "m"),) == running[0].labels
    assert any(e.name == "generation_tokens_total.rate" for e in ctx.events)
    assert (tmp_path / "server_metrics_export.jsonl").read_text().count("\n") >= 2


async def test_sampler_slow_parse_never_blocks_trio(tmp_path: Path, monkeypatch) -> None:
    """A parse that takes half a second runs beside the loop: other tasks keep running."""
    real = sampler_module.parse_body

    def slow_parse(body: bytes, content_type: str = ""):
        time.sleep(0.5)
        return real(body, content_type)

    monkeypatch.setattr(sampler_module, "parse_body", slow_parse)
    ctx = RecordingContext(run=make_run(tmp_path))
    sampler = sampler_for(tmp_path, httpx.Response(200, content=BODY))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        nursery.start_soon(tick)
        await trio.sleep(0.6)
        nursery.cancel_scope.cancel()
    assert ctx.events, "the slow parse finished and published"
    # Blocked, the loop would have ticked once or twice in 0.6 s; beside a thread it ticks on.
    assert ticks >= 20


async def test_sampler_404_is_one_line_then_silence(tmp_path: Path) -> None:
    ctx = RecordingContext(run=make_run(tmp_path))
    sampler = sampler_for(tmp_path, httpx.Response(404))
    with trio.move_on_after(0.3):
        await sampler.run(ctx)
    (state,) = sampler.states
    assert (1, "HTTP 404") == (state.scrapes, state.unavailable)
    assert "http://server/metrics: HTTP 404" in sampler.report()


class Counting:
    """Answers every scrape with ``answer(n)`` (n counts the scrapes from 0)."""

    def __init__(self, answer: Callable[[int], httpx.Response]) -> None:
        self.answer = answer
        self.scrapes = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        n = self.scrapes
        self.scrapes += 1
        return self.answer(n)


def tokens_body(tokens: float, extra: bytes = b"") -> bytes:
    return (
        b"# TYPE vllm:generation_tokens_total counter\n"
        b'vllm:generation_tokens_total{model_name="m"} %d\n' % tokens
    ) + extra


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(404),
        httpx.Response(200, content=b"<html><body>hello</body></html>",
                       headers={"content-type": "text/html; charset=utf-8"}),
        httpx.Response(200, content=b'{"gpuMemUsage": 1, "iter": 3}',
                       headers={"content-type": "application/json"}),
    ],
    ids=["404", "html", "json"],
)  # fmt: skip
async def test_sampler_default_endpoint_without_metrics_is_one_info_line(
    tmp_path: Path, answer: httpx.Response
) -> None:
    """<url>/metrics of a --url (not named by the user) without metrics: one info line, then
    no further scrapes, no warning, and nothing in the end-of-run note."""
    ctx = RecordingContext(run=make_run(tmp_path))
    server = Counting(lambda n: answer)
    sampler = sampler_for(tmp_path, server, explicit=False)
    with capture_logs() as logs, trio.move_on_after(0.4):
        # 0.4 s at 0.05 s between scrapes: eight scrapes, had it kept trying.
        await sampler.run(ctx)
    assert [("info", "server_metrics_unavailable")] == [(e["log_level"], e["event"]) for e in logs]
    assert 1 == server.scrapes
    assert sampler.report() is None
    assert not ctx.events


async def test_sampler_mid_run_losses_are_one_line_per_endpoint(tmp_path: Path) -> None:
    """An endpoint that writes a malformed line, then goes down for good: one warning in all;
    every later loss is debug-level and counted in the one end-of-run note."""
    ctx = RecordingContext(run=make_run(tmp_path))

    def answer(n: int) -> httpx.Response:
        if n < 2:
            return httpx.Response(200, content=tokens_body(n, b"not prometheus {\n"))
        return httpx.Response(503)

    server = Counting(answer)
    sampler = sampler_for(tmp_path, server)
    with capture_logs() as logs, trio.move_on_after(0.4):
        await sampler.run(ctx)
    assert server.scrapes >= 5, "it kept scraping after the endpoint went down"
    shown = [e for e in logs if e["log_level"] != "debug"]
    assert [("warning", "server_metrics_malformed_lines")] == [
        (e["log_level"], e["event"]) for e in shown
    ]
    assert any(e["event"] == "server_metrics_scrape_failed" for e in logs)
    note = sampler.report()
    assert note is not None and "\n" not in note
    assert f"{server.scrapes - 2} of {server.scrapes} scrapes of http://server/metrics" in note
    assert "HTTP 503" in note and "did not parse" in note


async def test_sampler_measures_counters_from_the_phase_start_scrape(tmp_path: Path) -> None:
    """The measured phase starts between two scheduled scrapes: a scrape is taken at once as
    its baseline, and the final one as the sampler stops closes it, so the counter's total is
    exactly what it gained in between (nothing of the warm-up, nothing interpolated)."""
    run = make_run(tmp_path, started=False)
    ctx = RecordingContext(run=run)
    # Scrape 0 (warm-up): 100; the baseline: 250 (the warm-up's last requests finished after
    # scrape 0); the final scrape: 400.
    values = [100, 250, 400]
    server = Counting(lambda n: httpx.Response(200, content=tokens_body(values[n])))
    # A long interval: without the baseline, no scrape would fall inside the phase.
    sampler = sampler_for(tmp_path, server, interval_s=30.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        await trio.sleep(0.2)
        assert 1 == server.scrapes
        ctx.start_profile()
        await trio.sleep(0.2)
        assert 2 == server.scrapes, "a scrape at the phase's start, not on the timer"
        await trio.sleep(0.2)
        run.profile_end_ns = time.perf_counter_ns()
        nursery.cancel_scope.cancel()
    assert 3 == server.scrapes
    summary = summarise(sampler, run)
    (tokens,) = [s for s in summary["series"] if s["common"] == "generation_tokens_total"]
    assert 150.0 == tokens["statistics"]["total"]
    lines = scrape_lines(tmp_path)
    assert [("warmup", None), ("profile", "profile_start"), (None, "profile_end")] == [
        (x["phase"], x["mark"]) for x in lines
    ]
    (endpoint,) = summary["endpoints"]
    assert (lines[1]["wall_ns"], lines[2]["wall_ns"]) == (
        endpoint["baseline_ns"],
        endpoint["final_ns"],
    )


async def test_sampler_takes_the_baseline_before_the_phase_when_asked(tmp_path: Path) -> None:
    """``before_profile`` (the core calls it after the warm-up, before the measured phase's
    first request) scrapes at once and returns when the answer is in: that scrape is the
    baseline, so the phase start needs no scrape of its own, and the rate is over the phase's
    duration (the scrapes bracket it), not over the span of the scrapes."""
    run = make_run(tmp_path, started=False)
    ctx = RecordingContext(run=run)
    values = [100, 250, 400]
    server = Counting(lambda n: httpx.Response(200, content=tokens_body(values[n])))
    sampler = sampler_for(tmp_path, server, interval_s=30.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        await trio.sleep(0.2)
        assert 1 == server.scrapes
        with trio.fail_after(5):
            await sampler.before_profile()
        assert 2 == server.scrapes, "the baseline is in when before_profile returns"
        await trio.sleep(0.3)  # the gap before the phase is not in the rate
        ctx.start_profile()
        await trio.sleep(0.2)
        assert 2 == server.scrapes, "no second baseline as the phase starts"
        run.profile_end_ns = time.perf_counter_ns()
        nursery.cancel_scope.cancel()
    assert 3 == server.scrapes
    summary = summarise(sampler, run)
    lines = scrape_lines(tmp_path)
    assert [None, "profile_start", "profile_end"] == [x["mark"] for x in lines]
    (tokens,) = [s for s in summary["series"] if s["common"] == "generation_tokens_total"]
    stats = tokens["statistics"]
    assert 150.0 == stats["total"]
    phase_s = summary["window"]["duration_s"]
    assert stats["rate"] == pytest.approx(150.0 / phase_s)
    assert stats["covered_s"] > phase_s + 0.25, "the scrapes span the gap before the phase"


async def test_before_profile_returns_for_an_endpoint_without_metrics(tmp_path: Path) -> None:
    """A 404 ends an endpoint's scraping: before_profile must not wait on it."""
    run = make_run(tmp_path, started=False)
    ctx = RecordingContext(run=run)
    server = Counting(lambda n: httpx.Response(404))
    sampler = sampler_for(tmp_path, server, interval_s=0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        with trio.fail_after(5):
            await sampler.before_profile()
        nursery.cancel_scope.cancel()
    assert 1 == server.scrapes


async def test_without_a_warmup_the_first_scrape_is_the_baseline(tmp_path: Path) -> None:
    """No warm-up: nothing is sent before before_profile returns, so the scrape taken as the
    sampler starts is the baseline, and the phase's first request waits for that one only."""
    run = make_run(tmp_path, started=False)
    ctx = RecordingContext(run=run)
    values = [100, 400]
    server = Counting(lambda n: httpx.Response(200, content=tokens_body(values[n])))
    sampler = attrs.evolve(sampler_for(tmp_path, server, interval_s=30.0), first_is_baseline=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run, ctx)
        with trio.fail_after(5):
            await sampler.before_profile()
        assert 1 == server.scrapes
        ctx.start_profile()
        await trio.sleep(0.2)
        assert 1 == server.scrapes, "no second baseline as the phase starts"
        run.profile_end_ns = time.perf_counter_ns()
        nursery.cancel_scope.cancel()
    assert 2 == server.scrapes
    lines = scrape_lines(tmp_path)
    assert ["profile_start", "profile_end"] == [x["mark"] for x in lines]
