"""URLs and secrets: what a plugin may show, log and write, and how it writes files.

One home for the helpers every plugin needs when it takes a URL from the user and reports on
it: check and normalise the URL, show it without ``user:password@``, keep registered secrets
out of any text, describe a failure in one line, and write a file whole or not at all.

Everything here is light to import (``aiperf --help`` loads plugin option modules that use it)
and re-exported from :mod:`aiperf`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from aiperf._types import UsageError

if TYPE_CHECKING:
    from aiperf._exporters import ArtifactWriteError, write_text_atomic  # noqa: F401

__all__ = [
    "REDACTED",
    "ArtifactWriteError",
    "describe_error",
    "normalize_url",
    "scrub",
    "split_url",
    "strip_userinfo",
    "write_json_atomic",
    "write_text_atomic",
]

#: what stands in for a secret wherever one was taken out.
REDACTED = "***"

DEFAULT_EXPECTED = "expected a URL such as http://localhost:8000"

# ``scheme://`` (or ``//`` at the start), then the authority: up to the first ``/``, ``?`` or
# ``#``, as URL parsers split it, or a space (in a message that quotes the URL). Its userinfo
# is everything up to the authority's last ``@`` (``user:p@ss@host``: the password is ``p@ss``).
_AUTHORITY = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://|^\s*//)(?P<authority>[^/?#\s]*)")
# A URL typed without a scheme (``user:pw@host:8000``): the same, from the start.
_BARE_AUTHORITY = re.compile(r"^(?P<head>\s*)(?P<authority>[^/?#\s]*)")


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``, for anything printed, logged or exported.

    Never raises: also for text too broken to parse (an error message quotes what the user
    gave). Nothing else changes. In a message that quotes URLs (``scheme://...``), every one
    of them loses its userinfo; :func:`scrub` does that and takes out registered secrets too.
    """
    out = _AUTHORITY.sub(_drop_userinfo, url)
    if out == url and "//" not in url and len(url.split()) == 1:
        out = _BARE_AUTHORITY.sub(_drop_userinfo, url, count=1)
    return out


def _drop_userinfo(match: re.Match[str]) -> str:
    return match["head"] + match["authority"].rpartition("@")[2]


def split_url(text: str, *, flag: str = "--url", expected: str = DEFAULT_EXPECTED) -> SplitResult:
    """Check an ``http(s)`` URL the user gave with ``flag`` and return its parts.

    ``http://`` is added when there is no scheme. Refused, each with one line that names
    ``flag`` and shows the URL without its password: control characters and spaces, text
    that cannot be parsed, a scheme other than ``http``/``https``, a port outside 1-65535 and
    a URL without a host (``expected`` says what was wanted then).
    """
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    shown = _shown(text)
    if _has_control(raw):
        raise UsageError(f"{flag}: must not contain control characters or spaces (got {shown!r})")
    try:
        parts = urlsplit(raw)
    except ValueError as exc:
        # "Invalid IPv6 URL" (an unclosed [), or characters that read as "/", "@", ... once
        # normalised; the latter message quotes the host, password and all.
        reason = exc if "IPv6" in str(exc) else "characters that are not allowed in a host"
        raise UsageError(f"{flag}: not a valid URL ({reason}) (got {shown!r})") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"{flag}: expected an http:// or https:// URL (got {shown!r})")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(
            f"{flag}: the port is not a number between 1 and 65535 (got {shown!r})"
        ) from None
    if not parts.hostname or port == 0:
        raise UsageError(f"{flag}: {expected} (got {shown!r})")
    return parts


def normalize_url(
    text: str,
    *,
    flag: str = "--url",
    expected: str = DEFAULT_EXPECTED,
    default_port: int | None = None,
    default_path: str = "",
) -> str:
    """A URL the user gave, checked (see :func:`split_url`) and in one canonical form.

    ``localhost:8000`` -> ``http://localhost:8000``: the scheme lower-case, no ``/`` at the
    end of the path, no fragment; the query is kept. ``default_port`` is added when the URL
    names no port, ``default_path`` when it has no path. Normalising a normalised URL changes
    nothing. The userinfo is kept (the client needs it): show :func:`strip_userinfo` of it.
    """
    parts = split_url(text, flag=flag, expected=expected)
    netloc = parts.netloc
    if parts.port is None:
        netloc = netloc.removesuffix(":")  # ``host:`` names no port
        if default_port is not None:
            netloc = f"{netloc}:{default_port}"
    path = parts.path.rstrip("/") or default_path
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _shown(text: str) -> str:
    """A URL as an error message may quote it: even when the userinfo cannot be told apart
    from the rest (``http:/user:pw@host``), nothing before an ``@`` is shown."""
    shown = strip_userinfo(text.strip())
    if "@" in shown:
        shown = f"{REDACTED}@{shown.rsplit('@', 1)[1]}"
    return shown


def _has_control(text: str, allow_space: bool = False) -> bool:
    """Control characters (a newline could forge a log line or a header) and, unless
    ``allow_space``, whitespace."""
    import unicodedata

    return any(
        unicodedata.category(c) in ("Cc", "Zl", "Zp") or (c.isspace() and not allow_space)
        for c in text
    )


def scrub(text: str) -> str:
    """``text`` with no ``user:password@`` in any URL and no registered secret (an API key, a
    password given in a URL) anywhere; text cut short that ends in the first characters of a
    secret loses those too. For anything a plugin logs, exports or sends."""
    from aiperf._redact import scrub_secrets

    return scrub_secrets(strip_userinfo(text))


def describe_error(exc: BaseException, *, limit: int | None = 200) -> str:
    """One line about a failure, for a log, a warning or an export: ``ConnectError: Connection
    refused``.

    An exception group stands for its first error. When the operating system named the cause
    of a wrapper anywhere down the ``__cause__``/``__context__`` chain, its words
    (``Connection refused``, or ``timed out``) stand for the wrappers around it; otherwise the
    first line of the message (an ``OSError``'s own names its file), cut to ``limit``
    characters unless that is ``None``. Passed through :func:`scrub`.
    """
    exc = _first_error(exc)
    own_words = isinstance(exc, OSError) and exc.strerror
    reason = None if own_words else os_reason(exc, timeouts=True)
    if reason is None:
        # Scrubbed before it is cut: a cut inside a URL's userinfo or a secret would hide
        # from the scrubber what is left of it.
        text = scrub(str(exc)).strip()
        reason = text.splitlines()[0] if text else ""
        if limit is not None and len(reason) > limit:
            reason = reason[: limit - 3] + "..."
    name = type(exc).__name__
    return scrub(f"{name}: {reason}" if reason else name)


def os_reason(exc: BaseException, *, timeouts: bool = False) -> str | None:
    """What the operating system said about a failure anywhere down its cause chain
    (``Connection reset by peer``), the deepest such cause winning; with ``timeouts``, also
    ``timed out`` for a timeout there. ``None`` when neither is found."""
    found: str | None = None
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.strerror:
            found = cause.strerror
        elif timeouts and (
            isinstance(cause, TimeoutError) or type(cause).__name__.endswith("Timeout")
        ):
            found = "timed out"
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, each once (a chain may loop); a group is followed into its
    first error."""
    seen: set[int] = set()
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        group = current.exceptions if isinstance(current, BaseExceptionGroup) else ()
        current = group[0] if group else (current.__cause__ or current.__context__)
    return out


def _first_error(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON so that a reader (or a crash) never sees half a file.

    Values JSON does not know are written as their ``str()``. On a full disk the data is tried
    once more without indentation. Raises :class:`ArtifactWriteError` (one line: the path and
    the errno) when the file could not be written; no ``NAME.tmp`` is left behind.
    """
    from aiperf._exporters import write_json

    return write_json(Path(path), data)


def __getattr__(name: str) -> Any:
    # ``write_text_atomic`` and ``ArtifactWriteError`` live with the exporters, which import
    # more than an options module should pay for: loaded on first use.
    if name in ("write_text_atomic", "ArtifactWriteError"):
        from aiperf import _exporters

        return getattr(_exporters, name)
    raise AttributeError(f"module 'aiperf.urls' has no attribute {name!r}")
