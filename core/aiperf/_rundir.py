"""The run directory's two rules: one run's files per directory, and a manifest of them.

A second run into a directory that holds an earlier run's files moves those files into
``previous/<benchmark id>/`` first (the documented policy, see docs/run-directory.md), so that
nothing of the earlier run (its ``mlflow_export.json``, its plots) is taken for the new run's.
Only the files a run writes are moved; whatever else is in the directory stays untouched.

The manifest is the list of files this run wrote, kept in ``RunContext.state``: the core adds
its own files and every exporter's, plugins add what they write during the run. Uploaders send
exactly these files, never whatever else sits in the directory (an ``.env`` in
``--artifact-dir .``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from aiperf._exporters import CSV_FILE, INPUTS_FILE, JSON_FILE, JSONL_FILE, METADATA_FILE

if TYPE_CHECKING:
    from aiperf._exporters import ArtifactWriteError
    from aiperf._types import RunContext

log = structlog.get_logger()

#: where an earlier run's files go.
PREVIOUS_DIR = "previous"
#: every file (or folder) a run may write, the core's and the first-party plugins'.
RUN_FILES = (
    JSONL_FILE,
    JSON_FILE,
    CSV_FILE,
    INPUTS_FILE,
    METADATA_FILE,
    "gpu_telemetry_export.jsonl",
    "mlflow_export.json",
    "plots",
)
#: key of the manifest in ``RunContext.state``.
ARTIFACTS_KEY = "artifacts"


def set_aside_earlier_run(run_dir: Path) -> Path | None:
    """Create ``run_dir``; move an earlier run's files aside. Returns where they went, if any."""
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [*RUN_FILES, *(name + ".tmp" for name in RUN_FILES)]
    old = [run_dir / name for name in names if (run_dir / name).exists()]
    if not old:
        return None
    target = _free(run_dir / PREVIOUS_DIR / _earlier_id(run_dir, old))
    target.mkdir(parents=True)
    for path in old:
        os.replace(path, target / path.name)
    log.info(f"The previous run's files in {run_dir} were moved to {target}.")
    return target


def _earlier_id(run_dir: Path, old: list[Path]) -> str:
    """The earlier run's benchmark id, or the time its newest file was written."""
    for name in (METADATA_FILE, JSON_FILE, "mlflow_export.json"):
        try:
            value = json.loads((run_dir / name).read_text(encoding="utf-8")).get("benchmark_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value.isalnum():
            return value
    newest = max(path.stat().st_mtime for path in old)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(newest))


def _free(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def record_artifacts(run: RunContext, paths: Iterable[Path]) -> None:
    """Add files to the run's manifest (the files this run wrote); duplicates are ignored."""
    manifest: list[Path] = run.state.setdefault(ARTIFACTS_KEY, [])
    for path in paths:
        path = Path(path)
        if path not in manifest:
            manifest.append(path)


def run_artifacts(run: RunContext) -> list[Path]:
    """The files this run wrote that still exist, in the order they were recorded."""
    return [p for p in run.state.get(ARTIFACTS_KEY, []) if p.is_file()]


def report_artifact_error(run: RunContext, error: ArtifactWriteError, consequence: str) -> None:
    """One line on stderr per file that could not be written, and a record for metadata.json."""
    run.state.setdefault("artifact_errors", []).append(str(error))
    sys.stderr.write(f"aiperf: {error}; {consequence}\n")
    sys.stderr.flush()
