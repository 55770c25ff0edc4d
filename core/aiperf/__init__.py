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
    "ServerMetricSample": "aiperf._types",
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
    "RunWriter": "aiperf._types",
    "Tokenizer": "aiperf._types",
    "Dataset": "aiperf._types",
    "DatasetType": "aiperf._types",
    "Command": "aiperf._types",
    "SweepContext": "aiperf._sweep",
    # for endpoint plugins: a response that is not the API's shape
    "ParseError": "aiperf._endpoints",
    "ServerErrorBody": "aiperf._endpoints",
    "EventOrderError": "aiperf._endpoints",
    "IGNORED": "aiperf._endpoints",
    # config and metrics
    "ProfileConfig": "aiperf._config",
    # plugin options: one frozen attrs class per plugin (docs/plugins.md)
    "option": "aiperf._options",
    "PluginOptions": "aiperf._options",
    "read_options": "aiperf._options",
    "given_options": "aiperf._options",
    "METRICS": "aiperf._metrics",
    "MetricSpec": "aiperf._metrics",
    "infer_provider": "aiperf._provider",
    "is_secret_header": "aiperf._config",
    "scrub_secrets": "aiperf._redact",
    "announce_artifacts": "aiperf._plugins",
    "record_artifacts": "aiperf._rundir",
    "run_artifacts": "aiperf._rundir",
    # aiperf compare's result, as plugins get it (aiperf_compared)
    "ComparisonReport": "aiperf._compare",
    "Comparison": "aiperf._compare",
    "ComparisonRow": "aiperf._compare",
    # URLs and secrets (aiperf.urls): check a URL, show it without its password, keep secrets
    # out of text, describe a failure in one line
    "normalize_url": "aiperf.urls",
    "split_url": "aiperf.urls",
    "strip_userinfo": "aiperf.urls",
    "scrub": "aiperf.urls",
    "describe_error": "aiperf.urls",
    "REDACTED": "aiperf.urls",
    # for exporters: files a crash or a full disk never leaves half-written
    "write_json_atomic": "aiperf.urls",
    "write_text_atomic": "aiperf._exporters",
    "ArtifactWriteError": "aiperf._exporters",
    # for plugins that run the load elsewhere (aiperf_remote_load): the workers' shares, one
    # worker's engine and loop, the coordinator's side
    "WorkerSpec": "aiperf._workers",
    "Worker": "aiperf._workers",
    "WorkerPool": "aiperf._workers",
    "make_worker_specs": "aiperf._workers",
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
    # "X as X": re-exported, so that a plugin checked with mypy --strict may import them
    from aiperf._compare import Comparison as Comparison
    from aiperf._compare import ComparisonReport as ComparisonReport
    from aiperf._compare import ComparisonRow as ComparisonRow
    from aiperf._config import ProfileConfig as ProfileConfig
    from aiperf._config import is_secret_header as is_secret_header
    from aiperf._endpoints import IGNORED as IGNORED
    from aiperf._endpoints import EventOrderError as EventOrderError
    from aiperf._endpoints import ParseError as ParseError
    from aiperf._endpoints import ServerErrorBody as ServerErrorBody
    from aiperf._exporters import ArtifactWriteError as ArtifactWriteError
    from aiperf._exporters import write_text_atomic as write_text_atomic
    from aiperf._metrics import METRICS as METRICS
    from aiperf._metrics import MetricSpec as MetricSpec
    from aiperf._options import PluginOptions as PluginOptions
    from aiperf._options import given_options as given_options
    from aiperf._options import option as option
    from aiperf._options import read_options as read_options
    from aiperf._plugins import announce_artifacts as announce_artifacts
    from aiperf._provider import infer_provider as infer_provider
    from aiperf._redact import scrub_secrets as scrub_secrets
    from aiperf._rundir import record_artifacts as record_artifacts
    from aiperf._rundir import run_artifacts as run_artifacts
    from aiperf._sweep import SweepContext as SweepContext
    from aiperf._types import *  # noqa: F403
    from aiperf._workers import Worker as Worker
    from aiperf._workers import WorkerPool as WorkerPool
    from aiperf._workers import WorkerSpec as WorkerSpec
    from aiperf._workers import make_worker_specs as make_worker_specs
    from aiperf.urls import REDACTED as REDACTED
    from aiperf.urls import describe_error as describe_error
    from aiperf.urls import normalize_url as normalize_url
    from aiperf.urls import scrub as scrub
    from aiperf.urls import split_url as split_url
    from aiperf.urls import strip_userinfo as strip_userinfo
    from aiperf.urls import write_json_atomic as write_json_atomic
