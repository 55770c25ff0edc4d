"""Real `aiperf profile` runs for the OTel integration tests, and their run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

#: generous: a run of a few dozen requests against the mock server takes a few seconds.
RUN_TIMEOUT_S = 120


@attrs.frozen
class RunDir:
    path: Path

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.path / "profile_export_aiperf.json").read_text())

    def records(self, phase: str | None = "profile") -> list[dict[str, Any]]:
        lines = (self.path / "profile_export.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        return [r for r in records if phase is None or r["phase"] == phase]

    def run_metric(self, tag: str) -> float:
        return float(self.summary["metrics"][tag]["avg"])

    def text_of_all_files(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.path.rglob("*")) if p.is_file()
        )


def profile_argv(
    server_url: str, run_dir: Path, *extra: str, requests: int = 16, concurrency: int = 4
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "aiperf",
        "profile",
        "--url",
        server_url,
        "--model",
        "my-model",
        "--endpoint-type",
        "chat",
        "--streaming",
        "--synthetic-input-tokens-mean",
        "32",
        "--output-tokens-mean",
        "16",
        "--concurrency",
        str(concurrency),
        "--request-count",
        str(requests),
        "--artifact-dir",
        str(run_dir),
        "--no-progress",
        *extra,
    ]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra or {})
    return env


def run_profile(
    server_url: str, run_dir: Path, *extra: str, env: Mapping[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        profile_argv(server_url, run_dir, *extra, **kwargs),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=child_env(env),
        check=False,
    )


def start_profile(
    server_url: str, run_dir: Path, *extra: str, env: Mapping[str, str] | None = None, **kwargs: Any
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        profile_argv(server_url, run_dir, *extra, **kwargs),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
    )


def describe(result: subprocess.CompletedProcess[str] | tuple[int, str, str]) -> str:
    if isinstance(result, tuple):
        code, out, err = result
    else:
        code, out, err = result.returncode, result.stdout, result.stderr
    return f"exit {code}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-2000:]}"


def warnings_of(stderr: str) -> Sequence[str]:
    return [line for line in stderr.splitlines() if line.startswith("WARNING")]
