"""The README's two commands stay true: CI runs the second one, nox knows both sessions."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_commands_ci_runs_the_second() -> None:
    """Exactly two commands; .ci/run contains the test command verbatim."""
    demo, tests = readme_commands()
    assert demo.endswith("nox -s demo")
    assert tests in (REPO / ".ci" / "run").read_text()


def test_readme_sessions_exist_in_the_noxfile() -> None:
    """Every nox session the README names is defined."""
    noxfile = (REPO / "noxfile.py").read_text()
    for command in readme_commands():
        for session in command.split("nox -s ", 1)[1].split():
            assert f"def {session}(" in noxfile, session
