"""``profile_export.jsonl``: a line per request, written by the built-in plugin's run writer.

The engine hands every request to the run writers in its bookkeeping, when the loop is idle
(see ``Engine.book_when_idle``); building and writing a line costs about 20 us there, so the
line is built here exactly once, with nothing else in between.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiperf._exporters import JSONL_FILE, ArtifactWriteError

if TYPE_CHECKING:
    from aiperf._types import RequestMetrics, RequestRecord, RunContext

#: the key of ``RunContext.state`` holding each ``--url``'s request URL as recorded (no
#: userinfo, no query values), set by the core before the run writers open.
URLS_KEY = "request_urls"


class JsonlRecords:
    """The run writer of ``profile_export.jsonl``: every request the run sent, one line each,
    in the order they were booked. A request that did not finish (``metrics`` None) has its
    line too, and is never in the statistics."""

    name = "jsonl"
    #: set by :meth:`open`.
    run: RunContext
    file: JsonlWriter
    urls: list[str]

    def open(self, run: RunContext) -> Sequence[Path]:
        from aiperf._rundir import report_artifact_error

        def failed(error: ArtifactWriteError) -> None:
            report_artifact_error(run, error, "the run goes on; the statistics are kept in memory")

        self.run = run
        self.urls = list(run.state[URLS_KEY])
        self.file = JsonlWriter(run.run_dir / JSONL_FILE, on_error=failed)
        return [self.file.path]

    def write(self, record: RequestRecord, metrics: RequestMetrics | None) -> None:
        run = self.run
        shown: dict[str, Any] = {}
        if metrics is not None:
            specs = run.metrics
            for tag, value in metrics.values.items():
                spec = specs.get(tag)
                shown[tag] = round(value * spec.scale, 6) if spec else value
            if metrics.inter_chunk_latency_ns:
                shown["inter_chunk_latency"] = [
                    round(gap / 1e6, 6) for gap in metrics.inter_chunk_latency_ns
                ]
        if not record.ok and record.chunk_ns and record.start_ns:
            # A failed request keeps the timing it had before it failed; the statistics
            # never include it.
            shown.setdefault("time_to_first_token", round((record.chunk_ns[0] - record.start_ns) / 1e6, 6))
            gaps = [b - a for a, b in zip(record.chunk_ns, record.chunk_ns[1:])]
            if gaps:
                shown.setdefault("inter_chunk_latency", [round(gap / 1e6, 6) for gap in gaps])
        end = record.chunk_ns[-1] if record.chunk_ns else record.end_ns
        line = {
            "request_index": record.index,
            "phase": record.phase.value,
            "worker": record.worker,
            "url": self.urls[record.index % len(self.urls)],
            "start_time_ns": run.to_wall_ns(record.start_ns) if record.start_ns else None,
            "end_time_ns": run.to_wall_ns(end) if end else None,
            "intended_start_time_ns": (
                run.to_wall_ns(record.intended_ns) if record.intended_ns is not None else None
            ),
            "send_lag_ms": (
                round((record.start_ns - record.intended_ns) / 1e6, 6)
                if record.intended_ns is not None and record.start_ns
                else None
            ),
            "status_code": record.status_code,
            "error": (
                {"type": record.error.type, "message": record.error.message} if record.error else None
            ),
            "response_model": record.response_model,
            **_token_fields(record),
            "metrics": shown,
        }
        if record.node is not None:  # the load ran on several machines
            line["node"] = record.node
        if record.session_id is not None:
            line["session_id"] = record.session_id
            line["turn"] = record.turn
        if record.client_cancelled:
            line["cancelled"] = True
        self.file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> str | None:
        file: JsonlWriter | None = getattr(self, "file", None)
        if file is None:
            return None
        file.close()
        if file.lost:
            return f"{file.lost} lines of {JSONL_FILE} were not written ({file.error})"
        return None


def _token_fields(record: RequestRecord) -> dict[str, Any]:
    """The server's ``usage`` (checked) and the tokenizer's counts, side by side."""
    counts = record.token_counts
    if counts is None:
        return {"token_source": None, "usage": None, "usage_ignored": None, "client_tokens": None}
    server = counts.server
    usage = None
    if server is not None:
        usage = {
            k: v for k, v in (
                ("prompt_tokens", server.prompt_tokens),
                ("completion_tokens", server.completion_tokens),
                ("reasoning_tokens", server.reasoning_tokens),
            ) if v is not None
        }
    return {
        "token_source": counts.source,
        "usage": usage,
        "usage_ignored": counts.usage_ignored,
        "client_tokens": {
            "input": counts.client_input,
            "output": counts.client_output,
            "reasoning": counts.client_reasoning,
        },
    }


class JsonlWriter:
    """``profile_export.jsonl``, written as requests finish.

    Each line goes to the file with one ``write`` on an unbuffered descriptor: a SIGKILL (the
    OOM killer, a CI timeout) loses only the requests not finished yet, never lines held in a
    buffer. It costs about 1 microsecond more per line than block buffering (2 us against 1 us
    per 300-byte line, measured), a fraction of the time spent building the line.

    A write that fails (disk full, quota, I/O error) never stops the run: the file is cut back
    to its last whole line, the failure is said once on stderr (``on_error``), the lines that
    follow are counted as lost, and everything else (the summary, the console table) goes on
    from the statistics held in memory.
    """

    def __init__(self, path: Path, on_error: Any = None) -> None:
        self.path = path
        try:
            self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise ArtifactWriteError(path, exc) from None
        #: bytes of whole lines in the file.
        self.size = 0
        self.lines = 0
        self.lost = 0
        self.error: ArtifactWriteError | None = None
        self._on_error = on_error

    def write(self, text: str) -> int:
        if self.fd is None:
            self.lost += 1
            return 0
        data = text.encode("utf-8")
        try:
            written = os.write(self.fd, data)
            while written < len(data):  # a short write: the next one says why (ENOSPC)
                written += os.write(self.fd, data[written:])
        except OSError as exc:
            self._fail(exc)
            self.lost += 1
            return 0
        self.size += len(data)
        self.lines += 1
        return len(text)

    def _fail(self, exc: OSError) -> None:
        fd, self.fd = self.fd, None
        assert fd is not None
        try:
            os.ftruncate(fd, self.size)  # drop the part of a line that made it
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass
        self.error = ArtifactWriteError(self.path, exc)
        if self._on_error is not None:
            self._on_error(self.error)

    def flush(self) -> None:
        """Nothing is held back: every line is written when it is given."""

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
