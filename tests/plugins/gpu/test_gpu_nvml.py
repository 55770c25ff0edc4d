"""The NVML source, driven through a fake ``pynvml`` module."""

from __future__ import annotations

import pynvml
import pytest
from aiperf_gpu.nvml import NvmlSource
from gpu_fake_nvml import (
    PUBLIC_NAMES,
    FakeDevice,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_LibraryNotFound,
)
from structlog.testing import capture_logs


def source_for(fake: FakeNvml) -> NvmlSource:
    return NvmlSource(host="bench-host", load_module=lambda: fake)


class TestFake:
    def test_fake_nvml_names_exist_in_pynvml(self) -> None:
        """The fake offers nothing the real module lacks, so tests cannot drift from it."""
        missing = [name for name in PUBLIC_NAMES if not hasattr(pynvml, name)]
        assert [] == missing
        assert pynvml.NVML_TEMPERATURE_GPU == FakeNvml.NVML_TEMPERATURE_GPU
        assert pynvml.NVML_CLOCK_SM == FakeNvml.NVML_CLOCK_SM


class TestRead:
    async def test_nvml_read_converts_units(self) -> None:
        """Percent -> ratio, mW -> W, mJ -> J; bytes, Celsius and MHz pass through."""
        fake = FakeNvml(
            [FakeDevice(uuid="GPU-aaa", util_pct=87, power_mw=312_500, energy_mj=7_250_000)]
        )
        source = source_for(fake)
        assert await source.open()
        (reading,) = await source.read()
        await source.aclose()
        assert ("nvml", "bench-host", 0, "GPU-aaa", "NVIDIA H100 80GB HBM3") == (
            reading.source,
            reading.host,
            reading.gpu_index,
            reading.uuid,
            reading.name,
        )
        assert {
            "gpu_utilization": 0.87,
            "memory_used_bytes": float(10 * 1024**3),
            "memory_total_bytes": float(80 * 1024**3),
            "power_watts": 312.5,
            "energy_joules": 7250.0,
            "temperature_celsius": 55.0,
            "sm_clock_mhz": 1755.0,
        } == reading.values

    async def test_nvml_reads_every_gpu_in_index_order(self) -> None:
        """One reading per device, indexed as NVML numbers them; byte names are decoded."""
        fake = FakeNvml(
            [FakeDevice(uuid="GPU-0"), FakeDevice(uuid="GPU-1", name=b"NVIDIA A100-SXM4-40GB")]
        )
        source = source_for(fake)
        await source.open()
        readings = await source.read()
        await source.aclose()
        assert [(0, "GPU-0"), (1, "GPU-1")] == [(r.gpu_index, r.uuid) for r in readings]
        assert "NVIDIA A100-SXM4-40GB" == readings[1].name

    async def test_nvml_unsupported_field_is_absent_and_not_asked_again(self) -> None:
        """A GPU without an energy counter: the field is missing, NVML is asked only once."""
        fake = FakeNvml(
            [FakeDevice(uuid="GPU-0", unsupported={"nvmlDeviceGetTotalEnergyConsumption"})]
        )
        source = source_for(fake)
        await source.open()
        first = (await source.read())[0]
        second = (await source.read())[0]
        await source.aclose()
        assert "energy_joules" not in first.values
        assert "energy_joules" not in second.values
        assert 250.0 == second.values["power_watts"]
        assert 1 == fake.calls["nvmlDeviceGetTotalEnergyConsumption"]
        assert source.report() is None

    async def test_nvml_transient_error_skips_the_field_and_is_reported(self) -> None:
        """A failed call leaves that field out of one sample and is counted for the report."""
        fake = FakeNvml([FakeDevice(uuid="GPU-0", fail_once={"nvmlDeviceGetPowerUsage"})])
        source = source_for(fake)
        await source.open()
        first = (await source.read())[0]
        second = (await source.read())[0]
        await source.aclose()
        assert "power_watts" not in first.values
        assert 250.0 == second.values["power_watts"]
        assert "gpu: 1 NVML reads failed over 2 samples" == source.report()

    async def test_nvml_close_shuts_nvml_down(self) -> None:
        fake = FakeNvml([FakeDevice(uuid="GPU-0")])
        source = source_for(fake)
        await source.open()
        await source.aclose()
        assert (1, 1, False) == (
            fake.calls["nvmlInit"],
            fake.calls["nvmlShutdown"],
            fake.initialized,
        )


class TestUnavailable:
    @pytest.mark.parametrize("error", [NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded])
    async def test_nvml_without_driver_logs_one_info_line(self, error: type[Exception]) -> None:
        """No driver: open() says so once, at info level, and the source stays empty."""
        source = source_for(FakeNvml(init_error=error))
        with capture_logs() as logs:
            assert not await source.open()
            assert [] == await source.read()
            await source.aclose()
        assert 1 == len(logs)
        assert ("info", "gpu_telemetry_unavailable", "nvml") == (
            logs[0]["log_level"],
            logs[0]["event"],
            logs[0]["source"],
        )
        assert "no NVIDIA driver" in logs[0]["reason"]

    async def test_nvml_without_gpus_logs_one_info_line_and_shuts_down(self) -> None:
        fake = FakeNvml([])
        source = source_for(fake)
        with capture_logs() as logs:
            assert not await source.open()
            await source.aclose()
        assert ["gpu_telemetry_unavailable"] == [entry["event"] for entry in logs]
        assert "NVML found no GPU" == logs[0]["reason"]
        assert 1 == fake.calls["nvmlShutdown"]

    async def test_nvml_package_missing_logs_one_info_line(self) -> None:
        def missing() -> object:
            raise ImportError("No module named 'pynvml'")

        with capture_logs() as logs:
            assert not await NvmlSource(host="h", load_module=missing).open()
        assert [("info", "nvidia-ml-py is not installed")] == [
            (e["log_level"], e["reason"]) for e in logs
        ]

    async def test_real_pynvml_on_this_machine_opens_or_says_why(self) -> None:
        """Through the real module: either GPUs are read, or exactly one info line says why."""
        source = NvmlSource(host="h")
        with capture_logs() as logs:
            opened = await source.open()
            readings = await source.read()
            await source.aclose()
        if opened:
            assert readings and all(r.uuid for r in readings)
        else:
            assert ["gpu_telemetry_unavailable"] == [entry["event"] for entry in logs]
            assert [] == readings
