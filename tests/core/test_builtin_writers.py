"""The files written while a run goes (inputs.json, metadata.json, profile_export.jsonl) come
from the built-in plugin's run writers: a plugin can drop or replace them by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiperf import hookimpl
from aiperf._plugins import Plugins

pytestmark = pytest.mark.integration


def _run(plugins: Plugins, url: str, run_dir: Path) -> Any:
    from aiperf import cli
    from aiperf._config import build_config
    from aiperf._profile import run_once

    parser, parsers = cli.build_parser(plugins)
    ns = parser.parse_args([
        "profile", "-m", "m", "--url", url, "--request-count", "4", "--workers", "1",
        "--no-progress", "--random-seed", "1", "--artifact-dir", str(run_dir),
    ])  # fmt: skip
    config = build_config(cli._profile_values(ns, parsers["profile"]))
    return run_once(config, plugins, ["aiperf", "profile"], console=False)


class _DropJsonl:
    @hookimpl(wrapper=True)
    def aiperf_run_writers(self, config, run):
        groups = yield
        return [[w for w in group if w.name != "jsonl"] for group in groups]


class _Counter:
    """A run writer of its own: one line per request, the index and whether it finished."""

    name = "counter"

    def __init__(self) -> None:
        self.seen: list[tuple[int, bool]] = []

    def open(self, run):
        self.path = run.run_dir / "counted.txt"
        self.path.write_text("")
        return [self.path]

    def write(self, record, metrics) -> None:
        self.seen.append((record.index, metrics is not None))

    def close(self) -> str | None:
        self.path.write_text("".join(f"{i}\n" for i, _ in self.seen))
        return f"counter saw {len(self.seen)} requests"


def test_the_builtin_writers_by_name() -> None:
    plugins = Plugins.load(entry_points=False)
    assert ["inputs", "metadata", "jsonl"] == [w.name for w in plugins.run_writers(None, None)]  # type: ignore[arg-type]


def test_a_wrapper_drops_the_jsonl(mock_server, tmp_path: Path) -> None:
    """Without the JSONL writer the run writes no profile_export.jsonl and lists none; the
    statistics and every other file are as usual."""
    plugins = Plugins.load(entry_points=False, extra=[("nojsonl", _DropJsonl())])
    outcome = _run(plugins, mock_server.url, tmp_path / "run")
    assert 0 == outcome.code
    run_dir = tmp_path / "run"
    assert not (run_dir / "profile_export.jsonl").exists()
    assert {"inputs.json", "metadata.json", "profile_export_aiperf.json", "profile_export_aiperf.csv"} == {
        p.name for p in outcome.run.state["artifacts"]
    }
    assert 4 == json.loads((run_dir / "profile_export_aiperf.json").read_text())["metrics"]["request_count"]["avg"]


def test_a_plugin_writer_replaces_the_jsonl(mock_server, tmp_path: Path) -> None:
    """A plugin's writer gets every request from the engine's bookkeeping, its file joins the
    run's list of files, and the line its close() returns is a note of the run."""
    counter = _Counter()


    class Replace:
        @hookimpl(wrapper=True)
        def aiperf_run_writers(self, config, run):
            groups = yield
            return [[w for w in group if w.name != "jsonl"] for group in groups] + [[counter]]

    plugins = Plugins.load(entry_points=False, extra=[("counter", Replace())])
    outcome = _run(plugins, mock_server.url, tmp_path / "run")
    assert 0 == outcome.code
    assert [(i, True) for i in range(4)] == sorted(counter.seen)
    assert ["0", "1", "2", "3"] == sorted((tmp_path / "run" / "counted.txt").read_text().split())
    assert tmp_path / "run" / "counted.txt" in outcome.run.state["artifacts"]
    assert not (tmp_path / "run" / "profile_export.jsonl").exists()
    assert "counter saw 4 requests" in outcome.result.notes


def test_a_failing_writer_is_dropped_and_the_run_goes_on(mock_server, tmp_path: Path) -> None:
    """A writer that raises gets no more requests; the others (the JSONL) and the run go on."""
    calls: list[int] = []

    class Broken:
        name = "broken"

        def open(self, run):
            return []

        def write(self, record, metrics) -> None:
            calls.append(record.index)
            raise RuntimeError("boom")

        def close(self) -> str | None:
            return None

    class Add:
        @hookimpl
        def aiperf_run_writers(self, config, run):
            return [Broken()]

    plugins = Plugins.load(entry_points=False, extra=[("broken", Add())])
    outcome = _run(plugins, mock_server.url, tmp_path / "run")
    assert 0 == outcome.code
    assert 1 == len(calls)
    lines = (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()
    assert [0, 1, 2, 3] == sorted(json.loads(line)["request_index"] for line in lines)
