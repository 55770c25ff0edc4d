"""The CLI reference lists every flag the parser knows (regenerate with scripts/gen_cli_docs.py)."""

from __future__ import annotations

from pathlib import Path

from aiperf._plugins import Plugins
from aiperf.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_flag_is_in_the_cli_reference() -> None:
    """A flag added without regenerating docs/cli.md fails here."""
    text = (DOCS / "cli.md").read_text()
    _parser, parsers = build_parser(Plugins.load())
    missing = [
        f"aiperf {name} {flag}"
        for name, parser in parsers.items()
        for action in parser._actions  # noqa: SLF001
        if action.help != "==SUPPRESS=="
        for flag in action.option_strings
        if f"`{flag}`" not in text
    ]
    assert [] == missing


def test_cli_reference_has_no_unexpanded_format_strings() -> None:
    """Help texts appear as `--help` prints them: no literal %(default)s, %(prog)s or %%."""
    import re

    text = (DOCS / "cli.md").read_text()
    leftovers = re.findall(r"%\([a-z_]+\)[a-z]|%%", text)
    assert [] == leftovers
