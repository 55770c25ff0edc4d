"""``aiperf profile`` as a child process, as a user runs it, and what it left behind."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

COUNT = 20
#: a guard against a hang, never a measurement.
GUARD_S = 180
CORE_FILES = (
    "profile_export_aiperf.json",
    "profile_export_aiperf.csv",
    "profile_export.jsonl",
    "inputs.json",
    "metadata.json",
)


@attrs.frozen
class Run:
    process: subprocess.CompletedProcess[str]
    run_dir: Path

    @property
    def code(self) -> int:
        return self.process.returncode

    @property
    def output(self) -> str:
        return self.process.stdout + self.process.stderr

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "profile_export_aiperf.json").read_text())

    def metric(self, tag: str) -> float:
        return float(self.summary["metrics"][tag]["avg"])

    def records(self) -> list[dict[str, Any]]:
        lines = (self.run_dir / "profile_export.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["error"] is not None]

    def error_types(self) -> Counter[str]:
        return Counter(r["error"]["type"] for r in self.errors())

    def csv_errors(self) -> list[list[str]]:
        rows = list(csv.reader(io.StringIO((self.run_dir / "profile_export_aiperf.csv").read_text())))
        start = rows.index(["Error Type", "Count", "First Message"])
        table = []
        for row in rows[start + 1 :]:
            if not row:
                break
            table.append(row)
        return table

    def assert_complete(self) -> None:
        for name in CORE_FILES:
            assert (self.run_dir / name).is_file(), f"{name} missing\n{self.output}"
        assert "Traceback" not in self.output


def profile_argv(url: str, run_dir: Path, *extra: str, count: int = COUNT, concurrency: int = 4,
                 streaming: bool = True) -> list[str]:  # fmt: skip
    return [
        sys.executable, "-m", "aiperf", "profile", "--url", url, "-m", "mock-model",
        *(["--streaming"] if streaming else []),
        "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
        "--concurrency", str(concurrency), "--request-count", str(count),
        "--artifact-dir", str(run_dir), "--no-progress", "--random-seed", "1", *extra,
    ]  # fmt: skip


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLFLOW_"))}
    # MLflow would report usage to its makers; tests talk to loopback only.
    env.update({"PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    env.update(extra or {})
    return env


def profile(url: str, run_dir: Path, *extra: str, **kwargs: Any) -> Run:
    process = subprocess.run(
        profile_argv(url, run_dir, *extra, **kwargs),
        capture_output=True, text=True, timeout=GUARD_S, env=child_env(), check=False,
    )  # fmt: skip
    return Run(process=process, run_dir=run_dir)


def start_profile(url: str, run_dir: Path, *extra: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        profile_argv(url, run_dir, *extra, **kwargs),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(),
        start_new_session=True,
    )  # fmt: skip
