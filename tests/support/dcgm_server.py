"""A scriptable stand-in for dcgm-exporter: serves Prometheus text on 127.0.0.1.

``DcgmServer(script)`` answers every ``GET /metrics`` with ``script(scrape_number, elapsed_s)``:
a string is the body (200), an int is an HTTP status to answer with. :func:`render` writes
exporter-format text for any number of GPUs on any hosts; :func:`frames` and
:func:`constant_power` build the usual scripts.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence

import attrs
from aiperf.testing import LoopbackServer, Received, Reply

Script = Callable[[int, float], "str | int"]

#: (field, HELP text, TYPE) in the order dcgm-exporter's default counters list them.
_FIELDS = (
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "gauge"),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge"),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge"),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since boot (in mJ).",
        "counter",
    ),
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge"),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "gauge"),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge"),
    ("DCGM_FI_PROF_SM_ACTIVE", "Ratio of cycles an SM has at least 1 warp assigned.", "gauge"),
)


@attrs.frozen(kw_only=True)
class FakeGpu:
    """One GPU as an exporter reports it (wire units: MHz, C, W, mJ, %, MiB)."""

    index: int
    uuid: str
    host: str = "node-a"
    model: str = "NVIDIA H100 80GB HBM3"
    sm_clock_mhz: float = 1980.0
    temp_c: float = 60.0
    power_w: float = 300.0
    energy_mj: float = 1_000_000.0
    util_pct: float = 50.0
    fb_free_mib: float = 70_000.0
    fb_used_mib: float = 11_559.0
    sm_active: float = 0.4
    #: DCGM field names to leave out, as an exporter does for fields a GPU lacks.
    missing: frozenset[str] = frozenset()

    def value(self, field: str) -> float:
        return {
            "DCGM_FI_DEV_SM_CLOCK": self.sm_clock_mhz,
            "DCGM_FI_DEV_GPU_TEMP": self.temp_c,
            "DCGM_FI_DEV_POWER_USAGE": self.power_w,
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": self.energy_mj,
            "DCGM_FI_DEV_GPU_UTIL": self.util_pct,
            "DCGM_FI_DEV_FB_FREE": self.fb_free_mib,
            "DCGM_FI_DEV_FB_USED": self.fb_used_mib,
            "DCGM_FI_PROF_SM_ACTIVE": self.sm_active,
        }[field]


def render(gpus: Iterable[FakeGpu]) -> str:
    """Exporter-format text: HELP and TYPE per field, one labelled line per GPU."""
    gpus = list(gpus)
    lines: list[str] = []
    for field, help_text, kind in _FIELDS:
        lines += [f"# HELP {field} {help_text}", f"# TYPE {field} {kind}"]
        for gpu in gpus:
            if field in gpu.missing:
                continue
            labels = (
                f'gpu="{gpu.index}",UUID="{gpu.uuid}",'
                f'pci_bus_id="00000000:{gpu.index + 0x18:02X}:00.0",'
                f'device="nvidia{gpu.index}",modelName="{gpu.model}",Hostname="{gpu.host}",'
                f'DCGM_FI_DRIVER_VERSION="550.54.15"'
            )
            value = gpu.value(field)
            text = str(int(value)) if float(value).is_integer() else repr(float(value))
            lines.append(f"{field}{{{labels}}} {text}")
    return "\n".join(lines) + "\n"


def frames(texts: Sequence[str | int]) -> Script:
    """Answer the n-th scrape with ``texts[n]``, and the last one from then on."""
    return lambda n, _elapsed: texts[min(n, len(texts) - 1)]


def constant_power(gpus: Sequence[FakeGpu], watts: float) -> Script:
    """Each GPU draws ``watts`` from the server's start: its energy counter grows with time."""

    def script(_n: int, elapsed_s: float) -> str:
        return render(
            attrs.evolve(g, power_w=watts, energy_mj=g.energy_mj + watts * elapsed_s * 1000.0)
            for g in gpus
        )

    return script


class DcgmServer(LoopbackServer):
    """Serves ``script`` at ``http://127.0.0.1:<free port>/metrics`` while the context is open."""

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.scrapes = 0
        self._started = time.monotonic()

    @property
    def url(self) -> str:
        return super().url + "/metrics"

    def start(self) -> None:
        self._started = time.monotonic()
        super().start()

    def respond(self, request: Received) -> Reply:
        if request.path.split("?")[0] != "/metrics":
            return Reply(404, b"")
        with self.lock:
            n = self.scrapes
            self.scrapes += 1
        answer = self.script(n, time.monotonic() - self._started)
        if isinstance(answer, int):
            return Reply(answer, b"")
        return Reply(body=answer.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")


def unused_url() -> str:
    """A loopback URL where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/metrics"
