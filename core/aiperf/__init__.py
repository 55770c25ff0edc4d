"""aiperf: benchmark LLM inference servers, and stream the numbers into your observability stack.

The public API for plugins is what this module exports. Names load lazily so that
``aiperf --help`` imports almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiperf.hookspecs import hookimpl

__version__ = "0.1.0"

_EXPORTS = {
    # errors
    "AiperfError": "aiperf._types",
    "UsageError": "aiperf._types",
    "RunFailure": "aiperf._types",
    "MissingExtra": "aiperf._types",
    # values
    "Phase": "aiperf._types",
    "RunStatus": "aiperf._types",
    "Prompt": "aiperf._types",
    "Usage": "aiperf._types",
    "ResponseData": "aiperf._types",
    "ErrorInfo": "aiperf._types",
    "RequestRecord": "aiperf._types",
    "RequestMetrics": "aiperf._types",
    "RequestDone": "aiperf._types",
    "Progress": "aiperf._types",
    "PhaseChanged": "aiperf._types",
    "HardwareSample": "aiperf._types",
    "LiveEvent": "aiperf._types",
    "RunContext": "aiperf._types",
    "MetricStats": "aiperf._types",
    "ErrorSummary": "aiperf._types",
    "ReportSection": "aiperf._types",
    "RunResult": "aiperf._types",
    # plugin interfaces
    "EndpointType": "aiperf._types",
    "LoadContext": "aiperf._types",
    "LoadStrategy": "aiperf._types",
    "LoadStrategyType": "aiperf._types",
    "RecordProcessor": "aiperf._types",
    "LiveSink": "aiperf._types",
    "Sampler": "aiperf._types",
    "SamplerContext": "aiperf._types",
    "Exporter": "aiperf._types",
    "Tokenizer": "aiperf._types",
    "Dataset": "aiperf._types",
    "DatasetType": "aiperf._types",
    "Command": "aiperf._types",
    # config and metrics
    "ProfileConfig": "aiperf._config",
    "METRICS": "aiperf._metrics",
    "MetricSpec": "aiperf._metrics",
    "infer_provider": "aiperf._provider",
    "is_secret_header": "aiperf._config",
    "strip_userinfo": "aiperf._config",
    "REDACTED": "aiperf._config",
    "scrub_secrets": "aiperf._redact",
    "announce_artifacts": "aiperf._plugins",
    "record_artifacts": "aiperf._rundir",
    "run_artifacts": "aiperf._rundir",
}

__all__ = ["__version__", "hookimpl", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aiperf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # the names above, for type checkers and editors
    from aiperf._config import REDACTED, ProfileConfig, is_secret_header, strip_userinfo  # noqa: F401
    from aiperf._metrics import METRICS, MetricSpec  # noqa: F401
    from aiperf._plugins import announce_artifacts  # noqa: F401
    from aiperf._provider import infer_provider  # noqa: F401
    from aiperf._redact import scrub_secrets  # noqa: F401
    from aiperf._types import *  # noqa: F403
