"""Built-in post-run exporters: the JSON summary, the CSV tables, metadata, the console table.

``profile_export.jsonl`` is written line by line during the run and ``inputs.json`` before it
(see the engine); these run once the run is over.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import attrs

from aiperf._stats import STD_KIND
from aiperf._types import RunContext, RunResult

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


def write_json(path: Path, data: Any) -> Path:
    """Write atomically: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def summary(run: RunContext, result: RunResult) -> dict[str, Any]:
    config = run.config
    data: dict[str, Any] = {
        "schema_version": 1,
        "aiperf_version": run.version,
        "benchmark_id": run.benchmark_id,
        "status": result.status.value,
        "was_cancelled": result.was_cancelled,
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
        "input_config": run.redacted_config(),
        "notes": list(result.notes),
    }
    for section in result.sections:
        data[section.name] = section.data
    return data


@attrs.define
class JsonExporter:
    name: str = "json"
    order: int = 10

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        return [write_json(run.run_dir / JSON_FILE, summary(run, result))]


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"


@attrs.define
class CsvExporter:
    name: str = "csv"
    order: int = 11

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        path = run.run_dir / CSV_FILE
        with path.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["Metric", "Unit", *STAT_COLUMNS, "count"])
            for stats in result.metrics.values():
                d = stats.as_dict()
                out.writerow([stats.header, stats.unit, *(_fmt(d.get(c)) for c in STAT_COLUMNS), stats.count])
            out.writerow([])
            out.writerow(["Metric", "Unit", "Value"])
            for stats in result.run_metrics.values():
                out.writerow([stats.header, stats.unit, _fmt(stats.avg)])
            for section in result.sections:
                if not section.rows:
                    continue
                out.writerow([])
                columns = list(section.rows[0].keys())
                out.writerow([section.title])
                out.writerow(columns)
                for row in section.rows:
                    out.writerow([row.get(c, "") for c in columns])
            if result.errors:
                out.writerow([])
                out.writerow(["Error Type", "Count", "First Message"])
                for error in result.errors:
                    out.writerow([error.type, error.count, error.first_message])
        return [path]


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
        "config": run.redacted_config(),
    }


@attrs.define
class MetadataExporter:
    name: str = "metadata"
    order: int = 12

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        data = metadata(run, result=result)
        return [write_json(run.run_dir / METADATA_FILE, data)]


@attrs.define
class ConsoleExporter:
    """The results table people read first: every metric with avg, min, max, p50, p90, p99."""

    stream: IO[str] = attrs.field(factory=lambda: sys.stdout)
    name: str = "console"
    order: int = 90

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        self.stream.write(render_table(run, result))
        self.stream.flush()
        return []


def render_table(run: RunContext, result: RunResult) -> str:
    config = run.config
    title = f"aiperf {run.version}  {config.model}  {config.endpoint_type}  {run.load_setting}"
    if result.was_cancelled:
        title += "  (cancelled)"
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

