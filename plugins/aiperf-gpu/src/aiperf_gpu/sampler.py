"""The GPU sampler: reads every source on its own schedule beside the benchmark, puts each
reading on the live bus, appends it to ``gpu_telemetry_export.jsonl`` and keeps it for the
summary."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs
import structlog
import trio
from aiperf import HardwareSample, Phase, record_artifacts

from aiperf_gpu.readings import FIELD_NAMES, GpuReading, Source
from aiperf_gpu.summary import TelemetryStore, build_sections

if TYPE_CHECKING:
    from aiperf import ReportSection, RunContext, RunResult, SamplerContext

    from aiperf_gpu.config import GpuConfig

log = structlog.get_logger()

JSONL_FILE = "gpu_telemetry_export.jsonl"
#: how long the last reading, taken as the sampler is stopped, may take.
FINAL_SAMPLE_BUDGET_S = 1.0


def phase_at(run: RunContext, perf_ns: int) -> Phase | None:
    """The phase a reading belongs to: ``None`` once the measured phase is over."""
    if run.profile_end_ns is not None and perf_ns > run.profile_end_ns:
        return None
    if run.profile_start_ns is not None and perf_ns >= run.profile_start_ns:
        return Phase.PROFILE
    return Phase.WARMUP


def to_sample(run: RunContext, reading: GpuReading) -> HardwareSample:
    values = reading.values
    return HardwareSample(
        source=reading.source,
        host=reading.host,
        gpu_index=reading.gpu_index,
        uuid=reading.uuid,
        name=reading.name,
        wall_ns=run.to_wall_ns(reading.perf_ns),
        phase=phase_at(run, reading.perf_ns),
        **{field: values.get(field) for field in FIELD_NAMES},
    )


def _drain(receive: trio.MemoryReceiveChannel[list[HardwareSample]]) -> list[HardwareSample]:
    out: list[HardwareSample] = []
    while True:
        try:
            out.extend(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return out


def jsonl_line(sample: HardwareSample) -> str:
    data: dict[str, Any] = {
        "wall_ns": sample.wall_ns,
        "phase": sample.phase.value if sample.phase is not None else None,
        "source": sample.source,
        "host": sample.host,
        "gpu_index": sample.gpu_index,
        "uuid": sample.uuid,
        "name": sample.name,
    }
    for field in FIELD_NAMES:
        data[field] = getattr(sample, field)
    return json.dumps(data, separators=(",", ":")) + "\n"


@attrs.define
class JsonlWriter:
    """Appends samples to the JSONL file, from a worker thread. The sampler's one writer task
    makes the calls one after another, ``finish`` last."""

    path: Path
    _file: IO[str] | None = None
    failed: bool = False

    def write(self, samples: Sequence[HardwareSample]) -> None:
        if self.failed or not samples:
            return
        try:
            if self._file is None:
                self._file = self.path.open("w", encoding="utf-8")
            self._file.write("".join(jsonl_line(s) for s in samples))
            # A reader (or a crash) sees whole lines up to the last sample.
            self._file.flush()
        except OSError as exc:
            self.failed = True
            log.warning("gpu_telemetry_write_failed", path=str(self.path), error=str(exc))

    def finish(self, samples: Sequence[HardwareSample]) -> None:
        """Write the last samples and close the file."""
        self.write(samples)
        if self._file is not None:
            self._file.close()
            self._file = None


@attrs.define
class GpuSampler:
    """Samples every source each ``interval_s`` until cancelled (see :class:`aiperf.Sampler`)."""

    sources: Sequence[Source]
    interval_s: float
    jsonl_path: Path
    console: bool = False
    name: str = "gpu"
    store: TelemetryStore = attrs.field(factory=TelemetryStore)
    #: labels of the sources that opened (had GPUs to read).
    active: list[str] = attrs.field(factory=list)
    _writer: JsonlWriter = attrs.field(init=False)
    _pending: trio.MemorySendChannel[list[HardwareSample]] | None = None

    def __attrs_post_init__(self) -> None:
        self._writer = JsonlWriter(self.jsonl_path)

    async def run(self, ctx: SamplerContext) -> None:
        # The file is written by its own task so that a slow disk never delays a reading.
        send, receive = trio.open_memory_channel[list[HardwareSample]](math.inf)
        self._pending = send
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_batches, receive)
                async with trio.open_nursery() as sampling:
                    for source in self.sources:
                        sampling.start_soon(self._sample_source, ctx, source)
                send.close()
        finally:
            send.close()
            rest = _drain(receive)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._writer.finish, rest)

    async def _write_batches(
        self, receive: trio.MemoryReceiveChannel[list[HardwareSample]]
    ) -> None:
        async for batch in receive:
            await trio.to_thread.run_sync(self._writer.write, batch)

    async def _sample_source(self, ctx: SamplerContext, source: Source) -> None:
        opened = False
        try:
            opened = await source.open()
            if not opened:
                return
            self.active.append(source.label)
            await self._loop(ctx, source)
        except Exception as exc:  # noqa: BLE001 - one broken source must not stop the others
            log.warning(
                "gpu_source_failed", source=source.label, error=f"{type(exc).__name__}: {exc}"
            )
        finally:
            # The core stops samplers right after the measured phase ends: one more reading
            # brackets the phase's end, so its energy is measured rather than extrapolated.
            with trio.move_on_after(FINAL_SAMPLE_BUDGET_S, shield=True):
                if opened:
                    await self.sample_once(ctx, source)
            with trio.CancelScope(shield=True):
                await source.aclose()

    async def _loop(self, ctx: SamplerContext, source: Source) -> None:
        next_at = trio.current_time()
        while True:
            await self.sample_once(ctx, source)
            next_at += self.interval_s
            # A read that took longer than the interval: skip the missed ticks instead of
            # bursting to catch up (the samples would all carry nearly the same values).
            next_at = max(next_at, trio.current_time())
            await trio.sleep_until(next_at)

    async def sample_once(self, ctx: SamplerContext, source: Source) -> list[HardwareSample]:
        readings = await source.read()
        if not readings:
            return []
        samples = [to_sample(ctx.run, reading) for reading in readings]
        for sample in samples:
            ctx.publish(sample)
            self.store.add(sample)
        assert self._pending is not None, "sampled outside run()"
        # Unbounded: a reading is never dropped or delayed for the file's sake.
        self._pending.send_nowait(samples)
        return samples

    def sections(self, run: RunContext, result: RunResult) -> Sequence[ReportSection]:
        if not self.store.count or run.profile_start_ns is None:
            return []
        end = run.profile_end_ns if run.profile_end_ns is not None else run.profile_start_ns
        return build_sections(
            self.store,
            start_ns=run.to_wall_ns(run.profile_start_ns),
            end_ns=run.to_wall_ns(end),
            result=result,
            sources=self.active,
            interval_s=self.interval_s,
            console=self.console,
        )

    def report(self) -> str | None:
        lines = [line for source in self.sources if (line := source.report())]
        if self._writer.failed:
            lines.append(
                f"gpu: could not write {self.jsonl_path.name}; samples after that are missing"
            )
        return "; ".join(lines) or None


def create_sampler(gpu: GpuConfig, run: RunContext, ca_bundle: Path | None = None) -> GpuSampler:
    """The sampler for one run: NVML first (when asked), then each DCGM endpoint."""
    import socket

    from aiperf_gpu.dcgm import DcgmSource
    from aiperf_gpu.nvml import NvmlSource

    sources: list[Source] = []
    if gpu.nvml:
        sources.append(NvmlSource(host=socket.gethostname()))
    # A scrape may take up to the interval (at least a second) before it counts as failed.
    timeout = max(1.0, gpu.interval_s)
    sources += [DcgmSource(url, timeout_s=timeout, ca_bundle=ca_bundle) for url in gpu.dcgm_urls]
    # In the run's manifest, so that uploaders (MLflow) send it.
    record_artifacts(run, [run.run_dir / JSONL_FILE])
    return GpuSampler(
        sources=sources,
        interval_s=gpu.interval_s,
        jsonl_path=run.run_dir / JSONL_FILE,
        console=gpu.table,
    )
