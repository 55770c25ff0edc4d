"""A run where every request failed: the console shows the errors, not an empty table."""

from __future__ import annotations

import attrs
from aiperf import ErrorSummary, RunStatus
from aiperf._exporters import render_table
from support.mlflow_values import make_result, make_run


def test_every_request_failed_prints_the_error_summary(tmp_path) -> None:
    """No metric rows: one line saying nothing succeeded, then the errors by type."""
    result = attrs.evolve(
        make_result(RunStatus.FAILED),
        metrics={},
        errors=(ErrorSummary(type="500", count=7, first_message="HTTP 500: boom"),),
    )
    text = render_table(make_run(tmp_path / "r"), result)
    assert "| Metric " not in text
    assert "No request succeeded: all 7 failed. Errors by type:" in text
    assert "| 500  |     7 | HTTP 500: boom |" in text


def test_a_run_with_metrics_keeps_its_table_and_errors(tmp_path) -> None:
    """Some succeeded: the metric table, then the errors."""
    result = attrs.evolve(
        make_result(), errors=(ErrorSummary(type="timeout", count=1, first_message="timed out"),)
    )
    text = render_table(make_run(tmp_path / "r"), result)
    assert "| Metric " in text and "\nErrors\n" in text and "No request succeeded" not in text
