"""What of a run goes into MLflow as params and tags, with no secret in any of it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiperf import RunContext, strip_userinfo

#: MLflow's limits (values are truncated by the server anyway; we truncate first so the
#: batch is not rejected on an old server).
PARAM_VALUE_MAX = 6000
KEY_MAX = 250

def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"a.b": "value"}``; lists become JSON; ``None`` is left out.

    Secrets are already ``***`` in the core's redacted config; URLs inside values (a tracking
    URI, a collector URL) lose their userinfo here as well.
    """
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, (list, tuple)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        out[name[:KEY_MAX]] = strip_userinfo(text)[:PARAM_VALUE_MAX]
    return out


def run_params(run: RunContext) -> dict[str, str]:
    """The benchmark configuration, from the core's redacted copy only."""
    return flatten_params(run.redacted_config())


def run_tags(run: RunContext, user_tags: tuple[tuple[str, str], ...]) -> dict[str, str]:
    config = run.config
    tags = {
        "gen_ai.provider.name": run.provider,
        "gen_ai.request.model": config.model,
        "gen_ai.operation.name": run.operation_name,
        "aiperf.endpoint_type": config.endpoint_type,
        "aiperf.load_setting": run.load_setting,
        "aiperf.version": run.version,
        "aiperf.benchmark_id": run.benchmark_id,
        "server.address": run.server_address,
        "server.port": str(run.server_port),
    }
    tags.update(user_tags)
    return tags
