"""Garbage collection during the load: set-up is frozen out of the collector's sight."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiperf._engine import quiet_collector


def test_quiet_collector_freezes_what_exists_and_hands_it_back() -> None:
    assert gc.get_freeze_count() == 0
    before = [object() for _ in range(10)] + [[] for _ in range(100)]
    with quiet_collector():
        # Every container alive at entry, the 100 lists above included, is frozen.
        assert gc.get_freeze_count() >= 100
        garbage: list[object] = []
        garbage.append(garbage)  # a cycle made during the load stays collectable
        del garbage
        assert gc.collect() >= 1
    assert gc.get_freeze_count() == 0
    assert before


def test_quiet_collector_unfreezes_when_the_load_fails() -> None:
    with pytest.raises(RuntimeError), quiet_collector():
        raise RuntimeError("load failed")
    assert gc.get_freeze_count() == 0


def test_a_real_run_measures_with_set_up_frozen(mock_server, tmp_path: Path) -> None:
    """In a whole ``aiperf profile``: frozen while requests finish, thawed after the load."""
    script = textwrap.dedent(
        f"""
        import gc, json, sys
        from aiperf import _engine
        from aiperf.cli import main

        seen = []
        accept = _engine.Engine.accept

        def watching(self, record, metrics):
            seen.append(gc.get_freeze_count())
            accept(self, record, metrics)

        _engine.Engine.accept = watching
        code = main(["profile", "--url", {mock_server.url!r}, "--model", "m", "--streaming",
                     "--request-count", "20", "--concurrency", "4", "--no-progress",
                     "--artifact-dir", "run"])
        print(json.dumps({{"code": code, "seen": seen, "after": gc.get_freeze_count()}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert len(result["seen"]) == 20
    # Thousands of set-up objects (modules, prompts) are frozen during every request.
    assert min(result["seen"]) > 1000
    assert result["after"] == 0
