"""What the files of a run hold, and how they are written.

The names of the core's files, what the JSON summary, ``metadata.json`` and the console table
hold, and the writing itself (atomic, with one clear line when the disk is full). The built-in
plugin (``aiperf.builtin``) decides which of them a run writes, and when.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from aiperf._stats import STD_KIND
from aiperf._types import RunContext, RunFailure, RunResult

JSON_FILE = "profile_export_aiperf.json"
CSV_FILE = "profile_export_aiperf.csv"
JSONL_FILE = "profile_export.jsonl"
INPUTS_FILE = "inputs.json"
METADATA_FILE = "metadata.json"

STAT_COLUMNS = ("avg", "min", "max", "std", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99")
CONSOLE_COLUMNS = ("avg", "min", "max", "p50", "p90", "p99")


def iso(wall_ns: int | None) -> str | None:
    if wall_ns is None:
        return None
    return datetime.fromtimestamp(wall_ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ArtifactWriteError(RunFailure):
    """A file of the run directory could not be written (disk full, read-only, quota)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        self.errno = exc.errno
        super().__init__(f"cannot write {path}: {describe_os_error(exc)}")


def describe_os_error(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the words and the name scripts grep for."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``path`` so that a reader (or a crash) never sees half a file.

    The text goes to ``NAME.tmp`` first, then replaces ``path`` in one rename. When that fails
    the temporary file is removed; when it failed for lack of space and ``path`` already exists
    with enough space allocated to it (``metadata.json`` written at the start of the run), the
    text is written over it in place, so the final status can still be recorded on a full disk.
    Raises :class:`ArtifactWriteError` (one line: the path and the errno) when nothing worked.
    """
    data = text.encode("utf-8")
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        return path
    except OSError as exc:
        _remove(tmp)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) and _overwrite_in_place(path, data):
            return path
        raise ArtifactWriteError(path, exc) from None


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _overwrite_in_place(path: Path, data: bytes) -> bool:
    # Only into blocks the file already owns: a write there needs no free space, so it cannot
    # stop halfway for lack of it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if len(data) > os.fstat(fd).st_blocks * 512:
            return False
        written = os.pwrite(fd, data, 0)
        if written != len(data):
            return False
        os.ftruncate(fd, len(data))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> Path:
    """Write atomically: a reader (or a crash) never sees half a file.

    On a full disk the file may only be rewritten inside the blocks it already owns (see
    :func:`write_text_atomic`); when the indented text has outgrown them (``metadata.json``
    listing the files that failed), the same data is tried once more without indentation,
    about a third smaller, so the final status is still recorded.
    """
    try:
        return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
    except ArtifactWriteError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return write_text_atomic(path, json.dumps(data, separators=(",", ":"), default=str) + "\n")


def summary(run: RunContext, result: RunResult) -> dict[str, Any]:
    config = run.config
    data: dict[str, Any] = {
        "schema_version": 1,
        "aiperf_version": run.version,
        "benchmark_id": run.benchmark_id,
        "status": result.status.value,
        "was_cancelled": result.was_cancelled,
        "partial": result.partial,
        "partial_reason": result.partial_reason,
        "start_time": iso(result.start_wall_ns),
        "end_time": iso(result.end_wall_ns),
        "start_time_ns": result.start_wall_ns,
        "end_time_ns": result.end_wall_ns,
        "model": config.model,
        "endpoint_type": config.endpoint_type,
        "streaming": config.streaming,
        "load_setting": run.load_setting,
        "gen_ai_provider": run.provider,
        "std": STD_KIND,
        "metrics": {
            **{tag: s.as_dict() for tag, s in result.metrics.items()},
            **{tag: s.as_dict() for tag, s in result.run_metrics.items()},
        },
        "errors": [attrs.asdict(e) for e in result.errors],
        "client": {"send_lag": result.send_lag.as_dict() if result.send_lag else None},
        "measurement_health": result.health.as_dict() if result.health else None,
        "input_config": run.redacted_config(),
        "notes": list(result.notes),
        "artifact_errors": list(run.state.get("artifact_errors", [])),
    }
    for section in result.sections:
        data[section.name] = section.data
    return data


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"


def platform_name() -> str:
    """What ``platform.platform()`` says (``Linux-6.8.0-x86_64-with-glibc2.36``), without the
    processor name it would ask a ``uname -p`` subprocess for."""
    parts = [platform.system(), platform.release(), platform.machine()]
    libc, version = platform.libc_ver()
    if libc:
        parts.append(f"with-{libc}{version}")
    return "-".join(part for part in parts if part)


def metadata(run: RunContext, *, result: RunResult | None) -> dict[str, Any]:
    from aiperf._redact import redact_argv

    argv = run.state.get("argv", [])
    plugins = run.state.get("plugins", [])
    return {
        "benchmark_id": run.benchmark_id,
        "aiperf_version": run.version,
        "python": sys.version.split()[0],
        "platform": platform_name(),
        "host": socket.gethostname(),
        "command_line": redact_argv(list(argv)),
        "plugins": plugins,
        "random_seed": run.config.random_seed,
        "gen_ai_provider": run.provider,
        "run_dir": str(run.run_dir),
        "start_time": iso(result.start_wall_ns) if result else iso(run.anchor_wall_ns),
        "end_time": iso(result.end_wall_ns) if result else None,
        "status": result.status.value if result else "RUNNING",
        "partial": result.partial if result else False,
        "partial_reason": result.partial_reason if result else None,
        "artifact_errors": list(run.state.get("artifact_errors", [])),
        "config": run.redacted_config(),
    }


def render_table(run: RunContext, result: RunResult) -> str:
    config = run.config
    title = f"aiperf {run.version}  {config.model}  {config.endpoint_type}  {run.load_setting}"
    if result.was_cancelled:
        title += "  (cancelled)"
    if result.partial:
        title += "  (partial)"
    rows: list[list[str]] = [["Metric", *CONSOLE_COLUMNS]]
    for stats in result.metrics.values():
        d = stats.as_dict()
        rows.append([f"{stats.header} ({stats.unit})", *(_fmt(d.get(c)) for c in CONSOLE_COLUMNS)])
    lines = [title]
    if len(rows) > 1:
        lines += _grid(rows)
    elif result.errors:
        # An empty table says nothing; the errors (below) say why nothing was measured.
        failed = sum(e.count for e in result.errors)
        lines.append(f"No request succeeded: all {failed} failed. Errors by type:")
        lines += _error_grid(result)
    run_rows = [["Run metric", "value"]]
    for stats in result.run_metrics.values():
        run_rows.append([f"{stats.header} ({stats.unit})", _fmt(stats.avg)])
    lines += _grid(run_rows)
    if result.send_lag is not None:
        lag = result.send_lag.as_dict()
        lines.append(
            f"Send lag (client health, ms): p50 {_fmt(lag.get('p50'))}  p99 {_fmt(lag.get('p99'))}  "
            f"max {_fmt(lag.get('max'))}"
        )
    if result.health is not None:
        lines.append(result.health.line)
    for section in result.sections:
        if section.console and section.rows:
            columns = list(section.rows[0].keys())
            lines.append(section.title)
            lines += _grid([columns, *[[str(r.get(c, "")) for c in columns] for r in section.rows]])
    if result.errors and len(rows) > 1:
        lines.append("Errors")
        lines += _error_grid(result)
    for note in result.notes:
        lines.append(f"note: {note}")
    if result.partial:
        lines.append(f"partial results: {result.partial_reason}")
    lines.append(f"Results: {run.run_dir}")
    return "\n".join(lines) + "\n"


def _error_grid(result: RunResult) -> list[str]:
    return _grid(
        [["type", "count", "first message"]]
        + [[e.type, str(e.count), e.first_message[:80]] for e in result.errors]
    )


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append(sep)
    out.append(sep)
    return out

