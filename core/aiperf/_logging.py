"""Logging: structlog, human-readable on stderr by default, JSON lines with --log-format json.

The console format is ``LEVEL    event key=value ...``, so a plugin that logs a sentence as its
event prints exactly that sentence (``WARNING  OTel collector at ... is not reachable. ...``).
Every line passes the secret scrubber first.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from aiperf._redact import structlog_processor


def _console(logger: Any, method: str, event_dict: dict[str, Any]) -> str:
    level = event_dict.pop("level", method).upper()
    event = str(event_dict.pop("event", ""))
    event_dict.pop("timestamp", None)
    extras = " ".join(f"{k}={v}" for k, v in event_dict.items())
    return f"{level:<8} {event}" + (f" {extras}" if extras else "")


_configured = False


def ensure_configured() -> None:
    """Configure with the defaults unless a command already did."""
    if not _configured:
        configure()


def configure(verbose: int = 0, fmt: str = "console") -> None:
    global _configured
    _configured = True
    level = logging.DEBUG if verbose > 0 else logging.INFO
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else _console
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog_processor,
    ]
    if fmt == "json":
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (httpx, opentelemetry, mlflow) stay quiet unless -vv.
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.WARNING,
        format="%(levelname)-8s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(_ScrubFilter())


class _CurrentStderr:
    """``sys.stderr`` as it is when a line is written, not as it was when logging was set up:
    a program that swaps it (a test harness capturing output, an embedding application)
    never gets lines written to a stream it has since closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from aiperf._redact import scrub

        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        record.msg = scrub(message)
        record.args = ()
        return True
