"""The sink: finished requests as JSON lines, posted in batches from a worker thread."""

import json
import urllib.request

import trio
from aiperf import RequestDone, strip_userinfo


class JsonlHttpSink:
    name = "jsonl-http"

    def __init__(self, url, batch_size=100, timeout=10.0):
        self.url = url
        self.batch_size = batch_size
        self.timeout = timeout
        self.pending = []
        self.sent = 0
        self.lost = 0
        self.error = None

    async def open(self, run):
        self.context = run  # not self.run: that is the method below

    async def run(self, events):
        async for event in events:
            if isinstance(event, RequestDone):  # progress, phases, samples: not ours
                self.pending.append(json.dumps(self.line(event)))
                if len(self.pending) >= self.batch_size:
                    await self.flush()

    async def close(self, status):
        await self.flush()

    def line(self, event):
        metrics = event.metrics
        return {
            "benchmark_id": self.context.benchmark_id,
            "index": metrics.index,
            "phase": metrics.phase.value,
            "ok": metrics.ok,
            "error": metrics.error.type if metrics.error else None,
            "start_ns": self.context.to_wall_ns(metrics.start_ns),
            "end_ns": self.context.to_wall_ns(metrics.end_ns),
            "metrics": metrics.values,
        }

    async def flush(self):
        lines, self.pending = self.pending, []
        if not lines:
            return
        body = "".join(line + "\n" for line in lines).encode()
        try:
            # urllib blocks: in a thread, never in the loop the other sinks share.
            await trio.to_thread.run_sync(self.post, body)
            self.sent += len(lines)
        except OSError as exc:  # refused, timed out, or an HTTP error status
            self.lost += len(lines)
            self.error = f"{type(exc).__name__}: {exc}"

    def post(self, body):
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/x-ndjson"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()

    def backlog(self):
        return f"{len(self.pending)} records to send" if self.pending else None

    def report(self):
        if not self.lost:
            return None
        where = strip_userinfo(self.url)
        return f"jsonl-http: {self.lost} records not delivered to {where} ({self.error})"
