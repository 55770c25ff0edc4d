"""The health probe against real sockets on loopback: answered, refused, and silent."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiperf.testing import free_port
from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig

pytestmark = pytest.mark.integration


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404 if self.path != "/health" else 200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a hung tracking server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_probe_answered(http_server: str) -> None:
    """A server that answers /health passes."""
    assert environment.probe(MlflowConfig(tracking_uri=http_server), 5.0)


def test_probe_any_answer_counts(http_server: str) -> None:
    """A server that answers at all (here 404 under a path prefix) is there."""
    assert environment.probe(MlflowConfig(tracking_uri=http_server + "/prefix"), 5.0)


def test_probe_refused() -> None:
    """Nobody listening: not reachable."""
    assert not environment.probe(MlflowConfig(tracking_uri=f"http://127.0.0.1:{free_port()}"), 5.0)


def test_probe_silent_server_gives_up_after_budget(silent_server: str) -> None:
    """A server that never answers is given up on, not waited for."""
    assert not environment.probe(MlflowConfig(tracking_uri=silent_server), 0.3)
