"""Configuration of aiperf-plot: ``profile --plot`` and the ``aiperf plot`` command's options.

Light on purpose: ``aiperf --help`` imports this module through the hooks.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from aiperf import MissingExtra, UsageError, option, read_options

#: what ``aiperf plot`` reads when no path is given (where ``aiperf profile`` writes runs).
DEFAULT_PATH = Path("artifacts")
#: the one line shown when matplotlib is missing or broken (the same line the core shows when
#: aiperf-plot itself is not installed).
MISSING_EXTRA = (
    "Plotting requires the 'matplotlib' package. Install with: pip install \"aiperf[plot]\""
)


@attrs.frozen(kw_only=True)
class PlotConfig:
    """``aiperf profile`` options of this plugin (flag, ``[plugins.plot]``, default)."""

    #: draw the single-run figures when the profile ends (``--plot``).
    enabled: bool = option(
        "--plot",
        dest="plot",
        default=False,
        action="store_true",
        help="draw the single-run figures into RUN_DIR/plots/ when the profile ends",
    )

    @classmethod
    def from_options(cls, options: Any) -> PlotConfig:
        """The checked settings of a config (or its ``plugin_options``)."""
        return read_options(cls, options)


@attrs.frozen(kw_only=True)
class PlotRequest:
    """What ``aiperf plot`` was asked to draw, checked: every path is a directory."""

    paths: tuple[Path, ...]
    output: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PlotRequest:
        given: Sequence[Path] = [*(args.path_args or ()), *(args.paths or ())]
        paths = tuple(Path(p) for p in given) or (DEFAULT_PATH,)
        for path in paths:
            if not path.exists():
                hint = " (run `aiperf profile` first, or pass --paths DIR)" if not given else ""
                raise UsageError(f"--paths: no such directory: {path}{hint}")
            if not path.is_dir():
                raise UsageError(f"--paths: expected a run directory, got a file: {path}")
        output = Path(args.output) if args.output is not None else None
        if output is not None and output.exists() and not output.is_dir():
            raise UsageError(f"--output: expected a directory, got a file: {output}")
        return cls(paths=paths, output=output)


def require_matplotlib() -> None:
    """Raise the missing-extra line when matplotlib cannot be imported (absent or broken)."""
    try:
        import matplotlib  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install is as missing as an absent one
        raise MissingExtra(MISSING_EXTRA) from None
