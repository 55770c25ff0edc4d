"""Plugins as pip would leave them: a module and a dist-info with an ``aiperf`` entry point."""

from __future__ import annotations

import textwrap
from pathlib import Path


def install_fake_distribution(site: Path, name: str, module: str, code: str, version: str = "0.0.1") -> None:
    """Lay out an installed distribution in ``site`` (put it on PYTHONPATH), entry point included."""
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[aiperf]\n{name.removeprefix('aiperf-')} = {module}\n")
    (info / "RECORD").write_text("")
