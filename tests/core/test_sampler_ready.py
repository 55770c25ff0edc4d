"""``Sampler.before_profile``: the measured phase's first request waits for it (after the
warm-up), at most ``SAMPLER_READY_BUDGET_S``; a sampler that fails there or never returns
does not stop the benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _run(mock_url: str, tmp_path: Path, behaviour: str, *extra: str) -> dict:
    script = textwrap.dedent(
        f"""
        import json, time
        import trio
        from aiperf import _engine, _plugins
        from aiperf.cli import main

        _engine.SAMPLER_READY_BUDGET_S = 0.5
        seen = {{}}
        sends = []
        send = _engine.Engine.execute

        async def watching(self, *args, **kwargs):
            sends.append(time.perf_counter_ns())
            return await send(self, *args, **kwargs)

        _engine.Engine.execute = watching

        class Sampler:
            name = "ready_test"

            async def run(self, ctx):
                await trio.sleep_forever()

            async def before_profile(self):
                seen["called_ns"] = time.perf_counter_ns()
                seen["sent_before"] = len(sends)
                if {behaviour!r} == "raise":
                    raise RuntimeError("no reading")
                if {behaviour!r} == "hang":
                    await trio.sleep_forever()
                await trio.sleep(0.2)
                seen["ready_ns"] = time.perf_counter_ns()

            def sections(self, run, result):
                seen["profile_start_ns"] = run.profile_start_ns
                return []

            def report(self):
                return None

        _plugins.Plugins.samplers = lambda self, config, run: [Sampler()]
        code = main(["profile", "--url", {mock_url!r}, "--model", "m", "--streaming",
                     "--request-count", "6", "--concurrency", "2", "--no-progress",
                     "--workers", "1", "--artifact-dir", "run", *{list(extra)!r}])
        seen["sends_ns"] = sends
        print(json.dumps({{"code": code, **seen}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    assert result["code"] == 0
    records = (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()
    result["records"] = [json.loads(line) for line in records]
    return result


@pytest.mark.parametrize("warmup", [0, 3])
def test_the_phase_waits_for_before_profile(mock_server, tmp_path: Path, warmup: int) -> None:
    seen = _run(mock_server.url, tmp_path, "ok", "--warmup-request-count", str(warmup))
    # Called after the warm-up's requests, before any of the measured phase's.
    assert warmup == seen["sent_before"]
    assert seen["called_ns"] < seen["ready_ns"] <= seen["profile_start_ns"]
    assert seen["ready_ns"] < seen["sends_ns"][warmup]
    measured = [r for r in seen["records"] if r["phase"] == "profile"]
    assert 6 == len(measured)


def test_a_sampler_that_fails_there_is_one_line(mock_server, tmp_path: Path) -> None:
    seen = _run(mock_server.url, tmp_path, "raise")
    assert "sampler_failed" in seen["stderr"] and "no reading" in seen["stderr"]
    assert 6 == len(seen["records"])


def test_a_sampler_that_never_returns_costs_the_budget_only(mock_server, tmp_path: Path) -> None:
    seen = _run(mock_server.url, tmp_path, "hang")
    waited_s = (seen["sends_ns"][0] - seen["called_ns"]) / 1e9
    assert 0.5 <= waited_s < 30
    assert 6 == len(seen["records"])
