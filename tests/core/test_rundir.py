"""One run per directory: an earlier run's files move to previous/<id>/, nothing else moves."""

from __future__ import annotations

import json
from pathlib import Path

from aiperf._rundir import set_aside_earlier_run
from structlog.testing import capture_logs


def test_fresh_directory_is_created_and_nothing_moves(tmp_path: Path) -> None:
    """A new directory: created, no line, nothing moved."""
    with capture_logs() as logs:
        assert set_aside_earlier_run(tmp_path / "a" / "b") is None
    assert (tmp_path / "a" / "b").is_dir()
    assert [] == logs


def test_earlier_run_moves_to_previous_benchmark_id(tmp_path: Path) -> None:
    """The earlier run's files and plots go to previous/<its id>/; one line says where; the
    user's own files stay."""
    run_dir = tmp_path / "run"
    (run_dir / "plots").mkdir(parents=True)
    (run_dir / "metadata.json").write_text(json.dumps({"benchmark_id": "abc123"}))
    (run_dir / "profile_export.jsonl").write_text("{}\n")
    (run_dir / "mlflow_export.json").write_text("{}")
    (run_dir / "plots" / "ttft.png").write_bytes(b"\x89PNG")
    (run_dir / ".env").write_text("KEY=secret\n")
    with capture_logs() as logs:
        target = set_aside_earlier_run(run_dir)
    assert run_dir / "previous" / "abc123" == target
    assert {"metadata.json", "profile_export.jsonl", "mlflow_export.json", "plots"} == {
        p.name for p in target.iterdir()
    }
    assert {".env", "previous"} == {p.name for p in run_dir.iterdir()}
    (line,) = [e["event"] for e in logs]
    assert f"The previous run's files in {run_dir} were moved to {target}." == line


def test_a_third_run_keeps_both_earlier_ones(tmp_path: Path) -> None:
    """previous/ itself never moves; the same id twice gets a suffix instead of a clash."""
    run_dir = tmp_path / "run"
    for _ in range(3):
        run_dir.mkdir(exist_ok=True)
        (run_dir / "metadata.json").write_text(json.dumps({"benchmark_id": "same"}))
        set_aside_earlier_run(run_dir)
    assert {"same", "same-2", "same-3"} == {p.name for p in (run_dir / "previous").iterdir()}


def test_without_metadata_the_time_names_the_folder(tmp_path: Path) -> None:
    """No benchmark id anywhere: the newest file's time (UTC) names the folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "profile_export_aiperf.csv").write_text("x")
    target = set_aside_earlier_run(run_dir)
    assert target is not None and target.name[:8].isdigit() and "T" == target.name[8]
