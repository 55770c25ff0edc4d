"""After the run: ``server_metrics_export.json`` (per series: type, unit, labels, statistics,
rate) and ``server_metrics_export.csv`` (the same as one table)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from aiperf import write_text_atomic

if TYPE_CHECKING:
    from aiperf import RunContext, RunResult

    from aiperf_server_metrics.sampler import ServerMetricsSampler

JSON_FILE = "server_metrics_export.json"
CSV_FILE = "server_metrics_export.csv"
CSV_STATS = ("count", "avg", "min", "max", "std", "p50", "p90", "p99", "total", "rate", "resets")


@attrs.define(kw_only=True)
class ServerMetricsExporter:
    sampler: ServerMetricsSampler
    name: str = "server_metrics"
    #: local files: before the uploaders (>= 100), so MLflow sends them.
    order: int = 30

    def export(self, run: RunContext, result: RunResult) -> Sequence[Path]:
        summary = self.sampler.summary
        if summary is None:
            return []
        json_path = run.run_dir / JSON_FILE
        csv_path = run.run_dir / CSV_FILE
        # a failed write (a full disk) removes its temporary file and raises
        # ArtifactWriteError, which the run reports as one line naming the file
        write_text_atomic(json_path, json.dumps(summary, indent=2, default=_plain) + "\n")
        write_text_atomic(csv_path, csv_text(summary["series"]))
        return [json_path, csv_path]


def csv_text(series: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["source", "name", "common", "engine", "type", "unit", "labels", *CSV_STATS])
    for entry in series:
        stats = entry["statistics"]
        labels = ";".join(f"{k}={v}" for k, v in entry["labels"].items())
        writer.writerow([
            entry["source"], entry["name"], entry.get("common") or "", entry.get("engine") or "",
            entry["type"], entry["unit"], labels,
            *(_cell(stats.get("value" if key == "avg" and entry["type"] == "derived" else key))
              for key in CSV_STATS),
        ])  # fmt: skip
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _plain(value: Any) -> Any:
    return float(value)

