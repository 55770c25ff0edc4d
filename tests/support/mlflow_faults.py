"""A misbehaving MLflow tracking server for tests: a proxy in front of a real one that hangs or
fails the requests you name, and passes the others through.

::

    with FaultyTracking(mlflow_server.url) as tracking:      # http://127.0.0.1:PORT
        tracking.fail("/runs/log-batch")                      # 500 with an MLflow error body
        tracking.hang("/mlflow-artifacts/")                  # never answers (until stop())
        tracking.hang("")                                     # every request, /health too
        run_aiperf(..., "--mlflow-tracking-uri", tracking.url)
        tracking.seen("/mlflow-artifacts/")                   # how many such requests came

Rules match a substring of the request path; the last rule added wins; ``clear()`` removes them.
Runs in threads of the test process; ``stop()`` releases every hung request and closes the port.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

__all__ = ["FaultyTracking"]


class FaultyTracking:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._rules: list[tuple[str, str]] = []
        self._seen: list[str] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def hang(self, path_part: str) -> None:
        with self._lock:
            self._rules.append((path_part, "hang"))

    def fail(self, path_part: str) -> None:
        with self._lock:
            self._rules.append((path_part, "fail"))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def seen(self, path_part: str) -> int:
        with self._lock:
            return sum(path_part in path for path in self._seen)

    def _action(self, path: str) -> str | None:
        with self._lock:
            self._seen.append(path)
            for part, action in reversed(self._rules):
                if part in path:
                    return action
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                action = proxy._action(self.path)
                if action == "hang":
                    proxy._released.wait()
                    self.close_connection = True
                    return
                if action == "fail":
                    payload = json.dumps(
                        {"error_code": "INTERNAL_ERROR", "message": "injected failure"}
                    ).encode()
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=60
                )
                try:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection", "content-length")
                    }
                    headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        return Handler
