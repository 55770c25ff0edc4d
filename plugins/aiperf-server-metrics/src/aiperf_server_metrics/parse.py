"""A ``/metrics`` answer as readings, parsed by ``prometheus_client`` (text format 0.0.4, and
OpenMetrics when the server says so).

The parsers reject a whole body for one bad line. A server that writes one broken line should
cost that line, not the scrape: on a rejection the body is parsed again one metric family at
a time, and a family that still fails one sample line at a time, so only the lines that do
not parse are dropped (and counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

Labels = tuple[tuple[str, str], ...]

OPENMETRICS_TYPE = "application/openmetrics-text"
#: histogram-like families: bucketed observations.
_HISTOGRAMS = frozenset(("histogram", "gaugehistogram"))
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_gcount", "_gsum")


@attrs.frozen(kw_only=True)
class Scalar:
    """One gauge or counter sample."""

    name: str
    kind: str
    unit: str
    labels: Labels
    value: float


@attrs.frozen(kw_only=True)
class Histogram:
    """One histogram series: cumulative bucket counts by upper bound (``+Inf`` last)."""

    name: str
    unit: str
    labels: Labels
    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    sum: float | None
    count: float | None


@attrs.frozen(kw_only=True)
class Parsed:
    scalars: tuple[Scalar, ...]
    histograms: tuple[Histogram, ...]
    #: sample lines that did not parse and were skipped.
    bad_lines: int = 0

    @property
    def series(self) -> int:
        return len(self.scalars) + len(self.histograms)


class NotPrometheus(ValueError):
    """The answer is not a metrics exposition at all (HTML, JSON, nothing)."""


def parse_body(body: bytes, content_type: str = "") -> Parsed:
    """Parse a scrape's body; raises :class:`NotPrometheus` when nothing in it parses."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("application/json", "text/html"):
        raise NotPrometheus(f"the answer is {kind}, not Prometheus text")
    text = body.decode("utf-8", errors="replace")
    openmetrics = kind == OPENMETRICS_TYPE
    families, bad = _families(text, openmetrics)
    parsed = _readings(families, bad)
    if not parsed.series:
        raise NotPrometheus("no metrics in the answer")
    return parsed


def _parser(openmetrics: bool) -> Callable[[str], Iterator[Any]]:
    if openmetrics:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families

        def parse(text: str) -> Iterator[Any]:
            # OpenMetrics requires the closing marker; a block cut from a body lacks it.
            if not text.rstrip().endswith("# EOF"):
                text = text.rstrip("\n") + "\n# EOF\n"
            return text_string_to_metric_families(text)

        return parse
    from prometheus_client.parser import text_string_to_metric_families

    return text_string_to_metric_families


def _families(text: str, openmetrics: bool) -> tuple[list[Any], int]:
    parse = _parser(openmetrics)
    try:
        return list(parse(text)), 0
    except Exception:  # noqa: BLE001 - the parsers raise ValueError, and worse on odd input
        pass
    families: list[Any] = []
    bad = 0
    for header, lines in _blocks(text):
        try:
            families.extend(parse("".join(header + lines)))
            continue
        except Exception:  # noqa: BLE001 - as above; narrowed down line by line below
            pass
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            try:
                families.extend(parse("".join([*header, line])))
            except Exception:  # noqa: BLE001
                bad += 1
    return families, bad


def _blocks(text: str) -> Iterator[tuple[list[str], list[str]]]:
    """(comment lines, sample lines) of each metric family, in order."""
    header: list[str] = []
    lines: list[str] = []
    current: str | None = None
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            line += "\n"
        if line.startswith(("# HELP ", "# TYPE ", "# UNIT ")):
            parts = line.split(None, 3)
            name = parts[2] if len(parts) > 2 else ""
            if name != current or lines:
                if header or lines:
                    yield header, lines
                header, lines, current = [], [], name
            header.append(line)
        elif line.startswith("# EOF"):
            continue
        else:
            lines.append(line)
    if header or lines:
        yield header, lines


def _readings(families: Iterable[Any], bad: int) -> Parsed:
    scalars: list[Scalar] = []
    histograms: list[Histogram] = []
    for family in families:
        kind = family.type
        unit = family.unit or ""
        if kind in _HISTOGRAMS:
            histograms.extend(_histograms(family.name, unit, family.samples))
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # when the series started: not a value to follow
            value = float(sample.value)
            if math.isnan(value):
                continue
            scalars.append(
                Scalar(
                    name=sample.name,
                    kind=_scalar_kind(kind, sample.name),
                    unit=unit,
                    labels=_labels(sample.labels),
                    value=value,
                )
            )
    return Parsed(scalars=tuple(scalars), histograms=tuple(histograms), bad_lines=bad)


def _scalar_kind(kind: str, name: str) -> str:
    if kind == "counter":
        return "counter"
    if kind == "summary":
        return "counter" if name.endswith(("_count", "_sum")) else "gauge"
    if kind in ("unknown", "untyped") and name.endswith("_total"):
        return "counter"
    return "gauge"


def _histograms(name: str, unit: str, samples: Iterable[Any]) -> list[Histogram]:
    by_labels: dict[Labels, dict[str, Any]] = {}
    for sample in samples:
        suffix = next((s for s in _HISTOGRAM_SUFFIXES if sample.name == name + s), None)
        if suffix is None:
            continue
        labels = dict(sample.labels)
        le = labels.pop("le", None)
        entry = by_labels.setdefault(_labels(labels), {"buckets": {}, "sum": None, "count": None})
        if suffix == "_bucket" and le is not None:
            try:
                entry["buckets"][float(le)] = float(sample.value)
            except ValueError:
                continue
        elif suffix in ("_sum", "_gsum"):
            entry["sum"] = float(sample.value)
        elif suffix in ("_count", "_gcount"):
            entry["count"] = float(sample.value)
    out = []
    for labels, entry in by_labels.items():
        buckets = sorted(entry["buckets"].items())
        if not buckets:
            continue
        out.append(
            Histogram(
                name=name,
                unit=unit,
                labels=labels,
                bounds=tuple(b for b, _ in buckets),
                counts=tuple(c for _, c in buckets),
                sum=entry["sum"],
                count=entry["count"],
            )
        )
    return out


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))
