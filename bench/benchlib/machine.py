"""What the figures were measured on: CPU, memory, Python, package versions, commit, load."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTIONS = (
    "aiperf",
    "aiperf-otel",
    "aiperf-mlflow",
    "aiperf-gpu",
    "aiperf-plot",
    "trio",
    "httpx",
    "httpcore",
    "numpy",
    "structlog",
    "opentelemetry-sdk",
    "mlflow",
    "mlflow-skinny",
)


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Processor") and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def memory_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def versions() -> dict[str, str]:
    out = {}
    for name in DISTRIBUTIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def commit(repo: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=repo, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "core", "plugins"],
            cwd=repo, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+local-changes" if dirty else head


def describe(repo: Path) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(_read("/proc/cpuinfo")),
        "cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": memory_gib(_read("/proc/meminfo")),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "versions": versions(),
        "commit": commit(repo),
    }
