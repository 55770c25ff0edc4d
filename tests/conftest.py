"""Shared fixtures. Integration fixtures start real servers on loopback and always stop them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the children the tests start, however pytest itself was started.

    A shell starts a background command (``cmd &`` in a script, without job control) with
    SIGINT ignored, and every process it starts inherits that: the CLI under test would
    then never see the Ctrl-C that the signal tests send it. A Python handler here is reset
    to the default in each child at exec, so the child gets Python's usual KeyboardInterrupt.
    """
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def run_aiperf(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "aiperf", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """Each test starts from the structlog configuration the session had, whatever an earlier
    in-process ``aiperf`` run set (a level filter there hides debug events from
    ``capture_logs`` in every later test, which made results depend on test order)."""
    import structlog

    saved = structlog.get_config()
    was_configured = structlog.is_configured()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


@pytest.fixture
def aiperf_cli(tmp_path: Path):
    """``aiperf_cli(*args)`` runs aiperf in ``tmp_path`` and returns the CompletedProcess."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_aiperf(args, cwd=tmp_path, timeout=timeout, env=env)

    return run


@pytest.fixture(scope="module")
def mock_server() -> Iterator[object]:
    """A mock server with zero delays, shared by a module's tests."""
    from aiperf.testing import MockServer

    with MockServer() as server:
        yield server
