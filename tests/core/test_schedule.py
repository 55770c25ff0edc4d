"""The fixed-schedule strategy under trio's MockClock, and the replay report's figures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from aiperf._schedule import LAG_P99_BOUND_MS, FixedScheduleStrategy, ScheduleReport, lag_figures
from aiperf._types import Prompt


@attrs.define
class FakeLoad:
    """A LoadContext over prompts with ``send_at_ms``; requests take ``service_s``."""

    at_ms: list[float]
    service_s: float = 0.0
    concurrency: int | None = None
    request_rate: float | None = None
    random: random.Random = attrs.field(factory=lambda: random.Random(1))
    issued: int = 0
    sends: list[tuple[int, float, int | None]] = attrs.field(factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    #: requests that must open a connection first: they write only after this long.
    connect_s: dict[int, float] = attrs.field(factory=dict)

    def claim(self) -> int | None:
        if self.issued >= len(self.at_ms):
            return None
        self.issued += 1
        return self.issued - 1

    def prompt(self, index: int) -> Prompt:
        return Prompt(text="x", input_tokens=1, send_at_ms=self.at_ms[index])

    async def execute(self, index: int, intended_ns: int | None = None, sent: trio.Event | None = None) -> None:
        if index in self.connect_s:
            await trio.sleep(self.connect_s[index])
        self.sends.append((index, trio.current_time(), intended_ns))
        if sent is not None:
            sent.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await trio.sleep(self.service_s)
        self.in_flight -= 1

    def to_perf_ns(self, trio_time: float) -> int:
        return round(trio_time * 1e9)


def run_mock(strategy: FixedScheduleStrategy, load: FakeLoad) -> None:
    trio.run(strategy.drive, load, clock=trio.testing.MockClock(autojump_threshold=0))


class TestStrategy:
    def test_each_request_at_its_time_from_one_origin(self) -> None:
        """Absolute deadlines: slow requests never push the later ones back."""
        at = [0.0, 105.0, 274.0, 274.0, 1000.0, 5000.0]
        load = FakeLoad(at_ms=at, service_s=3.0)
        run_mock(FixedScheduleStrategy(), load)
        t0 = load.sends[0][1]
        assert [pytest.approx(t0 + ms / 1e3, abs=1e-9) for ms in at] == [t for _, t, _ in load.sends]
        assert [pytest.approx((t0 + ms / 1e3) * 1e9, abs=1) for ms in at] == [i for _, _, i in load.sends]

    def test_requests_due_together_leave_in_file_order(self) -> None:
        """trio runs tasks that became ready together in no fixed order; a scheduling point
        between two starts keeps the file's order (started together, 200 simultaneous
        requests would come out in batches reversed at random)."""
        for seed in range(3):
            random.seed(seed)
            load = FakeLoad(at_ms=[0.0] * 100 + [1.0] * 100, service_s=0.5)
            run_mock(FixedScheduleStrategy(), load)
            assert list(range(200)) == [index for index, _, _ in load.sends]

    def test_a_request_opening_a_connection_is_not_overtaken(self) -> None:
        """Request 3 needs 2 ms to connect; 4 and 5, due 1 ms later, wait for it to be sent."""
        load = FakeLoad(at_ms=[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 10.0], connect_s={3: 0.002})
        run_mock(FixedScheduleStrategy(), load)
        assert list(range(7)) == [index for index, _, _ in load.sends]
        t0 = load.sends[0][1]
        assert [0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 10.0] == [pytest.approx((t - t0) * 1e3) for _, t, _ in load.sends]

    def test_concurrency_caps_and_lag_counts_from_the_schedule(self) -> None:
        load = FakeLoad(at_ms=[0.0, 0.0, 0.0, 0.0], service_s=1.0)
        run_mock(FixedScheduleStrategy(max_in_flight=2), load)
        assert 2 == load.max_in_flight
        t0 = load.sends[0][1]
        assert [0.0, 0.0, 1.0, 1.0] == [pytest.approx(t - t0) for _, t, _ in load.sends]
        assert {round(t0 * 1e9)} == {intended for _, _, intended in load.sends}


def record(index: int, intended_ms: float, start_ms: float, phase: str = "profile") -> dict:
    return {
        "request_index": index,
        "phase": phase,
        "intended_start_time_ns": round(intended_ms * 1e6),
        "start_time_ns": round(start_ms * 1e6),
    }


class TestFigures:
    def test_lag_and_order(self) -> None:
        lines = [record(i, i * 10.0, i * 10.0 + 0.5) for i in range(99)] + [record(99, 990.0, 995.0)]
        data = lag_figures(lines)
        assert 100 == data["requests"]
        assert pytest.approx(0.5) == data["lag_ms"]["p50"]
        assert pytest.approx(5.0) == data["lag_ms"]["max"]
        assert data["order_preserved"] and 0 == data["out_of_order"]
        assert pytest.approx(0.99) == data["schedule_duration_s"]

    def test_out_of_order_and_warmup_left_out(self) -> None:
        lines = [record(0, 0, 2.0), record(1, 0, 1.0), record(2, 0, 3.0), record(3, 0, 0.0, phase="warmup")]
        data = lag_figures(lines)
        assert (3, 1, False) == (data["requests"], data["out_of_order"], data["order_preserved"])

    def test_report_reads_the_run_records_and_warns_over_the_bound(self, tmp_path: Path) -> None:
        from aiperf._exporters import JSONL_FILE

        lines = [record(i, i * 10.0, i * 10.0 + (LAG_P99_BOUND_MS + 3 if i % 10 == 0 else 0.2)) for i in range(50)]
        (tmp_path / JSONL_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
        run = attrs.make_class("Run", ["run_dir"])(tmp_path)
        report = ScheduleReport()
        (section,) = report.sections(run, None)  # type: ignore[arg-type]
        assert "fixed_schedule" == section.name
        assert section.data["lag_ms"]["p99"] > LAG_P99_BOUND_MS and not section.data["within_bound"]
        assert "yes" == section.rows[0]["in file order"]
        note = report.report()
        assert note is not None and note.startswith(f"fixed schedule: send lag p99 {section.data['lag_ms']['p99']:.2f} ms is over 2 ms")

    def test_report_quiet_within_the_bound(self, tmp_path: Path) -> None:
        from aiperf._exporters import JSONL_FILE

        lines = [record(i, i * 10.0, i * 10.0 + 0.3) for i in range(50)]
        (tmp_path / JSONL_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
        report = ScheduleReport()
        (section,) = report.sections(attrs.make_class("Run", ["run_dir"])(tmp_path), None)  # type: ignore[arg-type]
        assert section.data["within_bound"] and report.report() is None
