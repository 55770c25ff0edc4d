"""Fixtures for the aiperf-otel tests (the fakes themselves live in ``otel_fakes``)."""

from __future__ import annotations

import pytest
from otel_fakes import Direct


@pytest.fixture
def direct() -> Direct:
    return Direct()
