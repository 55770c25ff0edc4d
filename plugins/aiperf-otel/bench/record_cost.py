"""What the OTel sink costs aiperf's event loop while requests finish at a steady rate.

    python plugins/aiperf-otel/bench/record_cost.py [--rate 200] [--seconds 3] [--chunks 128]

Feeds synthetic finished requests to the sink as the core does (a memory channel, one task),
``--rate`` per second, with exporters that encode like OTLP but send nothing. Beside it, a
probe task sleeps 1 ms again and again and measures how late it wakes up: that lateness is
what any request task would suffer. Reported for no sink (baseline) and each ``--stream``:

- ``cpu_us_per_request``: the sink task's own CPU time per request (trio thread);
- ``longest_step_us``: the longest single step of the sink task (wall clock);
- ``wake_late_us``: p50 / p99 / max lateness of the probe's 1 ms sleeps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio
from aiperf import (
    LiveEvent,
    Phase,
    ProfileConfig,
    RequestDone,
    RequestMetrics,
    RequestRecord,
    RunContext,
    RunStatus,
)
from aiperf_otel.config import OtelConfig, Stream, parse_otel_url
from aiperf_otel.sink import Exporters, OtelSink
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class EncodeOnlyMetrics(MetricExporter):
    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        encode_metrics(metrics_data).SerializeToString()
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class EncodeOnlySpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


class StepTimer(trio.abc.Instrument):
    """The longest step of the task whose name contains ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.longest_ns = 0
        self.cpu_ns = 0
        self._started = 0
        self._cpu_started = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.name in task.name:
            self._started = time.perf_counter_ns()
            self._cpu_started = time.thread_time_ns()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.name in task.name and self._started:
            self.cpu_ns += time.thread_time_ns() - self._cpu_started
            self.longest_ns = max(self.longest_ns, time.perf_counter_ns() - self._started)
            self._started = 0


def request(index: int, chunks: int) -> RequestDone:
    start = 1_000_000_000 + index * 1_000_000
    times = [start + 50_000_000 + i * 10_000_000 for i in range(chunks)]
    record = RequestRecord(
        index=index,
        phase=Phase.PROFILE,
        start_ns=start,
        end_ns=times[-1],
        chunk_ns=times,
        response_model="my-model",
        input_tokens=128,
        max_tokens=chunks,
    )
    values = {
        "request_latency": float(times[-1] - start),
        "time_to_first_token": 50e6,
        "input_sequence_length": 128.0,
        "output_sequence_length": float(chunks),
    }
    metrics = RequestMetrics(
        index=index,
        phase=Phase.PROFILE,
        ok=True,
        error=None,
        start_ns=start,
        end_ns=times[-1],
        values=values,
        inter_chunk_latency_ns=tuple(b - a for a, b in itertools.pairwise(times)),
        response_model="my-model",
    )
    return RequestDone(metrics=metrics, record=record)


async def feed(
    stream: Stream | None, rate: float, seconds: float, chunks: int, timer: StepTimer
) -> dict[str, Any]:
    run = RunContext(
        config=ProfileConfig(model="my-model", streaming=True),
        run_dir=Path("."),
        benchmark_id="bench",
        version="0",
        provider="_OTHER",
        operation_name="chat",
        server_address="127.0.0.1",
        server_port=8000,
        load_setting="concurrency4",
        anchor_wall_ns=time.time_ns(),
        anchor_perf_ns=0,
        phase=Phase.PROFILE,
    )
    sink: OtelSink | None = None
    if stream is not None:
        config = OtelConfig(
            endpoints=parse_otel_url("localhost"), stream=stream, export_interval_s=1.0
        )
        sink = OtelSink(
            config=config,
            make_exporters=lambda c: Exporters(
                metrics=EncodeOnlyMetrics(), spans=EncodeOnlySpans() if c.stream.timing else None
            ),
            probe=lambda url, timeout: True,
        )
        await sink.open(run)
    send, receive = trio.open_memory_channel[LiveEvent](65_536)
    late_ns: list[int] = []
    total = int(rate * seconds)

    async def probe(done: trio.Event) -> None:
        while not done.is_set():
            asked = time.perf_counter_ns()
            await trio.sleep(0.001)
            late_ns.append(time.perf_counter_ns() - asked - 1_000_000)

    async def drain(events: trio.MemoryReceiveChannel[LiveEvent]) -> None:
        async for _ in events:
            pass

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(probe, done)
        nursery.start_soon(sink.run if sink else drain, receive, name="otel-sink")
        async with send:
            started = trio.current_time()
            for i in range(total):
                await trio.sleep_until(started + i / rate)
                send.send_nowait(request(i, chunks))
        done.set()
    if sink is not None:
        await sink.close(RunStatus.FINISHED)
    late_ns.sort()

    def pct(q: float) -> float:
        return round(late_ns[min(len(late_ns) - 1, int(q * len(late_ns)))] / 1e3, 1)

    return {
        "cpu_us_per_request": round(timer.cpu_ns / total / 1e3, 1),
        "longest_step_us": round(timer.longest_ns / 1e3, 1),
        "wake_late_us": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="finished requests per second")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--chunks", type=int, default=128, help="content chunks per request")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for stream in (None, *Stream):
        timer = StepTimer("otel-sink")
        results[stream.value if stream else "no_sink"] = trio.run(
            feed, stream, args.rate, args.seconds, args.chunks, timer, instruments=[timer]
        )
    print(json.dumps({"rate": args.rate, "chunks_per_request": args.chunks, **results}, indent=2))


if __name__ == "__main__":
    main()
