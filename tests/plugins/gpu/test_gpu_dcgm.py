"""The DCGM exporter source: the text format, and scraping a local exporter stand-in."""

from __future__ import annotations

import attrs
from aiperf_gpu.dcgm import DcgmSource, parse_exposition, readings_from_text
from structlog.testing import capture_logs
from support.dcgm_server import DcgmServer, FakeGpu, frames, render, unused_url

MIB = 1024**2

A0 = FakeGpu(index=0, uuid="GPU-a0", host="node-a")
A1 = FakeGpu(index=1, uuid="GPU-a1", host="node-a", util_pct=90.0, power_w=410.5)
B0 = FakeGpu(index=0, uuid="GPU-b0", host="node-b", model="NVIDIA A100-SXM4-80GB")


class TestParse:
    def test_parse_exposition_reads_labels_values_and_skips_comments(self) -> None:
        text = (
            "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).\n"
            "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
            'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-x",modelName="A \\"quoted\\" name, ok"} 61\n'
            "\n"
            'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-x"} 1.5e2 1700000000000\n'
            "no_labels_metric 3\n"
            "garbage line without value\n"
        )
        samples = list(parse_exposition(text))
        assert [
            (
                "DCGM_FI_DEV_GPU_TEMP",
                {"gpu": "0", "UUID": "GPU-x", "modelName": 'A "quoted" name, ok'},
                61.0,
            ),
            ("DCGM_FI_DEV_POWER_USAGE", {"gpu": "0", "UUID": "GPU-x"}, 150.0),
            ("no_labels_metric", {}, 3.0),
        ] == [(s.name, s.labels, s.value) for s in samples]

    def test_readings_cover_several_gpus_on_two_hosts(self) -> None:
        """GPUs are told apart by host and UUID; the same index on two hosts is two GPUs."""
        readings = readings_from_text(render([A0, A1, B0]), default_host="exporter", perf_ns=5)
        assert [("node-a", 0, "GPU-a0"), ("node-a", 1, "GPU-a1"), ("node-b", 0, "GPU-b0")] == [
            (r.host, r.gpu_index, r.uuid) for r in readings
        ]
        assert "NVIDIA A100-SXM4-80GB" == readings[2].name
        assert {5} == {r.perf_ns for r in readings}
        assert {"dcgm"} == {r.source for r in readings}

    def test_readings_convert_exporter_units(self) -> None:
        """Percent -> ratio, MiB -> bytes, mJ -> J; total memory = used + free."""
        (reading,) = readings_from_text(render([A1]), default_host="x", perf_ns=0)
        assert {
            "gpu_utilization": 0.9,
            "memory_used_bytes": 11_559 * MIB,
            "memory_total_bytes": (11_559 + 70_000) * MIB,
            "power_watts": 410.5,
            "energy_joules": 1000.0,
            "temperature_celsius": 60.0,
            "sm_clock_mhz": 1980.0,
        } == reading.values

    def test_readings_leave_out_missing_fields(self) -> None:
        """An exporter without the energy counter or free memory: those fields are absent."""
        gpu = attrs.evolve(
            A0, missing=frozenset({"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_FB_FREE"})
        )
        (reading,) = readings_from_text(render([gpu]), default_host="x", perf_ns=0)
        assert "energy_joules" not in reading.values
        assert "memory_total_bytes" not in reading.values
        assert 11_559 * MIB == reading.values["memory_used_bytes"]

    def test_readings_prefer_the_exported_total_and_add_reserved_memory(self) -> None:
        base = 'gpu="0",UUID="GPU-z"'
        used_free_reserved = (
            f"DCGM_FI_DEV_FB_USED{{{base}}} 100\nDCGM_FI_DEV_FB_FREE{{{base}}} 800\n"
            f"DCGM_FI_DEV_FB_RESERVED{{{base}}} 24\n"
        )
        (parts,) = readings_from_text(used_free_reserved, default_host="x", perf_ns=0)
        (total,) = readings_from_text(
            used_free_reserved + f"DCGM_FI_DEV_FB_TOTAL{{{base}}} 1000\n",
            default_host="x",
            perf_ns=0,
        )
        assert 924 * MIB == parts.values["memory_total_bytes"]
        assert 1000 * MIB == total.values["memory_total_bytes"]

    def test_readings_without_hostname_label_use_the_url_host(self) -> None:
        text = (
            'DCGM_FI_DEV_GPU_TEMP{gpu="3",UUID="GPU-q"} 40\n'
            'DCGM_FI_DEV_GPU_TEMP{gpu="4",UUID="GPU-r"} NaN\n'
        )
        readings = readings_from_text(text, default_host="10.0.0.7", perf_ns=0)
        assert [("10.0.0.7", 3, {"temperature_celsius": 40.0})] == [
            (r.host, r.gpu_index, r.values) for r in readings
        ]

    def test_readings_treat_dcgm_blank_markers_as_missing(self) -> None:
        """An exporter passes DCGM's 'no value' markers on as numbers: they are not readings."""
        base = 'gpu="0", UUID="GPU-x", Hostname="n"'
        text = (
            f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{base}}} 9223372036854775794\n"
            f"DCGM_FI_DEV_POWER_USAGE{{{base}}} 140737488355328\n"
            f"DCGM_FI_DEV_GPU_TEMP{{{base}}} 2147483634\n"
            f"DCGM_FI_DEV_SM_CLOCK{{{base}}} 1410\n"
        )
        (reading,) = readings_from_text(text, default_host="x", perf_ns=0)
        assert {"sm_clock_mhz": 1410.0} == reading.values
        assert ("n", "GPU-x") == (reading.host, reading.uuid)

    def test_readings_ignore_other_metrics(self) -> None:
        text = 'go_goroutines 12\nDCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-a"} 0\n'
        assert [] == readings_from_text(text, default_host="x", perf_ns=0)


class TestScrape:
    async def test_dcgm_source_reads_a_live_exporter(self) -> None:
        with DcgmServer(frames([render([A0, A1])])) as server:
            source = DcgmSource(server.url)
            await source.open()
            readings = await source.read()
            await source.aclose()
        assert [("node-a", 0, 0.5), ("node-a", 1, 0.9)] == [
            (r.host, r.gpu_index, r.values["gpu_utilization"]) for r in readings
        ]
        assert 1 == server.scrapes
        assert source.report() is None

    async def test_dcgm_source_follows_counter_resets_as_served(self) -> None:
        """The source reports the counter as it is; the summary handles the reset."""
        energies = [5_000_000.0, 6_000_000.0, 200_000.0]
        texts = [render([attrs.evolve(A0, energy_mj=e)]) for e in energies]
        with DcgmServer(frames(texts)) as server:
            source = DcgmSource(server.url)
            await source.open()
            seen = [(await source.read())[0].values["energy_joules"] for _ in energies]
            await source.aclose()
        assert [5000.0, 6000.0, 200.0] == seen

    async def test_dcgm_unreachable_endpoint_warns_once_naming_the_url(self) -> None:
        url = unused_url()
        source = DcgmSource(url, timeout_s=2.0)
        await source.open()
        with capture_logs() as logs:
            for _ in range(3):
                assert [] == await source.read()
        await source.aclose()
        assert [("warning", "dcgm_endpoint_unreachable", url)] == [
            (e["log_level"], e["event"], e["url"]) for e in logs
        ]
        assert f"gpu: 3 of 3 scrapes of {url} failed" == source.report()

    async def test_dcgm_error_status_warns_once_then_recovers(self) -> None:
        with DcgmServer(frames([500, 503, render([A0])])) as server:
            source = DcgmSource(server.url)
            await source.open()
            with capture_logs() as logs:
                results = [await source.read() for _ in range(3)]
            await source.aclose()
        assert [0, 0, 1] == [len(r) for r in results]
        assert [("warning", "dcgm_endpoint_unreachable"), ("info", "dcgm_endpoint_answering")] == [
            (e["log_level"], e["event"]) for e in logs
        ]
        assert "HTTP 500" == logs[0]["error"]
        assert source.report() == f"gpu: 2 of 3 scrapes of {server.url} failed"

    async def test_dcgm_answer_without_gpu_metrics_counts_as_a_failure(self) -> None:
        with DcgmServer(frames(["go_goroutines 12\n"])) as server:
            source = DcgmSource(server.url)
            await source.open()
            with capture_logs() as logs:
                assert [] == await source.read()
            await source.aclose()
        assert "no DCGM GPU metrics in the answer" == logs[0]["error"]

    async def test_dcgm_userinfo_never_reaches_logs_or_report(self) -> None:
        url = unused_url().replace("http://", "http://scraper:hunter2secret@")
        source = DcgmSource(url, timeout_s=2.0)
        await source.open()
        with capture_logs() as logs:
            await source.read()
        await source.aclose()
        shown = repr(logs) + (source.report() or "") + source.label + repr(source)
        assert "hunter2secret" not in shown
        assert "127.0.0.1" in logs[0]["url"]
