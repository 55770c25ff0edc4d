"""Keeping secrets out of everything aiperf writes.

Two layers: structured redaction where we know the shape (the config, the command line), and a
last-resort scrubber that replaces every known secret value wherever it appears in a log line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiperf._config import REDACTED, is_secret_header, redact_url

if TYPE_CHECKING:
    from aiperf._types import ErrorInfo

_SECRET_FLAGS = {"--api-key"}
_HEADER_FLAGS = {"-H", "--header"}
_known: set[str] = set()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Register secret values so the log scrubber can replace them anywhere."""
    for value in values:
        if value and len(value) >= 4:
            _known.add(value)


def known_secrets() -> frozenset[str]:
    return frozenset(_known)


def scrub(text: str) -> str:
    # Until nothing changes: taking one secret out can join the text around it into another
    # (every pass shortens the text, so this ends).
    changed = True
    while changed:
        changed = False
        for secret in _known:
            if secret in text:
                text = text.replace(secret, REDACTED)
                changed = True
    return text


def scrub_secrets(text: str) -> str:
    """:func:`scrub`, and also the start of a secret at the very end of ``text``.

    For text that may have been cut to a length (an error body shown up to N bytes, a span
    status up to 200 characters): the cut can fall inside a secret, and its first characters
    must not get out either.
    """
    while True:
        text = scrub(text)
        before = text
        for secret in _known:
            for size in range(min(len(secret) - 1, len(text)), 3, -1):
                if text.endswith(secret[:size]):
                    text = text[:-size] + REDACTED
                    break
        if text == before:
            return text


def scrub_error(error: ErrorInfo) -> ErrorInfo:
    """The error with every known secret taken out of its message (a server that echoes the
    request's ``Authorization`` header in its 401 body must not put the key into the exports)."""
    if not _known:
        return error
    message = scrub_secrets(error.message)
    if message == error.message:
        return error
    import attrs

    return attrs.evolve(error, message=message)


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(v) for v in value)
    return value


def structlog_processor(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if not _known:
        return event_dict
    return {k: scrub_value(v) for k, v in event_dict.items()}


def _redact_header(text: str) -> str:
    if text.strip().startswith("{"):
        # -H '{"X-A": "b", "Api-Key": "..."}': the secret may be any of the keys.
        import json

        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return REDACTED
        if not isinstance(data, dict):
            return REDACTED
        return json.dumps({k: REDACTED if is_secret_header(str(k)) else v for k, v in data.items()})
    name, sep, _value = text.partition(":")
    return f"{name}:{REDACTED}" if sep and is_secret_header(name) else text


def redact_argv(argv: list[str]) -> list[str]:
    out: list[str] = []
    pending: str | None = None
    for arg in argv:
        if pending is not None:
            out.append(REDACTED if pending in _SECRET_FLAGS else _redact_header(arg))
            pending = None
            continue
        flag, eq, value = arg.partition("=")
        if flag in _SECRET_FLAGS:
            out.append(f"{flag}={REDACTED}" if eq else flag)
            pending = None if eq else flag
            continue
        if flag in _HEADER_FLAGS:
            out.append(f"{flag}={_redact_header(value)}" if eq else flag)
            pending = None if eq else flag
            continue
        if "://" in arg:
            arg = redact_url(arg)
        out.append(scrub(arg))
    return out
