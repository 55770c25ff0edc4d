"""Is anything listening where the collector should be? Asked once, before the benchmark."""

from __future__ import annotations

import httpx


def probe_collector(url: str, timeout_s: float) -> bool:
    """``True`` when an HTTP server answers at ``url``, whatever its status.

    Blocking: call it through ``trio.to_thread.run_sync``. Only reachability is checked; TLS
    trust and credentials are the exporter's business, and their failures are counted there.
    """
    try:
        with httpx.Client(timeout=timeout_s, verify=False) as client:
            client.get(url)
    except httpx.HTTPError:
        return False
    return True
