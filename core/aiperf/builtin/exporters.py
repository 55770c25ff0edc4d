"""The files and the table the built-in plugin writes.

Run writers (``aiperf_run_writers``), before the load: ``inputs.json`` (what the requests
send) and the first ``metadata.json`` (status ``RUNNING``). Exporters (``aiperf_exporters``),
after it: the JSON summary, the CSV tables, the console table and the final
``metadata.json``. ``profile_export.jsonl`` is in ``jsonl.py``. What each file holds is
defined in ``aiperf._exporters``; a plugin may drop or replace any of these by name.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import attrs

from aiperf._exporters import (
    CSV_FILE,
    INPUTS_FILE,
    JSON_FILE,
    METADATA_FILE,
    STAT_COLUMNS,
    _fmt,
    metadata,
    render_table,
    summary,
    write_json,
    write_text_atomic,
)
from aiperf._types import RunContext, RunResult

#: the key of ``RunContext.state`` holding what ``inputs.json`` records (the URL, the
#: endpoint, every request body, the sessions), set by the core before the run writers open.
INPUTS_KEY = "inputs"


# -- before the load ---------------------------------------------------------------------------


@attrs.define
class InputsFile:
    """``inputs.json``: every request body the run sends, written before the load."""

    name: str = "inputs"

    def open(self, run: RunContext) -> Sequence[Path]:
        return [write_json(run.run_dir / INPUTS_FILE, run.state[INPUTS_KEY])]

    def close(self) -> str | None:
        return None


@attrs.define
class FirstMetadata:
    """``metadata.json`` with status ``RUNNING``: a run that never ends (SIGKILL) still says
    what it was. :class:`MetadataExporter` rewrites it once the run is over."""

    name: str = "metadata"

    def open(self, run: RunContext) -> Sequence[Path]:
        return [write_json(run.run_dir / METADATA_FILE, metadata(run, result=None))]

    def close(self) -> str | None:
        return None


# -- after the load ----------------------------------------------------------------------------


@attrs.define
class JsonExporter:
    name: str = "json"
    order: int = 10

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        return [write_json(run.run_dir / JSON_FILE, summary(run, result))]


@attrs.define
class CsvExporter:
    name: str = "csv"
    order: int = 11

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        path = run.run_dir / CSV_FILE
        fh = io.StringIO()
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
        write_text_atomic(path, fh.getvalue())
        return [path]


@attrs.define
class MetadataExporter:
    name: str = "metadata"
    #: after every file the run writes (a plugin's too) and the console, so the failures it
    #: lists are all of them; before the uploaders (>= 100), so they send it.
    order: int = 95

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
