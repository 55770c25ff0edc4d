"""A minimal OTLP/HTTP receiver for the sinks-on scenario, run as its own process.

    python otlp_sink.py            # prints "otlp sink listening on http://127.0.0.1:PORT"

It accepts ``POST /v1/metrics`` and ``POST /v1/traces`` and answers each with an empty
(valid) export response without decoding the body: the benchmark measures what streaming
telemetry costs aiperf, not what a collector does with it. ``GET /counts`` returns how many
exports and bytes arrived per path, so the suite can check that telemetry really flowed.
``GET`` anything else answers 200, as a collector's reachability probe expects.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTENING_PREFIX = "otlp sink listening on "


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def add(self, path: str, size: int) -> None:
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.bytes[path] = self.bytes.get(path, 0) + size

    def as_json(self) -> bytes:
        with self.lock:
            return json.dumps({"requests": self.requests, "bytes": self.bytes}).encode()


COUNTS = _Counts()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        COUNTS.add(self.path, len(body))
        self._answer(200, b"", "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path == "/counts":
            self._answer(200, COUNTS.as_json(), "application/json")
        else:
            self._answer(200, b"{}", "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    print(f"{LISTENING_PREFIX}http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
