"""aiperf-gpu in real ``aiperf profile`` runs against the mock server, DCGM served on loopback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiperf.testing import MockServer
from support.dcgm_server import DcgmServer, FakeGpu, constant_power, unused_url

pytestmark = pytest.mark.integration

WATTS = 200.0
SECRET = "hunter2secret"
TOKENS = 40


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    """Requests of about 0.4 s: a run of 8, two at a time, lasts about 1.7 s."""
    with MockServer(ttft_ms=20, itl_ms=10, output_tokens=TOKENS) as mock:
        yield mock


def profile(server: MockServer, cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aiperf",
            "profile",
            "--url",
            server.url,
            "--model",
            "test-model",
            "--streaming",
            "--concurrency",
            "2",
            "--request-count",
            "8",
            "--artifact-dir",
            "run",
            *flags,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def gpu_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "gpu" in line.lower() or "dcgm" in line.lower()]


def nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


class TestNoTelemetry:
    def test_cli_without_gpu_says_so_once_and_the_run_is_unaffected(
        self, server: MockServer, tmp_path: Path
    ) -> None:
        """The default is NVML: on a machine without a driver, one info line and nothing else."""
        done = profile(server, tmp_path)
        assert 0 == done.returncode, done.stderr
        summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
        assert 8 == summary["metrics"]["request_count"]["avg"]
        if nvml_works():
            assert (tmp_path / "run" / "gpu_telemetry_export.jsonl").exists()
            assert "gpu_telemetry" in summary
        else:
            (line,) = gpu_lines(done.stderr)
            assert (
                line.startswith("INFO")
                and "gpu_telemetry_unavailable" in line
                and "source=nvml" in line
            )
            assert not (tmp_path / "run" / "gpu_telemetry_export.jsonl").exists()
            assert "gpu_telemetry" not in summary and "gpu_energy" not in summary

    def test_cli_no_gpu_telemetry_is_silent(self, server: MockServer, tmp_path: Path) -> None:
        done = profile(server, tmp_path, "--no-gpu-telemetry")
        assert 0 == done.returncode, done.stderr
        assert [] == gpu_lines(done.stderr)
        assert not (tmp_path / "run" / "gpu_telemetry_export.jsonl").exists()

    def test_cli_dead_dcgm_endpoint_warns_once_naming_it(
        self, server: MockServer, tmp_path: Path
    ) -> None:
        url = unused_url()
        done = profile(server, tmp_path, "--gpu-telemetry", url, "--gpu-telemetry-interval", "0.05")
        assert 0 == done.returncode, done.stderr
        (line,) = gpu_lines(done.stderr)
        assert (
            line.startswith("WARNING")
            and "dcgm_endpoint_unreachable" in line
            and f"url={url}" in line
        )
        summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
        assert 8 == summary["metrics"]["request_count"]["avg"]
        assert any(note.startswith("gpu: ") and url in note for note in summary["notes"])

    @pytest.mark.parametrize(
        ("flags", "message"),
        [
            (
                ["--gpu-telemetry", "nvlm"],
                "--gpu-telemetry: expected 'nvml' or a DCGM exporter URL",
            ),
            (
                ["--no-gpu-telemetry", "--gpu-telemetry", "nvml"],
                "--no-gpu-telemetry: cannot be combined",
            ),
        ],
    )
    def test_cli_bad_flag_is_one_line_and_exit_2(
        self, server: MockServer, tmp_path: Path, flags: list[str], message: str
    ) -> None:
        done = profile(server, tmp_path, *flags)
        assert 2 == done.returncode
        (line,) = done.stderr.strip().splitlines()
        assert message in line
        assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def exporters() -> Iterator[tuple[DcgmServer, DcgmServer]]:
    """Two hosts, each with its own exporter: node-a with two GPUs, node-b with one."""
    node_a = [
        FakeGpu(index=0, uuid="GPU-a0", host="node-a"),
        FakeGpu(index=1, uuid="GPU-a1", host="node-a"),
    ]
    node_b = [FakeGpu(index=0, uuid="GPU-b0", host="node-b", energy_mj=9_000_000.0)]
    with (
        DcgmServer(constant_power(node_a, WATTS)) as a,
        DcgmServer(constant_power(node_b, WATTS)) as b,
    ):
        yield a, b


@pytest.fixture(scope="module")
def run_dir(
    server: MockServer,
    exporters: tuple[DcgmServer, DcgmServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    a, b = exporters
    cwd = tmp_path_factory.mktemp("dcgm")
    url_b = b.url.replace("http://", f"http://scraper:{SECRET}@")
    done = profile(
        server,
        cwd,
        "--gpu-telemetry",
        a.url,
        url_b,
        "--gpu-telemetry-interval",
        "0.05",
        "--gpu-telemetry-table",
    )
    assert 0 == done.returncode, done.stderr
    (cwd / "stdout.txt").write_text(done.stdout + done.stderr)
    return cwd / "run"


class TestDcgm:
    def test_cli_jsonl_has_every_sample_of_every_gpu(self, run_dir: Path) -> None:
        lines = [
            json.loads(line)
            for line in (run_dir / "gpu_telemetry_export.jsonl").read_text().splitlines()
        ]
        assert {("node-a", 0, "GPU-a0"), ("node-a", 1, "GPU-a1"), ("node-b", 0, "GPU-b0")} == {
            (line["host"], line["gpu_index"], line["uuid"]) for line in lines
        }
        assert {"dcgm"} == {line["source"] for line in lines}
        assert {WATTS} == {line["power_watts"] for line in lines}
        assert "profile" in {line["phase"] for line in lines}
        # The sampler reads once more as the run stops: that sample is after the measured phase.
        assert None in {line["phase"] for line in lines}
        for uuid in ("GPU-a0", "GPU-a1", "GPU-b0"):
            times = [line["wall_ns"] for line in lines if line["uuid"] == uuid]
            assert len(times) >= 5 and times == sorted(times)

    def test_cli_summary_has_per_gpu_statistics_of_the_measured_phase(self, run_dir: Path) -> None:
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
        telemetry = summary["gpu_telemetry"]
        assert ["node-a gpu0", "node-a gpu1", "node-b gpu0"] == [
            f"{g['host']} gpu{g['gpu_index']}" for g in telemetry["gpus"]
        ]
        for gpu in telemetry["gpus"]:
            power = gpu["metrics"]["power_watts"]
            assert (WATTS, WATTS, WATTS, WATTS) == (
                power["avg"],
                power["min"],
                power["p50"],
                power["p99"],
            )
            assert 50.0 == pytest.approx(gpu["metrics"]["gpu_utilization"]["avg"])
            assert gpu["samples"] == gpu["metrics"]["power_watts"]["count"] >= 3
        window = telemetry["window"]
        assert (
            summary["start_time_ns"] - 10**9 < window["start_time_ns"] <= summary["start_time_ns"]
        )
        assert summary["end_time_ns"] <= window["end_time_ns"] < summary["end_time_ns"] + 10**9

    def test_cli_energy_and_tokens_per_joule(self, run_dir: Path) -> None:
        """Each GPU draws 200 W: energy = 200 W x the phase's length, and tokens per joule is
        the run's output tokens over that energy."""
        summary = json.loads((run_dir / "profile_export_aiperf.json").read_text())
        duration = summary["gpu_telemetry"]["window"]["duration_s"]
        for gpu in summary["gpu_telemetry"]["gpus"]:
            # The exporter computes energy from its own clock at answer time, the sampler stamps
            # the answer's arrival: a few ms apart on loopback, well within 5 % of a ~1.7 s phase.
            assert WATTS * duration == pytest.approx(gpu["energy"]["joules"], rel=0.05)
            assert "counter" == gpu["energy"]["method"]
        energy = summary["gpu_energy"]
        total = energy["energy"]["value"]
        assert 3 * WATTS * duration == pytest.approx(total, rel=0.05)
        tokens = summary["metrics"]["total_output_tokens"]["avg"]
        assert 8 * TOKENS == tokens == energy["output_tokens"]
        assert tokens / total == pytest.approx(energy["output_tokens_per_joule"]["value"], rel=1e-9)
        assert total / 8 == pytest.approx(energy["energy_per_request"]["value"], rel=1e-9)

    def test_cli_csv_and_console_show_the_gpu_tables(self, run_dir: Path) -> None:
        rows = list(csv.reader((run_dir / "profile_export_aiperf.csv").open()))
        titles = [r[0] for r in rows if len(r) == 1]
        assert ["GPU Telemetry (measured phase)", "GPU Energy (measured phase)"] == [
            t for t in titles if t.startswith("GPU")
        ]
        start = rows.index(["GPU Telemetry (measured phase)"])
        assert ["GPU", "Metric", "Unit", "avg", "min", "max", "p50", "p99"] == rows[start + 1]
        console = (run_dir.parent / "stdout.txt").read_text()
        assert "GPU Energy (measured phase)" in console and "Output Tokens per Joule" in console

    def test_cli_exporter_credentials_reach_no_file_and_no_log(self, run_dir: Path) -> None:
        leaks = [
            p.name
            for p in run_dir.rglob("*")
            if p.is_file() and SECRET in p.read_text(errors="replace")
        ]
        assert [] == leaks
        assert SECRET not in (run_dir.parent / "stdout.txt").read_text()
