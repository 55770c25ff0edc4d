"""A real ``mlflow server`` on loopback for tests: sqlite store, a port chosen at run time, its
own process group, always stopped.

Starting takes several seconds (database migrations, uvicorn), so share one per module or
session::

    @pytest.fixture(scope="module")
    def mlflow_server(tmp_path_factory):
        with MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
            yield server

Needs the full ``mlflow`` distribution (``mlflow-skinny`` has no server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from aiperf.testing import free_port

__all__ = ["MlflowServer", "MlflowServerError"]


class MlflowServerError(RuntimeError):
    """The MLflow server did not come up."""


class MlflowServer:
    def __init__(self, root: Path, *, start_timeout: float = 90.0, attempts: int = 3) -> None:
        self.root = Path(root)
        self.start_timeout = start_timeout
        self.attempts = attempts
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path = self.root / "server.log"

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

    @property
    def backend_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def start(self) -> None:
        """Start and wait for ``GET /health``; a port taken in between gets another try."""
        if self.process is not None:
            raise MlflowServerError("the MLflow server is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, self.attempts + 1):
            self._spawn(free_port())
            try:
                self._wait_healthy()
                return
            except MlflowServerError:
                self.stop()
                if attempt == self.attempts:
                    raise

    def _spawn(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            # Without this the server starts job-runner processes and takes far longer to start.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "PYTHONUNBUFFERED": "1",
        }
        with self._log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    self.backend_uri,
                    "--artifacts-destination",
                    str(self.root / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                start_new_session=True,
            )

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MlflowServerError(
                    f"mlflow server exited with code {self.process.returncode}{self._log_tail()}"
                )
            if self.healthy():
                return
            time.sleep(0.2)
        raise MlflowServerError(
            f"mlflow server did not answer /health within {self.start_timeout} s{self._log_tail()}"
        )

    def healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def kill(self) -> None:
        """Kill the whole server at once (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process group: SIGTERM, then SIGKILL if anything lingers."""
        process = self.process
        if process is None:
            return
        try:
            if process.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    process.wait(timeout=timeout)
            # uvicorn's worker may outlive its parent; the group takes it along.
            self._signal(signal.SIGKILL)
        finally:
            self.process = None

    def _signal(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def _log_tail(self) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""
        return f": {text[-2000:]}" if text else ""
