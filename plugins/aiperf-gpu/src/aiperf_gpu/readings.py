"""What a GPU source reads: one :class:`GpuReading` per GPU per sample, in the units of
:class:`aiperf.HardwareSample` (ratio, bytes, watts, joules, degrees Celsius, MHz)."""

from __future__ import annotations

from typing import Protocol

import attrs


@attrs.frozen
class Field:
    name: str
    header: str
    #: unit shown in the summary (JSON, CSV, console).
    unit: str
    #: sample value * scale = summary value.
    scale: float = 1.0


GIB = 1024**3

#: the fields summarised with statistics. The energy counter is summarised as its increase.
STAT_FIELDS: tuple[Field, ...] = (
    Field("gpu_utilization", "GPU Utilization", "%", 100.0),
    Field("memory_used_bytes", "Memory Used", "GiB", 1 / GIB),
    Field("memory_total_bytes", "Memory Total", "GiB", 1 / GIB),
    Field("power_watts", "Power", "W"),
    Field("temperature_celsius", "Temperature", "°C"),
    Field("sm_clock_mhz", "SM Clock", "MHz"),
)
ENERGY = "energy_joules"
#: every value field of :class:`aiperf.HardwareSample`, in the order the JSONL writes them.
FIELD_NAMES: tuple[str, ...] = (
    "gpu_utilization",
    "memory_used_bytes",
    "memory_total_bytes",
    "power_watts",
    ENERGY,
    "temperature_celsius",
    "sm_clock_mhz",
)


@attrs.frozen(kw_only=True)
class GpuReading:
    """One GPU at one moment; a field the source could not read is absent from ``values``."""

    source: str
    host: str
    gpu_index: int
    uuid: str
    name: str
    #: ``time.perf_counter_ns()`` when the values were read (or arrived, for a scrape).
    perf_ns: int
    values: dict[str, float]


class Source(Protocol):
    """A place GPU readings come from (local NVML, a DCGM exporter)."""

    #: what logs and the summary call it (never with credentials).
    label: str

    async def open(self) -> bool:
        """Get ready; ``False`` (after saying why, once) when this source has nothing to give."""

    async def read(self) -> list[GpuReading]:
        """Read every GPU once; an empty list when this attempt failed."""

    async def aclose(self) -> None: ...

    def report(self) -> str | None:
        """One line about what went wrong during the run, or ``None``."""
