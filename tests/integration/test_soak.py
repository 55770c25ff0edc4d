"""The reliability soak at a small size: every fault kind the mock server knows, at 5 % each
(so each occurs dozens of times), with OpenTelemetry and MLflow on. The same run and checks as
``bench/soak.py`` (``nox -s soak``), whose full size is 100,000 requests at concurrency 256."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SOAK_PY = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiperf_bench_soak", SOAK_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


soak = _soak_module()


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = soak.SoakConfig(
        requests=1000,
        concurrency=64,
        fault_rate=0.05,
        stall_seconds=0.3,
        request_timeout_s=60.0,
        # the test pays sqlite's first migration inside aiperf rather than twice
        prepare_store=False,
        guard_s=240.0,
    )
    return soak.run_soak(config, tmp_path_factory.mktemp("soak"))


def test_every_fault_kind_occurred(result: dict[str, Any]) -> None:
    """The run exercised every kind: otherwise the checks below would prove less."""
    faults = result["figures"]["server_faults"]
    missing = [kind for kind in soak.EXPECTED_ERROR if kind not in ("ok", "error") and not faults.get(kind)]
    assert [] == missing
    assert result["figures"]["server_errors"].get("500")


@pytest.mark.parametrize(
    "check",
    [
        "exit code 0 (no aiperf failure; server faults are counted, not fatal)",
        "finished without the guard's kill",
        "JSONL lines == requests sent",
        "JSONL lines == requests the server received",
        "every JSONL line whole JSON",
        "summary request_count == JSONL successes",
        "summary errors by type == JSONL errors by type",
        "summary error_request_count == JSONL errors",
        "successes == the server's ok + faults a client must accept",
        "errors by type == the server's faults mapped to types",
        "usage ignored == usage-string faults",
        "no client disconnects at the server",
        "no Traceback in aiperf's output",
        "summary status FINISHED",
        "every request's OTel span received, or its loss in a note",
        "MLflow run FINISHED",
        "MLflow live points logged are in the store, losses in a note",
    ],
)
def test_soak_invariant(result: dict[str, Any], check: str) -> None:
    checks = {c["check"]: c for c in result["checks"]}
    assert set(checks) >= {check}, sorted(checks)
    assert checks[check]["ok"], f"{check}: {checks[check]['seen']}\n{result['output_tail']}"


def test_no_telemetry_lost_at_this_size(result: dict[str, Any]) -> None:
    """At 1,000 requests the sinks keep up: every span arrives, every live point is logged."""
    figures = result["figures"]
    assert 1000 == figures["otel"]["spans"], figures["notes"]
    live = figures["mlflow"]["live_points"]
    assert (0, 0) == (live["dropped"], live["failed"]), live
    assert live["logged"] > 0


def test_memory_was_sampled(result: dict[str, Any]) -> None:
    figures = result["figures"]
    assert figures["rss_samples"] >= 2
    roles = {row["role"] for row in figures["peak_rss_by_process"]}
    # a live sink runs the load in a worker process: both were measured
    assert {"aiperf profile", "worker"} <= roles, figures["peak_rss_by_process"]
    assert figures["peak_rss_total_mib"] >= max(r["peak_rss_mib"] for r in figures["peak_rss_by_process"])
