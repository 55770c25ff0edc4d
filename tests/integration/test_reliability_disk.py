"""A full disk and a hard kill: what is on disk afterwards is whole, and says what happened.

The disk is a 64 KiB tmpfs mounted for the test (it needs the right to mount; without it the
same failure is made by a 64 KiB file size limit, ``RLIMIT_FSIZE``, which fails writes with
``EFBIG`` instead of ``ENOSPC``).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from aiperf.testing import MockServer
from support.live_run import Profile, wait_until

pytestmark = pytest.mark.integration

SMALL = 64 * 1024
GUARD_S = 120


@attrs.frozen
class SmallDisk:
    path: Path
    errno_name: str
    preexec: Callable[[], None] | None


def _limit_file_size() -> None:
    # Past the limit a write fails with EFBIG, and SIGXFSZ (which would kill) is ignored.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL, SMALL))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    where = tmp_path / "small"
    where.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL // 1024}k", "tmpfs", str(where)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mount.returncode != 0:
        yield SmallDisk(where, "EFBIG", _limit_file_size)
        return
    try:
        yield SmallDisk(where, "ENOSPC", None)
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(output_tokens=8) as mock:
        yield mock


class TestDiskFull:
    def test_full_disk_keeps_console_whole_lines_and_no_temporary_files(
        self, server: MockServer, small_disk: SmallDisk
    ) -> None:
        """The JSONL outgrows the disk mid-run: one line per failed file naming it and the
        errno, the console table with every request, only whole JSONL lines, no *.tmp left,
        metadata that is not RUNNING and lists what failed, exit 1."""
        run_dir = small_disk.path / "run"
        result = subprocess.run(
            [
                sys.executable, "-m", "aiperf", "profile", "--url", server.url, "-m", "mock-model",
                "--streaming", "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
                "--request-count", "600", "--concurrency", "4", "--num-prompts", "5",
                "--artifact-dir", str(run_dir), "--no-progress",
            ],
            capture_output=True, text=True, timeout=GUARD_S, check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=small_disk.preexec,
        )  # fmt: skip
        assert 1 == result.returncode, result.stderr
        assert "Traceback" not in result.stderr
        assert "internal error" not in result.stderr
        jsonl = run_dir / "profile_export.jsonl"
        expected = f"aiperf: cannot write {jsonl}: "
        failed = [line for line in result.stderr.splitlines() if line.startswith(expected)]
        assert 1 == len(failed), result.stderr
        assert f"({small_disk.errno_name})" in failed[0]

        # the console has the whole run, from memory
        assert "| Request Count (requests)" in result.stdout
        count_row = next(row for row in result.stdout.splitlines() if "| Request Count" in row)
        assert "600" == count_row.split("|")[2].strip(), count_row
        assert "lines of profile_export.jsonl were not written" in result.stdout

        text = jsonl.read_text()
        assert text.endswith("\n")
        lines = [json.loads(line) for line in text.splitlines()]
        assert 0 < len(lines) < 600

        assert [] == sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp"))
        for path in run_dir.iterdir():
            assert path.stat().st_size > 0, path
            if path.suffix == ".json":
                json.loads(path.read_text())  # never half a file
        meta = json.loads((run_dir / "metadata.json").read_text())
        assert "FINISHED" == meta["status"]
        assert any(str(jsonl) in error for error in meta["artifact_errors"])
        # every file said on stderr to have failed, a plugin's too, is listed in metadata.json
        said = [line.removeprefix("aiperf: ").split("; ")[0] for line in result.stderr.splitlines()
                if line.startswith("aiperf: cannot write")]  # fmt: skip
        assert sorted(said) == sorted(meta["artifact_errors"])


@pytest.fixture(scope="module")
def slow_server() -> Iterator[MockServer]:
    """About half a second per request: a few lines a second, far less than any buffer."""
    with MockServer(ttft_ms=20, itl_ms=50) as mock:
        yield mock


class TestHardKill:
    def test_sigkill_loses_no_finished_request(self, slow_server: MockServer, tmp_path: Path) -> None:
        """SIGKILL to the whole process group a second after some requests finished: each of
        them has its line, and every line is whole."""
        slow_server.reset_stats()
        run = Profile(slow_server.url, tmp_path / "run", "--concurrency", "1")
        try:
            wait_until(lambda: slow_server.stats()["requests"]["ok"] >= 3)
            finished = slow_server.stats()["requests"]["ok"]
            time.sleep(1.2)  # the bound on what a kill may lose is one second
            run.signal_group(signal.SIGKILL)
            assert -signal.SIGKILL == run.wait()
        finally:
            run.kill()
        text = (run.run_dir / "profile_export.jsonl").read_text()
        lines = [json.loads(line) for line in text.splitlines()]
        assert not text or text.endswith("\n")
        assert finished <= len([r for r in lines if r["error"] is None])


class TestJsonlWriter:
    def test_a_failed_write_is_reported_once_and_never_raises(self) -> None:
        """Writing to a device that is always full: one report naming the path and ENOSPC, the
        run's writes go on without an exception, and the lost lines are counted."""
        from aiperf.builtin.jsonl import JsonlWriter

        reports = []
        with JsonlWriter(Path("/dev/full"), on_error=reports.append) as writer:
            for n in range(3):
                assert 0 == writer.write(f'{{"n": {n}}}\n')
        assert ["cannot write /dev/full: No space left on device (ENOSPC)"] == [str(r) for r in reports]
        assert (0, 3) == (writer.lines, writer.lost)
