"""Read aiperf run directories into plain values the figures draw from.

Nothing here imports matplotlib. Every reader is lenient: a missing or damaged file becomes a
``problem`` string on the :class:`RunData` (shown to the user next to each figure that needed
it), never an exception.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

REQUESTS_FILE = "profile_export.jsonl"
SUMMARY_FILE = "profile_export_aiperf.json"
GPU_FILE = "gpu_telemetry_export.jsonl"
SERVER_FILE = "server_metrics_export.jsonl"
#: the common names of aiperf-server-metrics drawn over time.
SERVER_NAMES = ("kv_cache_usage", "requests_running", "requests_waiting")
RUN_MARKERS = (REQUESTS_FILE, SUMMARY_FILE)

#: how deep below a given path to look for run directories (``artifacts/sweep/run``).
SEARCH_DEPTH = 3

_LOAD = re.compile(r"(concurrency|request_rate)(\d+(?:\.\d+)?)")


@attrs.frozen(kw_only=True)
class Request:
    """One measured request from ``profile_export.jsonl`` (display units: ms, tokens)."""

    start_ns: int
    end_ns: int | None
    ok: bool
    metrics: Mapping[str, Any]

    def value(self, tag: str) -> float | None:
        value = self.metrics.get(tag)
        if isinstance(value, Mapping):
            value = value.get("value")
        return _float(value)

    def values(self, tag: str) -> list[float]:
        """A list-valued metric (``inter_chunk_latency``); empty when absent."""
        value = self.metrics.get(tag)
        if isinstance(value, Mapping):
            value = value.get("value")
        if not isinstance(value, list):
            return []
        return [f for v in value if (f := _float(v)) is not None]


@attrs.frozen(kw_only=True)
class GpuSample:
    """One line of ``gpu_telemetry_export.jsonl``; absent readings are ``None``."""

    wall_ns: int
    gpu_index: int
    host: str
    uuid: str
    gpu_utilization: float | None
    power_watts: float | None
    memory_used_bytes: float | None
    phase: str | None

    @property
    def gpu_key(self) -> tuple[str, int, str]:
        return (self.host, self.gpu_index, self.uuid)


@attrs.frozen(kw_only=True)
class Summary:
    """What the figures need from ``profile_export_aiperf.json`` (or from the run's result).

    ``metrics`` maps a metric tag to its statistics in display units, as in the export:
    ``{"time_to_first_token": {"unit": "ms", "p50": 50.2, "count": 64, ...}}``.
    """

    metrics: Mapping[str, Mapping[str, Any]]
    load_setting: str | None = None
    #: ``--goodput`` SLOs (display units), empty when none were set.
    goodput_slos: Mapping[str, float] = attrs.field(factory=dict)

    def stat(self, tag: str, stat: str = "avg") -> float | None:
        return _float(self.metrics.get(tag, {}).get(stat))

    @classmethod
    def from_export(cls, data: Mapping[str, Any]) -> Summary | None:
        """``None`` when ``data`` is not an aiperf summary (no ``metrics`` object)."""
        metrics = data.get("metrics")
        if not isinstance(metrics, Mapping):
            return None
        config = data.get("input_config")
        goodput = config.get("goodput") if isinstance(config, Mapping) else None
        load = data.get("load_setting")
        return cls(
            metrics={k: v for k, v in metrics.items() if isinstance(v, Mapping)},
            load_setting=load if isinstance(load, str) else None,
            goodput_slos=_numbers(goodput),
        )


@attrs.frozen(kw_only=True)
class ServerPoint:
    """One value of one common-named series from ``server_metrics_export.jsonl``."""

    wall_ns: int
    name: str
    #: the endpoint and the engine's labels: which curve the value belongs to.
    series: str
    value: float


@attrs.frozen(kw_only=True)
class RunData:
    """Everything read from one run directory, with a reason for each part that is missing."""

    path: Path
    #: measured-phase requests in start order; empty when the file is missing.
    requests: tuple[Request, ...] = ()
    requests_problem: str | None = None
    summary: Summary | None = None
    summary_problem: str | None = None
    gpu: tuple[GpuSample, ...] = ()
    #: ``None`` also when the file is simply absent (a run without GPU telemetry).
    gpu_problem: str | None = None
    has_gpu_file: bool = False
    #: what the server reported (aiperf-server-metrics), for SERVER_NAMES only.
    server: tuple[ServerPoint, ...] = ()
    server_problem: str | None = None
    has_server_file: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def load_setting(self) -> str | None:
        if self.summary is not None and self.summary.load_setting:
            return self.summary.load_setting
        matches = list(_LOAD.finditer(self.name))
        return matches[-1].group(0) if matches else None

    @property
    def t0_ns(self) -> int | None:
        """Wall time of the first measured request: zero on every time axis of this run."""
        return self.requests[0].start_ns if self.requests else None


def load_run(path: Path, *, summary: Summary | None = None) -> RunData:
    """Read a run directory. ``summary`` overrides the summary file (``profile --plot`` passes
    the run's result, which exists before the summary file may have been written)."""
    requests, requests_problem = read_requests(path / REQUESTS_FILE)
    summary_problem = None
    if summary is None:
        summary, summary_problem = read_summary(path / SUMMARY_FILE)
    gpu_path = path / GPU_FILE
    gpu: tuple[GpuSample, ...] = ()
    gpu_problem = None
    if gpu_path.exists():
        gpu, gpu_problem = read_gpu(gpu_path)
    server_path = path / SERVER_FILE
    server: tuple[ServerPoint, ...] = ()
    server_problem = None
    if server_path.exists():
        server, server_problem = read_server(server_path)
    return RunData(
        server=server,
        server_problem=server_problem,
        has_server_file=server_path.exists(),
        path=path,
        requests=requests,
        requests_problem=requests_problem,
        summary=summary,
        summary_problem=summary_problem,
        gpu=gpu,
        gpu_problem=gpu_problem,
        has_gpu_file=gpu_path.exists(),
    )


def read_requests(path: Path) -> tuple[tuple[Request, ...], str | None]:
    rows, bad, problem = _read_jsonl(path)
    if problem:
        return (), problem
    requests = []
    for row in rows:
        request = _request(row)
        if request is None:
            bad += 1
        elif row.get("phase", "profile") == "profile":
            requests.append(request)
    requests.sort(key=lambda r: r.start_ns)
    if not requests:
        extra = f" ({bad} unreadable lines)" if bad else ""
        return (), f"{path.name} has no measured requests{extra}"
    return tuple(requests), None


def read_summary(path: Path) -> tuple[Summary | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name} not found (did the run finish?)"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read {path.name}: {exc}"
    except json.JSONDecodeError as exc:
        return None, f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(data, Mapping):
        return None, f"{path.name} does not hold a JSON object"
    summary = Summary.from_export(data)
    if summary is None:
        return None, f'{path.name} is from an older or different tool: it has no "metrics" object'
    return summary, None


def read_gpu(path: Path) -> tuple[tuple[GpuSample, ...], str | None]:
    rows, bad, problem = _read_jsonl(path)
    if problem:
        return (), problem
    samples = []
    for row in rows:
        sample = _gpu_sample(row)
        if sample is None:
            bad += 1
        else:
            samples.append(sample)
    samples.sort(key=lambda s: s.wall_ns)
    if not samples:
        extra = f" ({bad} unreadable lines)" if bad else ""
        return (), f"{path.name} has no samples{extra}"
    return tuple(samples), None


def read_server(path: Path) -> tuple[tuple[ServerPoint, ...], str | None]:
    rows, _bad, problem = _read_jsonl(path)
    if problem:
        return (), problem
    points = []
    for row in rows:
        wall_ns, common = row.get("wall_ns"), row.get("common")
        if not isinstance(wall_ns, int) or not isinstance(common, list):
            continue
        for item in common:
            if not isinstance(item, Mapping) or item.get("name") not in SERVER_NAMES:
                continue
            value = item.get("value")
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            labels = item.get("labels") if isinstance(item.get("labels"), Mapping) else {}
            shown = ",".join(
                f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("model", "model_name")
            )
            series = str(row.get("source", "")) + (f" {{{shown}}}" if shown else "")
            points.append(
                ServerPoint(wall_ns=wall_ns, name=item["name"], series=series, value=float(value))
            )
    points.sort(key=lambda p: p.wall_ns)
    if not points:
        return (), f"{path.name} has no {', '.join(SERVER_NAMES)} values"
    return tuple(points), None


# -- sweeps and repeats ------------------------------------------------------------------------

SWEEP_SUMMARY = "sweep_summary.json"
REPEAT_SUMMARY = "repeat_summary.json"
#: what the short names of a sweep's parameters say on a figure.
_PARAMETER_LABELS = {"isl": "ISL", "osl": "OSL", "concurrency": "concurrency", "trial": "trial"}


@attrs.frozen(kw_only=True)
class SweepPoint:
    """One point of a sweep (or one trial of repeats) as its summary lists it."""

    index: int
    path: Path
    #: ``concurrency 4``, ``10 req/s, ISL 128``, ``trial 2``: how the figures name it.
    label: str
    #: the values of every parameter but the first (``ISL 128``): points of one group are
    #: joined into one curve, in index order.
    group: str


@attrs.frozen(kw_only=True)
class Sweep:
    """A directory written by a sweep, repeats or a search (docs/sweeps.md)."""

    path: Path
    #: ``"sweep"``, ``"search"`` or ``"repeat"``.
    kind: str
    parameters: tuple[str, ...]
    #: the points whose run directory exists, in index order.
    points: tuple[SweepPoint, ...]
    #: repeats: the aggregate's ``metrics`` (mean, ci_low, ci_high, cv, values per statistic).
    aggregate: Mapping[str, Any] | None = None
    confidence_level: float | None = None


def read_sweep(path: Path) -> Sweep | None:
    """The sweep or repeats written in ``path``; ``None`` when it holds neither."""
    for name in (SWEEP_SUMMARY, REPEAT_SUMMARY):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, Mapping) and isinstance(data.get("points"), list):
            return _sweep(path, data)
    return None


def _sweep(path: Path, data: Mapping[str, Any]) -> Sweep:
    parameters = tuple(str(p) for p in data.get("parameters") or () if isinstance(p, str))
    points = []
    for point in data["points"]:
        if not isinstance(point, Mapping):
            continue
        name, index = point.get("run_dir"), point.get("index")
        values = point.get("values") if isinstance(point.get("values"), Mapping) else {}
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..") or not isinstance(index, int):
            continue
        if not is_run_dir(path / name):
            continue
        shown = [_value_label(k, values[k]) for k in parameters if k in values]
        points.append(
            SweepPoint(index=index, path=path / name, label=", ".join(shown) or name,
                       group=", ".join(shown[1:]))  # fmt: skip
        )
    points.sort(key=lambda p: p.index)
    aggregate, confidence = None, None
    if data.get("kind") == "repeat":
        block = data.get("aggregate") if isinstance(data.get("aggregate"), Mapping) else {}
        relative = block.get("json")
        if isinstance(relative, str) and ".." not in Path(relative).parts:
            try:
                found = json.loads((path / relative).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                found = None
            if isinstance(found, Mapping) and isinstance(found.get("metrics"), Mapping):
                aggregate = found["metrics"]
                confidence = _float(found.get("confidence_level"))
    return Sweep(
        path=path,
        kind=str(data.get("kind") or "sweep"),
        parameters=parameters,
        points=tuple(points),
        aggregate=aggregate,
        confidence_level=confidence,
    )


def _value_label(name: str, value: Any) -> str:
    number = _float(value)
    shown = f"{number:g}" if number is not None else str(value)
    if name == "request_rate":
        return f"{shown} req/s"
    return f"{_PARAMETER_LABELS.get(name, name)} {shown}"


def find_runs(path: Path, depth: int = SEARCH_DEPTH) -> list[Path]:
    """``path`` itself when it is a run directory, else the run directories below it."""
    if is_run_dir(path):
        return [path]
    if depth <= 0:
        return []
    found: list[Path] = []
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir())
    except OSError:
        return []
    for child in children:
        found.extend(find_runs(child, depth - 1))
    return found


def is_run_dir(path: Path) -> bool:
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def load_sort_key(load_setting: str | None) -> tuple[str, float]:
    """Order runs of a sweep by their load: ``concurrency2`` before ``concurrency10``."""
    match = _LOAD.fullmatch(load_setting or "")
    if match is None:
        return (load_setting or "~", 0.0)
    return (match.group(1), float(match.group(2)))


def load_label(load_setting: str | None) -> str:
    """How a point is labelled in a comparison figure."""
    match = _LOAD.fullmatch(load_setting or "")
    if match is None:
        return load_setting or "?"
    kind, value = match.groups()
    return f"concurrency {value}" if kind == "concurrency" else f"{value} req/s"


# -- parsing ---------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> tuple[list[Mapping[str, Any]], int, str | None]:
    """Rows of a JSON-lines file; lines that are not JSON objects are counted, not fatal (the
    last line of a killed run is often cut short)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], 0, f"{path.name} not found"
    except (OSError, UnicodeDecodeError) as exc:
        return [], 0, f"cannot read {path.name}: {exc}"
    rows: list[Mapping[str, Any]] = []
    bad = 0
    for line in _nonblank(text.splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(row, Mapping):
            rows.append(row)
        else:
            bad += 1
    return rows, bad, None


def _nonblank(lines: Iterable[str]) -> Iterator[str]:
    return (line for line in lines if line.strip())


def _request(row: Mapping[str, Any]) -> Request | None:
    start = _int(row.get("start_time_ns"))
    if start is None:
        return None
    metrics = row.get("metrics")
    return Request(
        start_ns=start,
        end_ns=_int(row.get("end_time_ns")),
        ok=row.get("error") is None,
        metrics=metrics if isinstance(metrics, Mapping) else {},
    )


def _gpu_sample(row: Mapping[str, Any]) -> GpuSample | None:
    wall = _int(row.get("wall_ns"))
    if wall is None:
        return None
    index = _int(row.get("gpu_index"))
    phase = row.get("phase")
    return GpuSample(
        wall_ns=wall,
        gpu_index=index if index is not None else 0,
        host=str(row.get("host") or ""),
        uuid=str(row.get("uuid") or ""),
        gpu_utilization=_float(row.get("gpu_utilization")),
        power_watts=_float(row.get("power_watts")),
        memory_used_bytes=_float(row.get("memory_used_bytes")),
        phase=phase if isinstance(phase, str) else None,
    )


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _float(value: Any) -> float | None:
    """A finite number, or ``None`` (JSON from Python may hold NaN and Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items() if _float(v) is not None}


def common_parent(paths: Sequence[Path]) -> Path:
    """The directory that holds all of ``paths`` (where comparison figures go)."""
    resolved = [p.resolve().parent for p in paths]
    return Path(os.path.commonpath(resolved))
