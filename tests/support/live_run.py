"""A real ``aiperf profile`` process started in its own session, for tests that signal it.

Started with ``start_new_session`` so that a signal sent to its process group reaches it (and
its workers) the way a terminal's Ctrl-C would, and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: far more than a test lets it send: the run is always stopped by a signal.
MANY = 5000
#: a guard against a hang, never a measurement.
GUARD_S = 120


class Profile:
    """``aiperf profile`` in its own session; stderr is read as it comes."""

    def __init__(self, server_url: str, run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        """``extra`` flags come last: one given twice (``--concurrency 4``) overrides the default."""
        self.run_dir = run_dir
        args = [
            sys.executable, "-m", "aiperf", "profile", "--url", server_url, "-m", "mock-model",
            "--streaming", "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "10",
            "--concurrency", "2", "--request-count", str(MANY), "--artifact-dir", str(run_dir),
            "--no-progress", "--random-seed", "3", *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.stderr_lines: list[str] = []
        self.stdout = ""
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stdout_reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def wait_for_stderr(self, text: str) -> None:
        wait_until(lambda: text in self.stderr or self.process.poll() is not None)
        assert text in self.stderr, self.stderr

    def wait(self) -> int:
        code = self.process.wait(timeout=GUARD_S)
        self._stderr_reader.join(timeout=10)
        self._stdout_reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "profile_export_aiperf.json").read_text())

    def records(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "profile_export.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


    def worker_pids(self) -> list[int]:
        """The worker processes of this run (children of the aiperf process started by
        multiprocessing's spawn, not its resource tracker)."""
        pids = []
        for child in children(self.process.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                pids.append(child)
        return sorted(pids)


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def wait_until(predicate: Callable[[], Any], timeout: float = GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("gave up waiting")
        time.sleep(0.05)
