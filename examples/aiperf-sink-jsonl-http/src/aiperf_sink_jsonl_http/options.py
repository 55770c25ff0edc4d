"""The plugin's one option, declared once: aiperf builds it from the flag or the config file's
``[plugins.jsonl-http]`` table, and reports a bad value in one line naming the flag."""

from urllib.parse import urlsplit

import attrs
from aiperf import UsageError, option


def http_url(value):
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        # the value is not repeated: a URL may carry a password
        raise UsageError("--jsonl-http-url: expected an http:// or https:// URL")
    return value


@attrs.frozen(kw_only=True)
class JsonlHttpOptions:
    url: str | None = option(
        "--jsonl-http-url",
        metavar="URL",
        parse=http_url,
        help="POST every finished request to URL as a JSON line (application/x-ndjson)",
    )
