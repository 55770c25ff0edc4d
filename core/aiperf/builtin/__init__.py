"""The built-in plugin: commands, endpoints, load strategies, datasets, processors and exporters
that ship with aiperf, registered through the same hooks a third-party plugin uses.

This module holds only hook implementations and imports nothing heavy (``aiperf --help``
imports it); each hook imports what it registers when it is called.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiperf.hookspecs import hookimpl

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Command, Exporter, LiveSink, RunContext, RunWriter


@hookimpl
def aiperf_register_commands(register: Callable[[Command], None]) -> None:
    from aiperf.builtin import commands

    for command in commands.commands():
        register(command)


# tryfirst: pluggy calls the plugins loaded last first; the core's flags come first in --help.
@hookimpl(tryfirst=True)
def aiperf_add_options(command: str, parser: argparse.ArgumentParser) -> None:
    if command != "profile":
        return
    from aiperf import _workload
    from aiperf._apis import options

    options.add_options(parser)
    _workload.add_options(parser)


@hookimpl
def aiperf_configure(config: ProfileConfig) -> None:
    from aiperf import _workload
    from aiperf._apis import options

    options.of(config)  # every bad value of these flags is one line here, before the run
    _workload.check(config)


@hookimpl
def aiperf_register_endpoints(register: Callable[[Any], None]) -> None:
    from aiperf import _endpoints
    from aiperf._apis import images, messages, nim_embeddings, rankings, responses, template, tgi

    for endpoint in (
        _endpoints.CHAT,
        _endpoints.COMPLETIONS,
        _endpoints.EMBEDDINGS,
        responses.RESPONSES,
        messages.MESSAGES,
        tgi.GENERATE,
        rankings.NIM,
        rankings.COHERE,
        rankings.TEI,
        images.IMAGE_GENERATION,
        nim_embeddings.NIM_EMBEDDINGS,
        template.TEMPLATE,
    ):
        register(endpoint)


@hookimpl
def aiperf_register_load_strategies(register: Callable[[Any], None]) -> None:
    from aiperf import _arrivals, _schedule, _strategies

    for strategy in (_strategies.CONCURRENCY, _strategies.CONSTANT, _strategies.POISSON, _arrivals.GAMMA):
        register(strategy)
    register(_schedule.FIXED_SCHEDULE)


@hookimpl
def aiperf_register_datasets(register: Callable[[Any], None]) -> None:
    from aiperf import _datasets, _formats, _sharegpt

    register(_datasets.SYNTHETIC)
    register(_formats.INPUT_FILE)  # every --custom-dataset-type (see _formats.py)
    register(_sharegpt.SHAREGPT)


@hookimpl
def aiperf_register_record_processors(register: Callable[[Any], None]) -> None:
    from aiperf._metrics import TimingProcessor

    register(TimingProcessor())


@hookimpl
def aiperf_register_metrics(register: Callable[[Any], None]) -> None:
    from aiperf._metrics import METRICS

    for spec in METRICS.values():
        register(spec)


@hookimpl
def aiperf_live_sinks(config: ProfileConfig, run: RunContext) -> Sequence[LiveSink] | None:
    import sys

    from aiperf.builtin.progress import ProgressLine

    # --progress, or by default whether stderr is a terminal.
    if not (config.progress if config.progress is not None else sys.stderr.isatty()):
        return None
    return [ProgressLine(sys.stderr)]


@hookimpl
def aiperf_samplers(config: ProfileConfig, run: RunContext) -> Sequence[Any] | None:
    if not config.fixed_schedule:
        return None
    from aiperf._schedule import ScheduleReport

    return [ScheduleReport()]


@hookimpl
def aiperf_run_writers(config: ProfileConfig, run: RunContext) -> Sequence[RunWriter]:
    from aiperf.builtin.exporters import FirstMetadata, InputsFile
    from aiperf.builtin.jsonl import JsonlRecords

    return [InputsFile(), FirstMetadata(), JsonlRecords()]


@hookimpl
def aiperf_exporters(config: ProfileConfig, run: RunContext) -> Sequence[Exporter]:
    from aiperf.builtin import exporters

    return [
        exporters.JsonExporter(),
        exporters.CsvExporter(),
        exporters.MetadataExporter(),
        exporters.ConsoleExporter(),
    ]
