"""Log lines go to sys.stderr as it is when they are written."""

from __future__ import annotations

import io
import sys

import pytest
import structlog
from aiperf import _logging


def test_lines_follow_a_swapped_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set up while one stream was stderr, then that stream closed and another took its place
    (a test harness, an application embedding aiperf): the line reaches the new one."""
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    _logging.configure()
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    structlog.get_logger("aiperf.test").warning("still heard")
    assert "WARNING  still heard" in second.getvalue()
