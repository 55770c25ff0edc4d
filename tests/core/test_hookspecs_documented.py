"""Every hook is documented in docs/plugins.md with its exact signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from aiperf import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def signature(fn: object) -> str:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{fn.__name__}({params}) -> {sig.return_annotation}"  # type: ignore[attr-defined]


def test_every_hook_documented_with_exact_signature() -> None:
    """A hook added or changed without its docs fails here."""
    text = DOC.read_text()
    documented = set(re.findall(r"`(aiperf_\w+\(.*?\) -> .*?)`", text))
    specs = {signature(fn) for name, fn in vars(hookspecs).items() if name.startswith("aiperf_")}
    assert specs == documented
