"""Run the real ``aiperf`` command in a child process, in a chosen directory.

For module-scoped fixtures, which cannot use the function-scoped ``aiperf_cli`` fixture.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def aiperf_in(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiperf", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
