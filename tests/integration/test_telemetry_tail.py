"""The end of a run that waits on a live sink says so, and for what."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.fake_plugins import install_fake_distribution

pytestmark = pytest.mark.integration

#: a live sink that needs 2.5 s after the load to send what it holds, and says how much.
SLOW_SINK_PLUGIN = """
import trio
from aiperf import RequestDone, hookimpl

class SlowFlush:
    name = "slowflush"
    def __init__(self):
        self.held = 0
    async def open(self, run):
        pass
    async def run(self, events):
        async for event in events:
            self.held += isinstance(event, RequestDone)
    async def close(self, status):
        await trio.sleep(2.5)
        self.held = 0
    def backlog(self):
        return f"{self.held} requests to send" if self.held else None
    def report(self):
        return None

@hookimpl
def aiperf_live_sinks(config, run):
    return [SlowFlush()]
"""


def test_a_slow_flush_shows_a_progress_line(aiperf_cli, mock_server, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-slowflush", "aiperf_slowflush_plugin", SLOW_SINK_PLUGIN)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    result = aiperf_cli(
        "profile", "--url", mock_server.url, "-m", "mock-model", "--request-count", "12",
        "--concurrency", "4", "--output-tokens-mean", "4", "--artifact-dir", str(tmp_path / "r"),
        env=env,
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    lines = result.stderr.splitlines()
    waiting = [line for line in lines if line.startswith("aiperf: finishing live telemetry")]
    assert waiting, result.stderr
    assert waiting[0].endswith("after the load: slowflush 12 requests to send"), waiting
    done = [line for line in lines if line.startswith("aiperf: live telemetry finished")]
    assert 1 == len(done), result.stderr
    seconds = float(done[0].split()[4])
    assert 2.5 <= seconds < 10, done
