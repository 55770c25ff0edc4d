"""The engine name table (``engines.toml``): each engine's metric names -> common names."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from importlib import resources

import attrs

TABLE_FILE = "engines.toml"


@attrs.frozen(kw_only=True)
class Common:
    """A name that means the same on every engine (``requests_running``, ``server_ttft``)."""

    name: str
    kind: str
    unit: str
    description: str


@attrs.frozen(kw_only=True)
class EngineName:
    engine: str
    metric: str
    common: str
    source: str


@attrs.frozen(kw_only=True)
class NameTable:
    commons: Mapping[str, Common]
    names: tuple[EngineName, ...]
    #: metric name without a trailing ``_total`` -> its entry.
    by_metric: Mapping[str, EngineName]

    def lookup(self, metric: str) -> EngineName | None:
        """The entry for a family or sample name; a counter matches with or without ``_total``."""
        return self.by_metric.get(base_name(metric))

    def engines(self) -> list[str]:
        return sorted({n.engine for n in self.names})


def base_name(metric: str) -> str:
    return metric.removesuffix("_total")


def parse_table(text: str) -> NameTable:
    data = tomllib.loads(text)
    commons = {
        name: Common(
            name=name, kind=spec["kind"], unit=spec["unit"], description=spec["description"]
        )
        for name, spec in data["common"].items()
    }
    names = tuple(
        EngineName(
            engine=entry["engine"],
            metric=entry["metric"],
            common=entry["common"],
            source=entry["source"],
        )
        for entry in data["name"]
    )
    by_metric: dict[str, EngineName] = {}
    for entry in names:
        if entry.common not in commons:
            raise ValueError(f"{TABLE_FILE}: {entry.metric} maps to unknown {entry.common!r}")
        key = base_name(entry.metric)
        if key in by_metric:
            raise ValueError(f"{TABLE_FILE}: {entry.metric} is listed twice")
        by_metric[key] = entry
    return NameTable(commons=commons, names=names, by_metric=by_metric)


@functools.cache
def table() -> NameTable:
    text = resources.files("aiperf_server_metrics").joinpath(TABLE_FILE).read_text("utf-8")
    return parse_table(text)
