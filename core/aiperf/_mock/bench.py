"""How much CPU the mock server spends per request: ``python -m aiperf._mock.bench``.

Starts the server in its own process with no delays, drives a bounded number of streamed chat
requests at it over keep-alive connections from this process (a raw-socket client that only
looks for the end of each response), and reads the server's CPU time from ``/proc``. The
server's capacity on one core is ``1000 / (CPU seconds per 1000 requests)``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
import time

from aiperf.mock_server import MOCK_WORDS
from aiperf.testing import MockServer

_END = b"0\r\n\r\n"


def _request(host: str, port: int, prompt_words: int, output_tokens: int) -> bytes:
    prompt = " ".join(MOCK_WORDS[i % len(MOCK_WORDS)] for i in range(prompt_words))
    body = json.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": output_tokens,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes, budget: list[int], done: asyncio.Future[None]) -> None:
        self.request = request
        self.budget = budget
        self.done = done
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._next()

    def _next(self) -> None:
        assert self.transport is not None
        if self.budget[0] <= 0:
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        self.budget[0] -= 1
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        # Keep only enough bytes to see the terminator across a read boundary.
        self.tail = (self.tail + data)[-len(_END) :]
        if self.tail == _END:
            self.tail = b""
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of proc(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(host: str, port: int, request: bytes, count: int, connections: int) -> None:
    loop = asyncio.get_running_loop()
    budget = [count]
    waits = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(functools.partial(_Client, request, budget, done), host, port)
        waits.append(done)
    await asyncio.gather(*waits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiperf._mock.bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--prompt-words", type=int, default=128)
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("the benchmark reads CPU time from /proc and runs on Linux only", file=sys.stderr)
        return 2
    with MockServer(ttft_ms=0, itl_ms=0, output_tokens=args.output_tokens) as server:
        assert server.pid is not None
        host = "127.0.0.1"
        request = _request(host, server.port, args.prompt_words, args.output_tokens)
        # A short warm-up so that imports and first-connection costs stay out of the numbers.
        asyncio.run(_drive(host, server.port, request, 200, 4))
        server.reset_stats()
        cpu0, client0, t0 = _cpu_seconds(server.pid), time.process_time(), time.perf_counter()
        asyncio.run(_drive(host, server.port, request, args.requests, args.connections))
        wall = time.perf_counter() - t0
        cpu, client_cpu = _cpu_seconds(server.pid) - cpu0, time.process_time() - client0
        served = server.stats()["requests"]["ok"]
    result = {
        "requests": served,
        "connections": args.connections,
        "output_tokens": args.output_tokens,
        "wall_s": round(wall, 3),
        "requests_per_s": round(served / wall, 1),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_utilization": round(cpu / wall, 3),
        "server_cpu_s_per_1000_requests": round(cpu / served * 1000, 4),
        "server_capacity_per_core_requests_per_s": round(served / cpu, 1) if cpu else None,
        "load_generator_cpu_s": round(client_cpu, 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
