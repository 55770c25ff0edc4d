"""GPUs on other machines through a DCGM exporter endpoint (Prometheus text format).

dcgm-exporter serves one line per GPU per field, labelled with the GPU's index, UUID, model
and host. Units on the wire: percent, MiB, watts, millijoules, degrees Celsius, MHz.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs
import structlog
from aiperf import describe_error, strip_userinfo

from aiperf_gpu.readings import GpuReading

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger()

SOURCE = "dcgm"
MIB = 1024**2

#: exporter field -> (sample field, factor to the sample's unit).
FIELD_MAP: dict[str, tuple[str, float]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("gpu_utilization", 0.01),
    "DCGM_FI_DEV_FB_USED": ("memory_used_bytes", MIB),
    "DCGM_FI_DEV_POWER_USAGE": ("power_watts", 1.0),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("energy_joules", 0.001),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature_celsius", 1.0),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1.0),
}
#: the frame buffer's size is not exported by default: total = used + free (+ reserved).
FB_TOTAL = "DCGM_FI_DEV_FB_TOTAL"
FB_PARTS = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED")
_WANTED = frozenset(FIELD_MAP) | {FB_TOTAL, *FB_PARTS}

#: DCGM's "no value" markers (blank, not found, not supported, not permitted), which an exporter
#: passes on as numbers: int32 and float64 ones sit just above these bases, int64 ones near 2**63.
_INT32_BLANK = 0x7FFFFFF0
_FP64_BLANK = 140737488355328.0
_INT64_BLANK_FLOAT = float(0x7FFFFFFFFFFFFFF0)
_BLANK_SPAN = 16


def is_blank(value: float) -> bool:
    """Whether an exported value is one of DCGM's markers for a field it could not read."""
    return (
        not math.isfinite(value)
        or value >= _INT64_BLANK_FLOAT
        or _FP64_BLANK <= value < _FP64_BLANK + _BLANK_SPAN
        or _INT32_BLANK <= value < _INT32_BLANK + _BLANK_SPAN
    )


_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"([^"\\]*(?:\\.[^"\\]*)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_UNESCAPE_RE = re.compile(r'\\[\\"n]')


@attrs.frozen
class PromSample:
    name: str
    labels: dict[str, str]
    value: float


def parse_exposition(text: str, names: Collection[str] | None = None) -> Iterator[PromSample]:
    """Parse Prometheus text exposition; comments and lines that do not parse are skipped.

    With ``names``, other metrics are skipped before their labels are read: the parse runs on
    the event loop, and an exporter's answer is mostly fields aiperf does not use.
    """
    # Every field of one GPU carries the same labels: read each distinct set once.
    seen: dict[str, dict[str, str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        name, label_text, value_text = match.groups()
        if names is not None and name not in names:
            continue
        try:
            value = float(value_text)
        except ValueError:
            continue
        label_text = label_text or ""
        labels = seen.get(label_text)
        if labels is None:
            labels = seen[label_text] = _labels(label_text)
        yield PromSample(name=name, labels=labels, value=value)


def _labels(text: str) -> dict[str, str]:
    return {
        key: _UNESCAPE_RE.sub(_unescape, value) if "\\" in value else value
        for key, value in _LABEL.findall(text)
    }


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPE[match.group(0)]


def readings_from_text(text: str, *, default_host: str, perf_ns: int) -> list[GpuReading]:
    """One reading per GPU found in an exporter's answer (fields it lacks are left out)."""
    #: (host, UUID or index) -> the labels of the GPU's first series, and its fields.
    found: dict[tuple[str, str], tuple[dict[str, str], dict[str, float]]] = {}
    for sample in parse_exposition(text, _WANTED):
        if is_blank(sample.value):
            continue
        labels = sample.labels
        index = labels.get("gpu", "")
        uuid = labels.get("UUID") or labels.get("uuid") or ""
        if not index and not uuid:
            continue
        host = labels.get("Hostname") or default_host
        _, fields = found.setdefault((host, uuid or index), (labels, {}))
        # Several series for one GPU (per-pod labels on Kubernetes): the first one counts.
        fields.setdefault(sample.name, sample.value)
    readings = []
    for (host, _), (labels, fields) in found.items():
        values = {
            field: fields[name] * factor
            for name, (field, factor) in FIELD_MAP.items()
            if name in fields
        }
        total = _memory_total_mib(fields)
        if total is not None:
            values["memory_total_bytes"] = total * MIB
        index = labels.get("gpu", "")
        readings.append(
            GpuReading(
                source=SOURCE,
                host=host,
                gpu_index=int(index) if index.isdigit() else -1,
                uuid=labels.get("UUID") or labels.get("uuid") or "",
                name=labels.get("modelName", ""),
                perf_ns=perf_ns,
                values=values,
            )
        )
    readings.sort(key=lambda r: (r.host, r.gpu_index, r.uuid))
    return readings


def _memory_total_mib(fields: dict[str, float]) -> float | None:
    if FB_TOTAL in fields:
        return fields[FB_TOTAL]
    if FB_PARTS[0] in fields and FB_PARTS[1] in fields:
        return sum(fields.get(name, 0.0) for name in FB_PARTS)
    return None


@attrs.define
class DcgmSource:
    """Scrapes one DCGM exporter endpoint once per :meth:`read`."""

    url: str = attrs.field(repr=False)
    #: a client to share; by default the source opens (and closes) its own.
    client: httpx.AsyncClient | None = None
    timeout_s: float = 2.0
    #: ``--ca-bundle``, for https endpoints behind a private CA.
    ca_bundle: Path | None = None
    label: str = attrs.field(init=False)
    _host: str = attrs.field(init=False)
    _owns_client: bool = False
    _failures: int = 0
    _scrapes: int = 0
    _down: bool = False
    _warned: bool = False

    def __attrs_post_init__(self) -> None:
        self.label = strip_userinfo(self.url)
        self._host = urlsplit(self.url).hostname or "unknown"

    async def open(self) -> bool:
        if self.client is None:
            import httpx

            verify: Any = True
            if self.ca_bundle is not None:
                import ssl

                verify = ssl.create_default_context(cafile=str(self.ca_bundle))
            self.client = httpx.AsyncClient(verify=verify, follow_redirects=True)
            self._owns_client = True
        return True

    async def read(self) -> list[GpuReading]:
        import httpx

        assert self.client is not None, "open() first"
        self._scrapes += 1
        try:
            response = await self.client.get(self.url, timeout=self.timeout_s)
            perf_ns = time.perf_counter_ns()
            response.raise_for_status()
            text = response.text
        except httpx.HTTPError as exc:
            self._failed(_describe(exc))
            return []
        # Parsed here rather than in a worker thread: the parse holds the GIL either way, and
        # from a thread it could keep the event loop waiting for up to the switch interval.
        readings = readings_from_text(text, default_host=self._host, perf_ns=perf_ns)
        if not readings:
            self._failed("no DCGM GPU metrics in the answer")
            return []
        if self._down:
            self._down = False
            log.info("dcgm_endpoint_answering", url=self.label)
        return readings

    def _failed(self, error: str) -> None:
        self._failures += 1
        self._down = True
        # Polled several times a second: one warning per endpoint, the count at the end.
        if not self._warned:
            self._warned = True
            log.warning("dcgm_endpoint_unreachable", url=self.label, error=error)

    async def aclose(self) -> None:
        if self._owns_client and self.client is not None:
            await self.client.aclose()
            self.client = None

    def report(self) -> str | None:
        if not self._failures:
            return None
        return f"gpu: {self._failures} of {self._scrapes} scrapes of {self.label} failed"


def _describe(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    # httpx puts the URL in some messages: never the userinfo.
    return describe_error(exc)
