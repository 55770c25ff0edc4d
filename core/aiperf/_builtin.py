"""The built-in plugin: endpoints, load strategies, datasets, processors and exporters that ship
with aiperf, registered through the same hooks a third-party plugin uses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiperf.hookspecs import hookimpl

if TYPE_CHECKING:
    from aiperf._config import ProfileConfig
    from aiperf._types import Command, Exporter, RunContext


@hookimpl
def aiperf_register_commands(register: Callable[[Command], None]) -> None:
    from aiperf import mock_server
    from aiperf._types import Command

    register(
        Command(
            name="mock-server",
            help="run an OpenAI-compatible mock server that reports its own timing (/stats)",
            add_arguments=mock_server.add_arguments,
            run=mock_server.main,
        )
    )


@hookimpl
def aiperf_register_endpoints(register: Callable[[Any], None]) -> None:
    from aiperf import _endpoints

    for endpoint in (_endpoints.CHAT, _endpoints.COMPLETIONS, _endpoints.EMBEDDINGS):
        register(endpoint)


@hookimpl
def aiperf_register_load_strategies(register: Callable[[Any], None]) -> None:
    from aiperf import _strategies

    for strategy in (_strategies.CONCURRENCY, _strategies.CONSTANT, _strategies.POISSON):
        register(strategy)


@hookimpl
def aiperf_register_datasets(register: Callable[[Any], None]) -> None:
    from aiperf import _datasets

    register(_datasets.SYNTHETIC)
    register(_datasets.INPUT_FILE)


@hookimpl
def aiperf_register_record_processors(register: Callable[[Any], None]) -> None:
    from aiperf._metrics import TimingProcessor

    register(TimingProcessor())


@hookimpl
def aiperf_exporters(config: ProfileConfig, run: RunContext) -> Sequence[Exporter]:
    from aiperf import _exporters

    return [
        _exporters.JsonExporter(),
        _exporters.CsvExporter(),
        _exporters.MetadataExporter(),
        _exporters.ConsoleExporter(),
    ]
