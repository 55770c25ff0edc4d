"""Fixtures for the aiperf-otel tests (the fakes themselves live in ``otel_fakes``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[3]
if str(_ROOT) not in sys.path:
    # tests.support is a folder of the repository, not an installed package.
    sys.path.insert(0, str(_ROOT))

from otel_fakes import Direct  # noqa: E402


@pytest.fixture
def direct() -> Direct:
    return Direct()
