"""Regenerate docs/cli.md from the real parser (with every installed plugin's flags)."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiperf._plugins import Plugins
from aiperf.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def render() -> str:
    plugins = Plugins.load()
    _parser, parsers = build_parser(plugins)
    out = [
        "# CLI reference",
        "",
        "Generated from the parser by `python scripts/gen_cli_docs.py`; flags of a plugin appear",
        "when that plugin is installed (all four first-party plugins were when this was written).",
        "",
    ]
    for name, parser in parsers.items():
        out += [f"## aiperf {name}", "", parser.description or "", ""]
        for group in parser._action_groups:  # noqa: SLF001 - argparse has no public walk
            rows = [a for a in group._group_actions if a.help != argparse.SUPPRESS]  # noqa: SLF001
            if not rows:
                continue
            out += [f"### {group.title}", "", "| flag | meaning |", "|---|---|"]
            for action in rows:
                flags = ", ".join(f"`{f}`" for f in action.option_strings) or f"`{action.metavar or action.dest}`"
                # Expanded as `--help` shows it: %(default)s, %(choices)s, %% become text.
                text = parser._get_formatter()._expand_help(action) if action.help else ""  # noqa: SLF001
                text = text.replace("|", "\\|")
                out.append(f"| {flags} | {text} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
