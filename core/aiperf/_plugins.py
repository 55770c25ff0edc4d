"""The plugin host: loads plugins, keeps the registries, and is the only caller of ``pm.hook``.

Every hook is called through :class:`Plugins`, one method per hook, calling each plugin's
implementation on its own so that a failure can be blamed on the plugin by name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from aiperf import hookspecs
from aiperf._types import AiperfError, UsageError

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

ENTRY_POINT_GROUP = "aiperf"
DISABLE_ENV = "AIPERF_DISABLE_PLUGINS"
BUILTIN = "builtin"


class PluginError(AiperfError):
    """A plugin misbehaved; the message names it."""


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


@attrs.frozen
class LoadFailure:
    name: str
    error: str


def disabled_plugins() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


@attrs.define
class Plugins:
    """Typed facade over the pluggy manager."""

    pm: pluggy.PluginManager
    failures: list[LoadFailure] = attrs.field(factory=list)
    _dists: dict[str, tuple[str | None, str | None]] = attrs.field(factory=dict)
    _cache: dict[str, Any] = attrs.field(factory=dict)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, *, entry_points: bool = True, extra: Iterable[tuple[str, object]] = ()) -> Plugins:
        from aiperf import __version__, _builtin

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        plugins = cls(pm)
        pm.register(_builtin, name=BUILTIN)
        plugins._dists[BUILTIN] = ("aiperf", __version__)
        blocked = disabled_plugins()
        if entry_points:
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in blocked or pm.has_plugin(ep.name):
                    continue
                plugins._load_entry_point(ep)
        for name, obj in extra:
            if name not in blocked:
                pm.register(obj, name=name)
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or repr(exc.plugin)
            raise PluginError(f"plugin {name!r}: {exc} (a misspelled hook name?)") from None
        return plugins

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        try:
            module = ep.load()
            self.pm.register(module, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - any failure means: skip this plugin
            error = f"{type(exc).__name__}: {exc}"
            self.failures.append(LoadFailure(ep.name, error))
            from aiperf._logging import ensure_configured

            ensure_configured()
            import structlog

            structlog.get_logger().warning("plugin_failed_to_load", plugin=ep.name, error=error)
            return
        dist = ep.dist
        self._dists[ep.name] = (dist.name if dist else None, dist.version if dist else None)

    def describe(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            dist, version = self._dists.get(name, (None, None))
            infos.append(PluginInfo(name, dist, version, hooks))
        return sorted(infos, key=lambda i: (i.name != BUILTIN, i.name))

    def loaded(self, name: str) -> bool:
        return self.pm.get_plugin(name) is not None

    # -- calling ---------------------------------------------------------------------------

    def _each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a hook, in registration order, naming failures."""
        caller = getattr(self.pm.hook, hook_name)
        results = []
        # get_hookimpls() is in registration order: built-ins first.
        for impl in caller.get_hookimpls():
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                results.append((impl.plugin_name, impl.function(**args)))
            except AiperfError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
        return results

    def _registry(self, hook_name: str, kind: str) -> dict[str, Any]:
        if hook_name in self._cache:
            return self._cache[hook_name]
        items: dict[str, Any] = {}
        owners: dict[str, str] = {}
        current = [""]

        def register(item: Any) -> None:
            name = item.name
            if name in items:
                raise PluginError(
                    f"{kind} {name!r} is registered by both plugin {owners[name]!r} "
                    f"and plugin {current[0]!r}; uninstall or disable one "
                    f"({DISABLE_ENV}={current[0]})"
                )
            items[name] = item
            owners[name] = current[0]

        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            current[0] = impl.plugin_name
            try:
                impl.function(register=register)
            except AiperfError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
        self._cache[hook_name] = items
        return items

    def add_options(self, command: str, parser: argparse.ArgumentParser) -> None:
        self._each("aiperf_add_options", command=command, parser=parser)

    def commands(self) -> dict[str, Command]:
        return self._registry("aiperf_register_commands", "command")

    def configure(self, config: ProfileConfig) -> None:
        self._each("aiperf_configure", config=config)

    def endpoints(self) -> dict[str, EndpointType]:
        return self._registry("aiperf_register_endpoints", "endpoint type")

    def load_strategies(self) -> dict[str, LoadStrategyType]:
        return self._registry("aiperf_register_load_strategies", "load strategy")

    def datasets(self) -> dict[str, DatasetType]:
        return self._registry("aiperf_register_datasets", "dataset")

    def record_processors(self) -> list[RecordProcessor]:
        items = self._registry("aiperf_register_record_processors", "record processor")
        return sorted(items.values(), key=lambda p: p.order)

    def run_started(self, run: RunContext) -> None:
        self._each("aiperf_run_started", run=run)

    def live_sinks(self, config: ProfileConfig, run: RunContext) -> list[LiveSink]:
        return _flatten(self._each("aiperf_live_sinks", config=config, run=run))

    def samplers(self, config: ProfileConfig, run: RunContext) -> list[Sampler]:
        return _flatten(self._each("aiperf_samplers", config=config, run=run))

    def exporters(self, config: ProfileConfig, run: RunContext) -> list[Exporter]:
        found = _flatten(self._each("aiperf_exporters", config=config, run=run))
        return sorted(found, key=lambda e: e.order)

    def run_finished(self, run: RunContext, result: RunResult) -> None:
        self._each("aiperf_run_finished", run=run, result=result)

    def artifacts_written(self, run_dir: Path, paths: Sequence[Path], options: dict[str, Any]) -> None:
        self._each("aiperf_artifacts_written", run_dir=run_dir, paths=paths, options=options)


_current: Plugins | None = None


def current() -> Plugins:
    """The plugin host of this process (the CLI's), loaded on first use."""
    global _current
    if _current is None:
        _current = Plugins.load()
    return _current


def set_current(plugins: Plugins | None) -> None:
    global _current
    _current = plugins


def announce_artifacts(run_dir: Path, paths: Sequence[Path], options: dict[str, Any]) -> None:
    """Tell every plugin that files were written into ``run_dir`` (calls
    :func:`~aiperf.hookspecs.aiperf_artifacts_written`)."""
    current().artifacts_written(Path(run_dir), [Path(p) for p in paths], dict(options))


def _flatten(results: list[tuple[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for _plugin, value in results:
        if value:
            out.extend(value)
    return out


def plugins_command_output(plugins: Plugins, write: Callable[[str], Any] | None = None) -> None:
    """``aiperf plugins``: what is loaded, from which distribution, with which hooks."""
    # Looked up at call time: with stdout closed at start, sys.stdout is None until the CLI
    # reopens it, and an import must not fail on that.
    write = write or sys.stdout.write
    for info in plugins.describe():
        version = f"{info.distribution} {info.version}" if info.distribution else "(not installed)"
        write(f"{info.name}  {version}\n")
        for hook in info.hooks:
            write(f"    {hook}\n")
    for failure in plugins.failures:
        write(f"{failure.name}  FAILED TO LOAD: {failure.error}\n")
    blocked = disabled_plugins()
    if blocked:
        write(f"disabled by {DISABLE_ENV}: {', '.join(sorted(blocked))}\n")


__all__ = ["Plugins", "PluginError", "PluginInfo", "UsageError", "ENTRY_POINT_GROUP"]
