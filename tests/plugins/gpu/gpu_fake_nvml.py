"""A stand-in for the ``pynvml`` module (nvidia-ml-py) with scriptable GPUs.

It has the functions, constants and error classes (same names) that aiperf-gpu calls, so the
plugin's NVML source runs its real code against it. Units are NVML's: percent, bytes,
milliwatts, millijoules, degrees Celsius, MHz.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - pynvml's names
    pass


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    pass


class NVMLError_FunctionNotFound(NVMLError):  # noqa: N801
    pass


class NVMLError_GpuIsLost(NVMLError):  # noqa: N801
    pass


@attrs.define
class FakeDevice:
    uuid: str
    name: str | bytes = "NVIDIA H100 80GB HBM3"
    util_pct: int = 40
    memory_used: int = 10 * 1024**3
    memory_total: int = 80 * 1024**3
    power_mw: int = 250_000
    energy_mj: int = 5_000_000
    temp_c: int = 55
    sm_clock_mhz: int = 1755
    #: names of nvml functions this GPU answers with NVMLError_NotSupported.
    unsupported: set[str] = attrs.field(factory=set)
    #: names of nvml functions that fail once with NVMLError_GpuIsLost on their next call.
    fail_once: set[str] = attrs.field(factory=set)


@attrs.frozen
class _Utilization:
    gpu: int
    memory: int


@attrs.frozen
class _Memory:
    total: int
    free: int
    used: int


class FakeNvml:
    """Use an instance where ``pynvml`` is expected: ``NvmlSource(load_module=lambda: fake)``."""

    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost

    def __init__(
        self, devices: list[FakeDevice] | None = None, init_error: type[NVMLError] | None = None
    ) -> None:
        self.devices = devices if devices is not None else []
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self.initialized = False

    def _device(self, fn: str, handle: Any) -> FakeDevice:
        self.calls[fn] += 1
        if not self.initialized:
            raise NVMLError("Uninitialized")
        device = self.devices[handle]
        if fn in device.unsupported:
            raise NVMLError_NotSupported("Not Supported")
        if fn in device.fail_once:
            device.fail_once.discard(fn)
            raise NVMLError_GpuIsLost("GPU is lost")
        return device

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error("NVML Shared Library Not Found")
        self.initialized = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.calls["nvmlShutdown"] += 1
        self.initialized = False

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self.calls["nvmlDeviceGetCount"] += 1
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        self.calls["nvmlDeviceGetHandleByIndex"] += 1
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return self._device("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:  # noqa: N802
        return self._device("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> _Utilization:  # noqa: N802
        device = self._device("nvmlDeviceGetUtilizationRates", handle)
        return _Utilization(gpu=device.util_pct, memory=device.util_pct // 2)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:  # noqa: N802
        d = self._device("nvmlDeviceGetMemoryInfo", handle)
        return _Memory(
            total=d.memory_total, free=d.memory_total - d.memory_used, used=d.memory_used
        )

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        return self._device("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        return self._device("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:  # noqa: N802
        assert sensor == NVML_TEMPERATURE_GPU
        return self._device("nvmlDeviceGetTemperature", handle).temp_c

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:  # noqa: N802
        assert clock == NVML_CLOCK_SM
        return self._device("nvmlDeviceGetClockInfo", handle).sm_clock_mhz


#: every name of the fake that stands for a name of the real module.
PUBLIC_NAMES = tuple(n for n in vars(FakeNvml) if n.startswith(("nvml", "NVML")))
