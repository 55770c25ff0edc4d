"""GPU telemetry end to end: a benchmark against the mock server with a DCGM exporter stand-in
on loopback, streaming to an OTLP receiver and logging to a local MLflow store.

What the exporter serves is known exactly (every GPU draws 200 W at 50 % utilization), so
the JSONL, the summary, tokens per joule and what OTel and MLflow received are all checked
against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from aiperf.testing import MockServer
from support.dcgm_server import DcgmServer, FakeGpu, constant_power
from support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

WATTS = 200.0
REQUESTS = 8
TOKENS = 40
GPUS = (
    FakeGpu(index=0, uuid="GPU-11111111-aaaa", host="node-a"),
    FakeGpu(index=1, uuid="GPU-22222222-bbbb", host="node-a", energy_mj=3_000_000.0),
)
UUIDS = {g.uuid for g in GPUS}


@attrs.frozen
class Finished:
    run_dir: Path
    store: str
    otel: OtlpReceiver
    output: str


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    """One benchmark with every sink on; the servers stay up while the tests read them."""
    cwd = tmp_path_factory.mktemp("gpu-e2e")
    # A file store: no database to migrate, so the test spends its time on the benchmark.
    store = f"file:{cwd / 'mlruns'}"
    with (
        pytest.MonkeyPatch.context() as patch,
        MockServer(ttft_ms=20, itl_ms=10, output_tokens=TOKENS) as server,
        DcgmServer(constant_power(GPUS, WATTS)) as dcgm,
        OtlpReceiver() as otel,
    ):
        # MLflow 3.7+ refuses file stores unless told; aiperf-mlflow sets this for its own client.
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        done = subprocess.run(
            [
                sys.executable, "-m", "aiperf", "profile", "--url", server.url,
                "--model", "gpu-model", "--streaming", "--concurrency", "2",
                "--request-count", str(REQUESTS), "--artifact-dir", "run",
                "--gpu-telemetry", dcgm.url, "--gpu-telemetry-interval", "0.05",
                "--otel-url", otel.url, "--otel-export-interval", "0.5",
                "--mlflow-tracking-uri", store, "--mlflow-experiment", "gpu-e2e",
            ],
            cwd=cwd, capture_output=True, text=True, timeout=180,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr
        yield Finished(
            run_dir=cwd / "run", store=store, otel=otel, output=done.stdout + done.stderr
        )


def summary(finished: Finished) -> dict:
    return json.loads((finished.run_dir / "profile_export_aiperf.json").read_text())


def test_gpu_jsonl_holds_every_sample(finished: Finished) -> None:
    lines = [
        json.loads(line)
        for line in (finished.run_dir / "gpu_telemetry_export.jsonl").read_text().splitlines()
    ]
    assert UUIDS == {line["uuid"] for line in lines}
    assert {("dcgm", "node-a")} == {(line["source"], line["host"]) for line in lines}
    assert {(WATTS, 0.5, 60.0, 1980.0)} == {
        (
            line["power_watts"],
            line["gpu_utilization"],
            line["temperature_celsius"],
            line["sm_clock_mhz"],
        )
        for line in lines
    }
    assert "profile" in {line["phase"] for line in lines}


def test_gpu_summary_statistics(finished: Finished) -> None:
    gpus = summary(finished)["gpu_telemetry"]["gpus"]
    assert [(0, "GPU-11111111-aaaa"), (1, "GPU-22222222-bbbb")] == [
        (g["gpu_index"], g["uuid"]) for g in gpus
    ]
    for gpu in gpus:
        stats = gpu["metrics"]
        assert (WATTS, WATTS, WATTS) == (
            stats["power_watts"]["avg"],
            stats["power_watts"]["min"],
            stats["power_watts"]["max"],
        )
        assert 50.0 == pytest.approx(stats["gpu_utilization"]["p99"])
        assert 11_559 / 1024 == pytest.approx(stats["memory_used_bytes"]["p50"])


def test_gpu_tokens_per_joule(finished: Finished) -> None:
    """Two GPUs at 200 W over the measured phase; the run's output tokens over that energy."""
    data = summary(finished)
    duration = data["gpu_telemetry"]["window"]["duration_s"]
    energy = data["gpu_energy"]
    # The exporter computes its counter from its own clock when it answers; aiperf stamps the
    # answer's arrival. Loopback keeps them a few ms apart, far inside 5 % of a ~1.7 s phase.
    assert 2 * WATTS * duration == pytest.approx(energy["energy"]["value"], rel=0.05)
    tokens = data["metrics"]["total_output_tokens"]["avg"]
    assert REQUESTS * TOKENS == tokens
    assert tokens / (2 * WATTS * duration) == pytest.approx(
        energy["output_tokens_per_joule"]["value"], rel=0.05
    )
    assert tokens / energy["energy"]["value"] == pytest.approx(
        energy["output_tokens_per_joule"]["value"], rel=1e-9
    )


def test_gpu_gauges_reach_the_otel_collector(finished: Finished) -> None:
    otel = finished.otel
    expected = {
        "hw.gpu.utilization": 0.5,
        "hw.power": WATTS,
        "hw.temperature": 60.0,
        "hw.gpu.memory.usage": 11_559 * 1024**2,
    }
    for name, value in expected.items():
        points = otel.points(name)
        assert UUIDS == {p.attributes["hw.id"] for p in points}, name
        assert {value} == {p.value for p in points}, name
    energy = otel.points("hw.energy")
    assert UUIDS == {p.attributes["hw.id"] for p in energy}
    # The counter went up during the run: the last point of each GPU is above its start.
    for gpu in GPUS:
        values = [p.value for p in energy if p.attributes["hw.id"] == gpu.uuid]
        assert values[-1] > gpu.energy_mj / 1000


def test_gpu_live_metrics_and_jsonl_reach_mlflow(finished: Finished) -> None:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((finished.run_dir / "mlflow_export.json").read_text())["run_id"]
    client = MlflowClient(tracking_uri=finished.store)
    for index in (0, 1):
        utilization = client.get_metric_history(run_id, f"live.hw.gpu.utilization.gpu{index}")
        power = client.get_metric_history(run_id, f"live.hw.power.gpu{index}")
        assert len(utilization) >= 3 and {0.5} == {m.value for m in utilization}
        assert {WATTS} == {m.value for m in power}
    assert "gpu_telemetry_export.jsonl" in {a.path for a in client.list_artifacts(run_id)}
