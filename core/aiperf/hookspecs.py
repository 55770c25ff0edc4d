"""Every hook aiperf calls, in the order a run calls them.

Read top to bottom: options -> configure -> register -> run start -> run finish -> artifacts.

Hooks are synchronous (pluggy cannot await) and are called at start-up and at lifecycle
edges only, never once per request. Anything asynchronous lives in the objects a hook returns
(live sinks, samplers); the core runs those in its own nursery and feeds them through bounded
channels, so a slow plugin can lose telemetry but never delay a request.

A plugin is a module (or object) with functions decorated by :data:`aiperf.hookimpl`, published
under the entry-point group ``aiperf``. Implement only the hooks you need.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import (
        Command,
        DatasetType,
        EndpointType,
        Exporter,
        LiveSink,
        LoadStrategyType,
        RecordProcessor,
        RunContext,
        RunResult,
        Sampler,
    )

PROJECT = "aiperf"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- options ---------------------------------------------------------------------------------


@hookspec
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    """Add command-line flags to a subcommand.

    Called once per subcommand while the CLI is built (``aiperf --help`` calls it too, so
    import nothing heavy here). Put your flags in your own group:
    ``group = parser.add_argument_group("OTel")``. Values of flags added to ``profile`` reach
    you as ``config.plugin_options[dest]``.

    :param command: the subcommand being built, e.g. ``"profile"`` or ``"plot"``.
    :param parser: that subcommand's parser.
    """


@hookspec
def aiperf_register_commands(register: Callable[[Command], None]) -> None:
    """Add subcommands (``aiperf plot`` comes from aiperf-plot).

    :param register: call with an :class:`aiperf.Command`; a name already taken is an error
        naming both plugins.
    """


# -- configure -------------------------------------------------------------------------------


@hookspec
def aiperf_configure(config: ProfileConfig) -> None:
    """Check this plugin's options once the profile config is built.

    Raise :class:`aiperf.UsageError` with one line naming the flag for bad input; the CLI prints
    it and exits 2. Also the place to reject a flag whose backing package is missing.

    :param config: the frozen run configuration (``config.plugin_options`` holds plugin flags).
    """


# -- register --------------------------------------------------------------------------------


@hookspec
def aiperf_register_endpoints(register: Callable[[EndpointType], None]) -> None:
    """Register endpoint types (what ``--endpoint-type`` accepts).

    :param register: call with an :class:`aiperf.EndpointType`.
    """


@hookspec
def aiperf_register_load_strategies(register: Callable[[LoadStrategyType], None]) -> None:
    """Register load strategies (concurrency, request rate, ...).

    :param register: call with an :class:`aiperf.LoadStrategyType`.
    """


@hookspec
def aiperf_register_datasets(register: Callable[[DatasetType], None]) -> None:
    """Register prompt sources (synthetic, JSONL file, ...).

    :param register: call with an :class:`aiperf.DatasetType`.
    """


@hookspec
def aiperf_register_record_processors(register: Callable[[RecordProcessor], None]) -> None:
    """Register per-request metric computations.

    Processors run in ``order`` (lower first) on every finished request, off the request path.

    :param register: call with an object implementing :class:`aiperf.RecordProcessor`.
    """


# -- run start -------------------------------------------------------------------------------


@hookspec
def aiperf_run_started(run: RunContext) -> None:
    """Notification: the run directory exists and the benchmark is about to start.

    :param run: the run's context (config, run directory, benchmark id, clock anchor).
    """


@hookspec
def aiperf_live_sinks(config: ProfileConfig, run: RunContext) -> Sequence[LiveSink] | None:
    """Return live sinks to feed from the live bus during the run (OTel, MLflow, ...).

    Each sink gets its own bounded channel and task: when it falls behind, events are dropped
    and counted, and the requests never wait. Sinks run in the ``aiperf profile`` process;
    whenever one is on, the load runs in a worker process, so a sink's threads never compete
    with the loop that times the requests.

    :param config: the run configuration.
    :param run: the run's context.
    :returns: sinks to run, or ``None``.
    """


@hookspec
def aiperf_samplers(config: ProfileConfig, run: RunContext) -> Sequence[Sampler] | None:
    """Return background samplers (GPU telemetry, ...) that run beside the benchmark.

    :param config: the run configuration.
    :param run: the run's context.
    :returns: samplers to run, or ``None``.
    """


# -- run finish ------------------------------------------------------------------------------


@hookspec
def aiperf_exporters(config: ProfileConfig, run: RunContext) -> Sequence[Exporter] | None:
    """Return post-run exporters. They run ordered by ``order``: local files first
    (``order < 100``), uploads after (``order >= 100``).

    :param config: the run configuration.
    :param run: the run's context.
    :returns: exporters, or ``None``.
    """


@hookspec
def aiperf_run_finished(run: RunContext, result: RunResult) -> None:
    """Notification: every exporter has run.

    :param run: the run's context.
    :param result: the summary of the run.
    """


# -- artifacts -------------------------------------------------------------------------------


@hookspec
def aiperf_artifacts_written(run_dir: Path, paths: Sequence[Path], options: dict[str, Any]) -> None:
    """Announce files that a plugin wrote into a run directory after the run (plots, ...).

    Lets one plugin act on another's files without importing it: aiperf-plot announces its
    PNGs, aiperf-mlflow uploads them when ``options["mlflow_upload"]`` is true.

    :param run_dir: the run directory the files belong to.
    :param paths: the files written.
    :param options: the announcing command's parsed options, as a dict.
    """
