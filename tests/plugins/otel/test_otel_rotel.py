"""End to end through a real collector: aiperf -> rotel (OTLP/HTTP) -> the test receiver."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiperf.testing import MockServer
from aiperf_otel import semconv as sc
from otel_runs import RunDir, describe, run_profile
from rotel_collector import RotelCollector
from support.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

REQUESTS = 16
PROFILE = {sc.PHASE: "profile"}


def test_profile_through_rotel_collector(tmp_path: Path) -> None:
    """Every request's duration point, both token series and every span cross the collector."""
    with (
        MockServer(ttft_ms=10, itl_ms=1, output_tokens=16) as server,
        OtlpReceiver() as receiver,
        RotelCollector(forward_to=receiver.url, workdir=tmp_path / "rotel") as collector,
    ):
        result = run_profile(
            server.url, tmp_path / "run", "--otel-url", collector.url, requests=REQUESTS
        )
        assert 0 == result.returncode, describe(result)

        def arrived(r: OtlpReceiver) -> bool:
            durations = r.points(sc.OPERATION_DURATION, where=PROFILE)
            complete = (
                durations and r.histogram(sc.OPERATION_DURATION, where=PROFILE).count == REQUESTS
            )
            return bool(complete) and len(r.spans(where=PROFILE)) == REQUESTS

        # The collector batches (100 ms here) before it forwards what aiperf flushed at exit.
        arrived_in_time = receiver.wait_for(arrived, timeout=15)
    run = RunDir(tmp_path / "run")
    assert arrived_in_time, (
        f"metrics or spans missing behind the collector: {sorted(receiver.metric_names())}"
    )
    tokens_in = receiver.histogram(sc.TOKEN_USAGE, where={**PROFILE, sc.TOKEN_TYPE: "input"})
    tokens_out = receiver.histogram(sc.TOKEN_USAGE, where={**PROFILE, sc.TOKEN_TYPE: "output"})
    assert (run.run_metric("total_input_tokens"), run.run_metric("total_output_tokens")) == (
        tokens_in.sum,
        tokens_out.sum,
    )
    assert {r["request_index"] for r in run.records()} == {
        s.attributes[sc.REQUEST_INDEX] for s in receiver.spans(where=PROFILE)
    }
    assert {"aiperf"} == {resource[sc.SERVICE_NAME] for resource in receiver.resources()}
    assert [] == [n for n in run.summary["notes"] if n.startswith("otel")]
