"""Local GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``).

Every NVML call blocks, so each one runs in a worker thread. The NVML module is a
constructor argument: the plugin passes ``pynvml`` (imported on first use), tests pass a fake
with the same functions and error classes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import attrs
import structlog
import trio

from aiperf_gpu.readings import GpuReading

log = structlog.get_logger()

SOURCE = "nvml"
MW_PER_W = 1000.0
MJ_PER_J = 1000.0

#: NVML error class names meaning "this GPU will never answer this question": stop asking.
_UNSUPPORTED = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")


def import_pynvml() -> ModuleType:
    import pynvml

    return pynvml


@attrs.frozen
class _Device:
    index: int
    handle: Any
    uuid: str
    name: str


@attrs.define
class NvmlSource:
    """Reads every local GPU once per :meth:`read`."""

    host: str
    load_module: Callable[[], Any] = import_pynvml
    label: str = SOURCE
    _nvml: Any = None
    _devices: list[_Device] = attrs.field(factory=list)
    #: (gpu index, field) pairs the GPU does not support.
    _unsupported: set[tuple[int, str]] = attrs.field(factory=set)
    _errors: int = 0
    _reads: int = 0
    _initialized: bool = False

    async def open(self) -> bool:
        reason = await trio.to_thread.run_sync(self._open)
        if reason is None:
            log.debug("nvml_opened", gpus=len(self._devices))
            return True
        # No GPU is a normal way to run aiperf (the server is elsewhere): say it once, quietly.
        log.info("gpu_telemetry_unavailable", source=SOURCE, reason=reason)
        return False

    def _open(self) -> str | None:
        try:
            nvml = self.load_module()
        except ImportError:
            return "nvidia-ml-py is not installed"
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return f"no NVIDIA driver ({exc})"
        self._nvml = nvml
        self._initialized = True
        try:
            count = nvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                self._devices.append(
                    _Device(
                        index=index,
                        handle=handle,
                        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                        name=_text(nvml.nvmlDeviceGetName(handle)),
                    )
                )
        except nvml.NVMLError as exc:
            self._close()
            return f"NVML could not list the GPUs ({exc})"
        if not self._devices:
            self._close()
            return "NVML found no GPU"
        return None

    async def read(self) -> list[GpuReading]:
        if not self._devices:
            return []
        return await trio.to_thread.run_sync(self.read_now)

    def read_now(self) -> list[GpuReading]:
        """Read every GPU (blocking)."""
        self._reads += 1
        return [self._read_device(device) for device in self._devices]

    def _read_device(self, device: _Device) -> GpuReading:
        nvml = self._nvml
        handle = device.handle
        values: dict[str, float] = {}
        util = self._call(device, "gpu_utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
        if util is not None:
            values["gpu_utilization"] = util.gpu / 100.0
        memory = self._call(device, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        if memory is not None:
            values["memory_used_bytes"] = float(memory.used)
            values["memory_total_bytes"] = float(memory.total)
        power = self._call(device, "power_watts", nvml.nvmlDeviceGetPowerUsage, handle)
        if power is not None:
            values["power_watts"] = power / MW_PER_W
        energy = self._call(
            device, "energy_joules", nvml.nvmlDeviceGetTotalEnergyConsumption, handle
        )
        if energy is not None:
            values["energy_joules"] = energy / MJ_PER_J
        temperature = self._call(
            device,
            "temperature_celsius",
            nvml.nvmlDeviceGetTemperature,
            handle,
            nvml.NVML_TEMPERATURE_GPU,
        )
        if temperature is not None:
            values["temperature_celsius"] = float(temperature)
        clock = self._call(
            device, "sm_clock_mhz", nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM
        )
        if clock is not None:
            values["sm_clock_mhz"] = float(clock)
        return GpuReading(
            source=SOURCE,
            host=self.host,
            gpu_index=device.index,
            uuid=device.uuid,
            name=device.name,
            perf_ns=time.perf_counter_ns(),
            values=values,
        )

    def _call(self, device: _Device, field: str, fn: Callable[..., Any], *args: Any) -> Any:
        key = (device.index, field)
        if key in self._unsupported:
            return None
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            if type(exc).__name__ in _UNSUPPORTED:
                self._unsupported.add(key)
                log.debug("nvml_field_unsupported", gpu=device.index, field=field)
            else:
                self._errors += 1
            return None

    async def aclose(self) -> None:
        if self._initialized:
            await trio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        self._devices.clear()
        if not self._initialized:
            return
        self._initialized = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass

    def report(self) -> str | None:
        if not self._errors:
            return None
        return f"gpu: {self._errors} NVML reads failed over {self._reads} samples"


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
