"""A real OpenTelemetry collector for tests: rotel (from PyPI), forwarding OTLP/HTTP onwards.

It runs as a daemon in its own session with a pid file, and is stopped by that pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from aiperf.testing import free_port

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


def rotel_binary() -> Path:
    import rotel

    return Path(rotel.__file__).resolve().parent / "rotel-agent"


class RotelCollector:
    """``rotel-agent`` receiving OTLP/HTTP on a loopback port and exporting to ``forward_to``."""

    def __init__(self, *, forward_to: str, workdir: Path) -> None:
        self.forward_to = forward_to
        self.workdir = workdir
        self.pid_file = workdir / "rotel.pid"
        self.log_file = workdir / "rotel.log"
        self.port = 0
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        argv = [
            str(rotel_binary()),
            "start",
            "--daemon",
            "--pid-file",
            str(self.pid_file),
            "--log-file",
            str(self.log_file),
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.port}",
            # Its gRPC receiver is on by default at 4317: keep it off shared ports too.
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{free_port()}",
            "--exporter",
            "otlp",
            "--otlp-exporter-protocol",
            "http",
            "--otlp-exporter-endpoint",
            self.forward_to,
            "--batch-timeout",
            "100ms",
        ]
        launcher = subprocess.run(
            argv,
            start_new_session=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if launcher.returncode != 0:
            raise RuntimeError(f"rotel-agent did not start: {launcher.stderr.strip()}")
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.pid is None and self.pid_file.exists():
                text = self.pid_file.read_text().strip()
                self.pid = int(text) if text.isdigit() else None
            if self.pid is not None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        raise RuntimeError(
            f"rotel-agent did not listen on port {self.port} within {START_TIMEOUT_S} s\n{log}"
        )

    def stop(self) -> None:
        """SIGTERM the daemon by its pid (it flushes and exits), SIGKILL if it lingers."""
        pid, self.pid = self.pid, None
        if pid is None or not _is_rotel(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            if not _is_rotel(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _is_rotel(pid: int) -> bool:
    """Alive and still rotel (a pid can be reused once the daemon is gone)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    zombie = status.rsplit(")", 1)[-1].split()[0] == "Z"
    return b"rotel-agent" in cmdline and not zombie
