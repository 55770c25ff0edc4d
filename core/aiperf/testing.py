"""Helpers for testing aiperf and its plugins against a real server on loopback.

Importable without pytest::

    from aiperf.testing import MockServer

    with MockServer(ttft_ms=50, itl_ms=10) as server:
        ...  # send requests to server.url
        truth = server.stats()
        assert truth["ttft_ms"]["count"] == 64

The server runs in its own process (and process group) so that its CPU time never competes
with the client under test inside one interpreter, and it is always stopped on exit.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from types import TracebackType
from typing import IO, Any, Self

from aiperf.mock_server import LISTENING_PREFIX

__all__ = ["MockServer", "MockServerError", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago.

    Another process may take it before you bind it; prefer letting the server pick
    (``port=0``) and reading the port it reports, as :class:`MockServer` does.
    """
    with socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
    ) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MockServerError(RuntimeError):
    """The mock server did not start, or stopped answering."""


class MockServer:
    """``aiperf mock-server`` in a subprocess, for the length of a ``with`` block.

    Keyword arguments are :class:`aiperf.mock_server.MockServerConfig` fields (``ttft_ms``,
    ``itl_ms``, ``output_tokens``, ``tokens_per_chunk``, ``error_rate``, ``error_status``,
    ``faults={"reset": 0.5}``, ``stall_seconds``, ``seed``, ...). They are checked before the
    process starts, so a bad value raises :class:`aiperf.UsageError` here.
    """

    def __init__(self, *, start_timeout: float = 15.0, **options: Any) -> None:
        from aiperf._mock.config import MockServerConfig

        self.config = MockServerConfig(**{"port": 0, **options})
        self.start_timeout = start_timeout
        self.url = ""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

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
        """Start the process and wait for its listening line."""
        if self.process is not None:
            raise MockServerError("the mock server is already running")
        # Kept open for the server's lifetime (closed in stop()) so a failed start can be explained.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiperf.mock_server", *self.config.to_argv()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        try:
            line = self._read_listening_line()
        except BaseException:
            self.stop()
            raise
        self.url = line[len(LISTENING_PREFIX) :].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def _read_listening_line(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise MockServerError(
                        f"the mock server did not report its port within {self.start_timeout} s"
                        + self._stderr_tail()
                    )
                if sel.select(remaining):
                    break
        line = stdout.readline().decode("utf-8", "replace")
        if not line.startswith(LISTENING_PREFIX):
            self.process.wait(timeout=self.start_timeout)
            raise MockServerError(
                f"the mock server exited with code {self.process.returncode}" + self._stderr_tail()
            )
        return line

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip()
        return f": {text[-2000:]}" if text else ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(process, signal.SIGKILL)
                    process.wait(timeout=timeout)
            else:
                # The server is gone, but anything it started may not be.
                _signal_group(process, signal.SIGKILL)
        finally:
            if process.stdout is not None:
                process.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    # -- ground truth ----------------------------------------------------------------------------

    def stats(self, *, raw: bool = False) -> dict[str, Any]:
        """``GET /stats`` (``?raw=1`` with ``raw=True``): what the server measured."""
        return self._call("GET", "/stats?raw=1" if raw else "/stats")

    def reset_stats(self) -> None:
        """``POST /stats/reset``: start a new measurement window."""
        self._call("POST", "/stats/reset")

    def _call(self, method: str, path: str) -> dict[str, Any]:
        if not self.url:
            raise MockServerError("the mock server is not running")
        request = urllib.request.Request(
            self.url + path, method=method, data=b"" if method == "POST" else None
        )
        # The server is on loopback; a proxy from the environment must not be used.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            result: dict[str, Any] = json.loads(response.read())
        return result


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except ProcessLookupError:
        pass
