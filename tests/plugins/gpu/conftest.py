"""Fixtures of the aiperf-gpu tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiperf import RunContext
from gpu_helpers import RecordingContext, make_run


@pytest.fixture
def run(tmp_path: Path) -> RunContext:
    return make_run(tmp_path)


@pytest.fixture
def ctx(run: RunContext) -> RecordingContext:
    return RecordingContext(run=run)
