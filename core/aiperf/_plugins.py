"""The plugin host: loads plugins, keeps the registries, and is the only caller of ``pm.hook``.

Every hook is called through :class:`Plugins`, one method per hook, and pluggy calls the
implementations: ``tryfirst``, ``trylast``, ``wrapper=True`` and old-style ``hookwrapper``
implementations run exactly as pluggy documents. Each implementation is wrapped once, when
its plugin is loaded, so that whatever order pluggy calls it in, a failure is blamed on its
plugin by name and a ``register`` callback knows which plugin is registering.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Generator, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from aiperf import hookspecs
from aiperf._types import AiperfError, UsageError

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
    #: the plugins whose implementations are running now, innermost last (wrappers nest).
    _calling: list[str] = attrs.field(factory=list)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, *, entry_points: bool = True, extra: Iterable[tuple[str, object]] = ()) -> Plugins:
        from aiperf import __version__, builtin

        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        plugins = cls(pm)
        pm.register(builtin, name=BUILTIN)
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
        plugins._attribute_implementations()
        return plugins

    def _attribute_implementations(self) -> None:
        """Wrap every hook implementation so that it names its plugin when it fails.

        pluggy keeps each implementation as a :class:`pluggy.HookImpl` whose ``function`` it
        calls; replacing that function leaves the order pluggy chose (and the argument names
        it read from the original) untouched.
        """
        for plugin in self.pm.get_plugins():
            for caller in self.pm.get_hookcallers(plugin) or ():
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin and not hasattr(impl.function, "_aiperf_plugin"):
                        impl.function = self._attributed(impl, caller.name)  # type: ignore[misc]

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

    def _attributed(self, impl: pluggy.HookImpl, hook_name: str) -> Callable[..., Any]:
        function: Any = impl.function
        plugin, calling = impl.plugin_name, self._calling

        def failed(exc: Exception) -> PluginError:
            return PluginError(f"plugin {plugin!r} failed in {hook_name}: {type(exc).__name__}: {exc}")

        if impl.wrapper or impl.hookwrapper:
            # A generator, as pluggy requires: it forwards what pluggy sends and throws in
            # (the result, an inner implementation's error) and returns what the wrapper does.
            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
                calling.append(plugin)
                try:
                    return (yield from function(*args, **kwargs))
                except AiperfError:
                    raise
                except Exception as exc:
                    raise failed(exc) from exc
                finally:
                    calling.pop()

            attributed: Callable[..., Any] = wrapper
        else:

            @functools.wraps(function)
            def attributed(*args: Any, **kwargs: Any) -> Any:
                calling.append(plugin)
                try:
                    return function(*args, **kwargs)
                except AiperfError:
                    raise
                except Exception as exc:
                    raise failed(exc) from exc
                finally:
                    calling.pop()

        attributed._aiperf_plugin = plugin  # type: ignore[attr-defined]
        return attributed

    def _call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook the way pluggy does; the non-``None`` results, in the order called."""
        try:
            return getattr(self.pm.hook, hook_name)(**kwargs)
        except AiperfError:
            raise
        except Exception as exc:  # pluggy's own complaint (a wrapper that did not yield)
            raise PluginError(f"{hook_name}: {type(exc).__name__}: {exc}") from exc

    def _load_order(self) -> dict[str, int]:
        return {name: i for i, (name, _) in enumerate(self.pm.list_name_plugin())}

    def _registry(
        self,
        hook_name: str,
        kind: str,
        key: Callable[[Any], str] = lambda item: item.name,
        check: Callable[[Any, str], None] | None = None,
    ) -> dict[str, Any]:
        """Everything the plugins register through ``hook_name``, listed plugin by plugin in
        load order (the built-ins first), whatever order pluggy called them in."""
        if hook_name in self._cache:
            return self._cache[hook_name]
        items: dict[str, Any] = {}
        owners: dict[str, str] = {}
        order = self._load_order()

        def register(item: Any) -> None:
            plugin = self._calling[-1] if self._calling else "(unknown)"
            if check is not None:
                check(item, plugin)
            name = key(item)
            if name in items:
                first, second = sorted((owners[name], plugin), key=lambda p: order.get(p, len(order)))
                raise PluginError(
                    f"{kind} {name!r} is registered by both plugin {first!r} "
                    f"and plugin {second!r}; uninstall or disable one "
                    f"({DISABLE_ENV}={second})"
                )
            items[name] = item
            owners[name] = plugin

        self._call(hook_name, register=register)
        # sorted() is stable: one plugin's items keep the order it registered them in.
        names = sorted(items, key=lambda name: order.get(owners[name], len(order)))
        self._cache[hook_name] = {name: items[name] for name in names}
        return self._cache[hook_name]

    def add_options(self, command: str, parser: argparse.ArgumentParser) -> None:
        self._call("aiperf_add_options", command=command, parser=parser)

    def options(self) -> dict[str, PluginOptions]:
        """Every plugin's options class, by its config-file table name."""
        return self._registry("aiperf_register_options", "options table")

    def commands(self) -> dict[str, Command]:
        return self._registry("aiperf_register_commands", "command")

    def configure(self, config: ProfileConfig) -> None:
        self._call("aiperf_configure", config=config)

    def endpoints(self) -> dict[str, EndpointType]:
        return self._registry("aiperf_register_endpoints", "endpoint type")

    def load_strategies(self) -> dict[str, LoadStrategyType]:
        return self._registry("aiperf_register_load_strategies", "load strategy")

    def datasets(self) -> dict[str, DatasetType]:
        return self._registry("aiperf_register_datasets", "dataset")

    def record_processors(self) -> list[RecordProcessor]:
        items = self._registry("aiperf_register_record_processors", "record processor")
        return sorted(items.values(), key=lambda p: p.order)

    def metrics(self) -> dict[str, MetricSpec]:
        """Every metric of a run, the core's first (they are registered by the built-ins)."""
        return self._registry(
            "aiperf_register_metrics", "metric", key=lambda spec: spec.tag, check=_check_metric
        )

    def run_started(self, run: RunContext) -> None:
        self._call("aiperf_run_started", run=run)

    def run_writers(self, config: ProfileConfig, run: RunContext) -> list[RunWriter]:
        return _flatten(self._call("aiperf_run_writers", config=config, run=run))

    def live_sinks(self, config: ProfileConfig, run: RunContext) -> list[LiveSink]:
        return _flatten(self._call("aiperf_live_sinks", config=config, run=run))

    def remote_load(
        self,
        config: ProfileConfig,
        prompts: Sequence[Prompt],
        bodies: Sequence[bytes],
        conversations: ConversationSet | None,
        yield_cpu: bool,
    ) -> RemoteLoad | None:
        """The first plugin's object that runs the load elsewhere (``firstresult``), or None."""
        found: Any = self._call(
            "aiperf_remote_load", config=config, prompts=prompts, bodies=bodies,
            conversations=conversations, yield_cpu=yield_cpu,
        )  # fmt: skip
        return found  # type: ignore[no-any-return]

    def samplers(self, config: ProfileConfig, run: RunContext) -> list[Sampler]:
        return _flatten(self._call("aiperf_samplers", config=config, run=run))

    def exporters(self, config: ProfileConfig, run: RunContext) -> list[Exporter]:
        found = _flatten(self._call("aiperf_exporters", config=config, run=run))
        return sorted(found, key=lambda e: e.order)

    def run_finished(self, run: RunContext, result: RunResult) -> None:
        self._call("aiperf_run_finished", run=run, result=result)

    def artifacts_written(self, run_dir: Path, paths: Sequence[Path], options: dict[str, Any]) -> None:
        self._call("aiperf_artifacts_written", run_dir=run_dir, paths=paths, options=options)

    def sweep_started(self, sweep: SweepContext) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for value in self._call("aiperf_sweep_started", sweep=sweep):
            options.update(value or {})
        return options

    def sweep_point_finished(self, sweep: SweepContext, point: dict[str, Any]) -> None:
        self._call("aiperf_sweep_point_finished", sweep=sweep, point=point)

    def sweep_finished(self, sweep: SweepContext, paths: Sequence[Path], status: RunStatus) -> None:
        self._call("aiperf_sweep_finished", sweep=sweep, paths=paths, status=status)

    def fetch_run(self, ref: str, dest: Path, options: dict[str, Any]) -> Path | None:
        """The first plugin that knows ``ref`` fetches it (a ``firstresult`` hook); ``None``
        when none does."""
        found: Any = self._call("aiperf_fetch_run", ref=ref, dest=dest, options=options)
        return None if found is None else Path(found)

    def compared(self, report: ComparisonReport, options: dict[str, Any]) -> list[Path]:
        return [Path(p) for p in _flatten(self._call("aiperf_compared", report=report, options=options))]


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


def _check_metric(spec: MetricSpec, plugin: str) -> None:
    from aiperf._metrics import RUN_SUMMARIES, MetricSpec

    if not isinstance(spec, MetricSpec):
        raise PluginError(f"plugin {plugin!r} registered a metric that is not an aiperf.MetricSpec: {spec!r}")
    if spec.kind == "run" and spec.summary is None and plugin != BUILTIN:
        # Only the core computes run metrics of its own (request count, throughput, ...).
        raise PluginError(
            f"plugin {plugin!r}: run metric {spec.tag!r} needs summary= one of "
            f"{', '.join(RUN_SUMMARIES)} (how its per-request values make one value)"
        )


def _flatten(results: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in results:
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
