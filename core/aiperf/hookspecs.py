"""Every hook aiperf calls, in the order a run calls them.

Read top to bottom: options -> configure -> register -> run start -> run finish -> artifacts,
then the hooks of ``aiperf compare``.

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
    from aiperf._compare import ComparisonReport
    from aiperf._config import ProfileConfig
    from aiperf._conversations import ConversationSet
    from aiperf._engine import RemoteLoad
    from aiperf._metrics import MetricSpec
    from aiperf._options import PluginOptions
    from aiperf._sweep import SweepContext
    from aiperf._types import (
        Command,
        DatasetType,
        EndpointType,
        Exporter,
        LiveSink,
        LoadStrategyType,
        Prompt,
        RecordProcessor,
        RunContext,
        RunResult,
        RunStatus,
        RunWriter,
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
def aiperf_register_options(register: Callable[[PluginOptions], None]) -> None:
    """Declare this plugin's ``aiperf profile`` options as one frozen attrs class.

    Each field is made with :func:`aiperf.option` (its flag, help, optional environment
    variable and parser). The core adds the flags, reads the config file's ``[plugins.NAME]``
    table and the variables, builds the class with its cattrs converter (flag > variable >
    file > default) and reports every bad value of every plugin at once, one line each.
    Read the values back with :func:`aiperf.read_options`.

    :param register: call with an :class:`aiperf.PluginOptions`; a name already taken is an
        error naming both plugins.
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


@hookspec
def aiperf_register_metrics(register: Callable[[MetricSpec], None]) -> None:
    """Declare metrics: what a record processor records under a tag, and how to show it.

    A registered metric is summarised and shown in every output (console, JSON, CSV,
    MLflow, and OTel for request metrics) with no other code: ``kind="request"`` gives a
    distribution like the core's per-request metrics, ``kind="run"`` one value per run made
    from the per-request values by ``summary`` (``sum``, ``avg``, ``min``, ``max``, ``rate``).
    The core registers its own table (:data:`aiperf.METRICS`) here too. Values recorded
    under a tag nobody registered go to ``profile_export.jsonl`` only.

    :param register: call with an :class:`aiperf.MetricSpec`; a tag already taken is an
        error naming both plugins.
    """


# -- run start -------------------------------------------------------------------------------


@hookspec
def aiperf_run_started(run: RunContext) -> None:
    """Notification: the run directory exists and the benchmark is about to start.

    :param run: the run's context (config, run directory, benchmark id, clock anchor).
    """


@hookspec
def aiperf_run_writers(config: ProfileConfig, run: RunContext) -> Sequence[RunWriter] | None:
    """Return the files written while the run goes (the built-in plugin writes
    ``inputs.json``, the first ``metadata.json`` and ``profile_export.jsonl`` this way).

    Each writer's ``open(run)`` runs before the load and its optional ``write(record,
    metrics)`` once per request, in the bookkeeping of the process that times the requests:
    keep it to microseconds. A ``wrapper=True`` implementation can drop or replace a writer,
    the built-ins too (by ``name``: ``inputs``, ``metadata``, ``jsonl``).

    :param config: the run configuration.
    :param run: the run's context.
    :returns: writers, or ``None``.
    """


@hookspec
def aiperf_live_sinks(config: ProfileConfig, run: RunContext) -> Sequence[LiveSink] | None:
    """Return live sinks to feed from the live bus during the run (OTel, MLflow, ...).

    Each sink gets its own bounded channel and task: when it falls behind, events are dropped
    and counted, and the requests never wait. Sinks run in the ``aiperf profile`` process;
    whenever one is on, the load runs in a worker process, so a sink's threads never compete
    with the loop that times the requests. A sink that is cheap (no threads, microseconds per
    event) says so with ``in_process = True`` and leaves the load where it is: the built-in
    progress line is one. ``events`` (a tuple of event types) limits what reaches a sink.

    :param config: the run configuration.
    :param run: the run's context.
    :returns: sinks to run, or ``None``.
    """


@hookspec(firstresult=True)
def aiperf_remote_load(
    config: ProfileConfig,
    prompts: Sequence[Prompt],
    bodies: Sequence[bytes],
    conversations: ConversationSet | None,
    yield_cpu: bool,
) -> RemoteLoad | None:
    """Return the object that runs this run's load somewhere else than here (the machines of
    a cluster), or ``None`` to leave it to aiperf (here, or in ``--workers`` processes).

    The first plugin that returns one wins. It has ``run(engine)`` (async: the whole load,
    feeding every finished request into the engine), ``stop(signum)`` (Ctrl-C: stop the
    workers, keep what they finished) and ``kill()`` (a second Ctrl-C), and ``specs``, one per
    worker. :class:`aiperf.WorkerPool` is the coordinator's side to subclass (its transport
    methods replaced), :func:`aiperf.make_worker_specs` divides the load, and
    :class:`aiperf.Worker` runs one share where the load runs.

    :param config: the run configuration.
    :param prompts: the prompts, made once here.
    :param bodies: the request bodies, made once here.
    :param conversations: the sessions of a conversation run, or ``None``.
    :param yield_cpu: live sinks run here: step back in the CPU queue once the load runs.
    :returns: the remote load, or ``None``.
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


# -- sweeps ----------------------------------------------------------------------------------


@hookspec
def aiperf_sweep_started(sweep: SweepContext) -> dict[str, Any] | None:
    """A sweep, repeats or a search is about to run its first point (docs/sweeps.md).

    Every point is then a run of its own, with the run hooks above. aiperf-mlflow creates the
    parent run here and returns its id, so that each point becomes a child run.

    :param sweep: the sweep's context (kind, directory, what varies, the base config).
    :returns: plugin options every point's config gets (``{"mlflow_parent_run_id": ...}``),
        or ``None``.
    """


@hookspec
def aiperf_sweep_point_finished(sweep: SweepContext, point: dict[str, Any]) -> None:
    """Notification: one point of a sweep is over and its row is in the summary file.

    :param sweep: the sweep's context; ``sweep.points`` ends with this point.
    :param point: the point's row: ``index``, ``values`` (``{"concurrency": 4}``), ``run_dir``,
        ``status`` (``"ok"`` or ``"failed"``), ``metrics`` (avg, p50, p90, p99 per metric).
    """


@hookspec
def aiperf_sweep_finished(sweep: SweepContext, paths: Sequence[Path], status: RunStatus) -> None:
    """Notification: the sweep is over (done, or stopped by a signal) and its summary files
    are written.

    :param sweep: the sweep's context.
    :param paths: the summary files (``sweep_summary.json``, ``.csv``, the aggregate of repeats).
    :param status: ``FINISHED`` when every point succeeded, ``FAILED`` when one failed,
        ``KILLED`` when a signal stopped it.
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


# -- compare ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def aiperf_fetch_run(ref: str, dest: Path, options: dict[str, Any]) -> Path | None:
    """Fetch a run that is not a local directory, for ``aiperf compare`` (aiperf-mlflow fetches
    ``mlflow:<run id>``).

    Return ``None`` when ``ref`` is not yours. Otherwise copy the run's files (at least
    ``profile_export.jsonl``) into ``dest`` and return the run directory (``dest`` or a folder
    in it). Raise :class:`aiperf.UsageError` with one line when ``ref`` is yours but cannot be
    fetched (no such run, store unreachable).

    :param ref: the RUN argument as given.
    :param dest: an empty directory, removed once the comparison is done.
    :param options: ``aiperf compare``'s parsed options, as a dict (flags plugins added too).
    :returns: the run directory, or ``None``.
    """


@hookspec
def aiperf_compared(report: ComparisonReport, options: dict[str, Any]) -> Sequence[Path] | None:
    """Notification: ``aiperf compare`` has its result (aiperf-plot draws it with ``--plot``).

    :param report: every comparison (rows with differences, intervals and verdicts) and the
        ``--fail-if`` results; the same content ``--json`` writes.
    :param options: ``aiperf compare``'s parsed options, as a dict.
    :returns: files written (the command prints them), or ``None``.
    """
