"""Fixtures for aiperf-mlflow's tests: clean MLflow variables and local stores in ``tmp_path``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def clean_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLFLOW_* variable from the developer's shell leaks into a test, and none a test
    sets leaks out."""
    for name in list(os.environ):
        if name.startswith("MLFLOW_"):
            monkeypatch.delenv(name)
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        if name.startswith("MLFLOW_"):
            del os.environ[name]
    for name, value in saved.items():
        if name.startswith("MLFLOW_"):
            os.environ[name] = value


@pytest.fixture
def file_store(tmp_path: Path, clean_mlflow_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local MLflow file store (no server) the real client can use."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return (tmp_path / "mlruns").as_uri()
