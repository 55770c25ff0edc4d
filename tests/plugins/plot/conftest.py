"""Fixtures of aiperf-plot's tests: synthetic run directories (see plot_rundirs.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from plot_rundirs import write_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "mock-chat-concurrency4", **kwargs: Any) -> Path:
        return write_run(tmp_path / "artifacts" / name, **kwargs)

    return make


@pytest.fixture
def sweep(make_run: Callable[..., Path]) -> list[Path]:
    return [make_run(f"mock-chat-concurrency{c}", concurrency=c, seed=c) for c in (1, 4, 8)]
