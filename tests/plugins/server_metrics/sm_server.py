"""A stand-in metrics endpoint on loopback that misbehaves on purpose, one script per URL path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

#: scrape number -> body (bytes), an HTTP status (int), or None to drop the connection.
Script = Callable[[int], bytes | int | None]

PROM = "text/plain; version=0.0.4; charset=utf-8"


def counter_body(value: float, *, extra: str = "") -> bytes:
    return (
        "# TYPE vllm:generation_tokens_total counter\n"
        f'vllm:generation_tokens_total{{model_name="m"}} {value}\n'
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="m"} 2\n' + extra
    ).encode()


def many_series(count: int) -> bytes:
    lines = ["# TYPE app_series gauge"]
    lines += [f'app_series{{shard="{i}",kind="x"}} {i}' for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


class MetricsServer:
    """Serves each path's script at ``http://127.0.0.1:<free port><path>``."""

    def __init__(self, scripts: dict[str, Script], delay_s: dict[str, float] | None = None) -> None:
        self.scripts = scripts
        self.delay_s = delay_s or {}
        self.scrapes: dict[str, int] = dict.fromkeys(scripts, 0)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                script = server.scripts.get(path)
                if script is None:
                    self.send_error(404)
                    return
                with server._lock:
                    n = server.scrapes[path]
                    server.scrapes[path] = n + 1
                time.sleep(server.delay_s.get(path, 0.0))
                answer = script(n)
                try:
                    if answer is None:
                        self.close_connection = True
                        self.connection.close()
                        return
                    if isinstance(answer, int):
                        self.send_error(answer)
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", PROM)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        return Handler
