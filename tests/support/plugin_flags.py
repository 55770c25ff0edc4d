"""A plugin's flags, added the way the CLI adds them."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from aiperf._options import add_flags
from aiperf._plugins import Plugins
from aiperf.cli import build_parser


def add_plugin_flags(plugin: ModuleType, command: str, parser: argparse.ArgumentParser) -> None:
    """``profile`` gets the plugin's options class (``aiperf_register_options``); every
    command gets what ``aiperf_add_options`` adds."""
    if command == "profile" and hasattr(plugin, "aiperf_register_options"):
        plugin.aiperf_register_options(register=lambda spec: add_flags(parser, spec))
    if hasattr(plugin, "aiperf_add_options"):
        plugin.aiperf_add_options(command=command, parser=parser)


def flags_by_command(name: str, plugin: ModuleType) -> dict[str, set[str]]:
    """Every subcommand of the real CLI with only ``plugin`` loaded -> its option strings."""
    plugins = Plugins.load(entry_points=False, extra=[(name, plugin)])
    _, parsers = build_parser(plugins)
    return {
        command: {flag for action in parser._actions for flag in action.option_strings}  # noqa: SLF001
        for command, parser in parsers.items()
    }


def profile_config(*args: str) -> tuple[int, str, Any]:
    """``aiperf profile ARGS`` with the installed plugins, stopped before the run:
    the exit code, stderr, and the config the run would have got (``None`` on an error)."""
    import contextlib
    import io
    from unittest import mock

    from aiperf import cli
    from aiperf._plugins import set_current

    seen: list[Any] = []
    err = io.StringIO()
    try:
        with (
            mock.patch(
                "aiperf._profile.run_profile",
                lambda config, plugins, argv: seen.append(config) or 0,
            ),
            contextlib.redirect_stderr(err),
        ):
            code = cli.main(["profile", *args])
    finally:
        set_current(None)
    return code, err.getvalue(), (seen[0] if seen else None)
