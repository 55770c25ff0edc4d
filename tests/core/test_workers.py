"""--workers: how load is split across processes, how they talk, and real runs over them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing
from aiperf._config import build_config
from aiperf._types import Phase, RequestRecord, UsageError
from aiperf._workers import (
    MessageReader,
    WorkerPool,
    auto_workers,
    encode,
    needs_pool,
    split,
    stall_timeout,
)
from support.fake_plugins import install_fake_distribution


def config(**values):
    return build_config({"model": "m", **values})


class TestSplit:
    def test_split_divides_concurrency_and_count_exactly(self) -> None:
        """Shares add up to the whole: 5 in flight and 11 requests over 2 workers."""
        shares = split(config(concurrency=5, request_count=11, warmup_request_count=3), 2)
        assert [3, 2] == [s.concurrency for s in shares]
        assert [6, 5] == [s.request_count for s in shares]
        assert [2, 1] == [s.warmup_request_count for s in shares]

    def test_split_divides_rate(self) -> None:
        """Each worker sends at rate / n."""
        shares = split(config(request_rate=300.0, request_count=30), 3)
        assert [100.0] * 3 == [s.request_rate for s in shares]

    def test_split_drops_workers_with_nothing_to_do(self) -> None:
        """Concurrency 2 over 4 workers: two processes, not four."""
        assert 2 == len(split(config(concurrency=2, request_count=10), 4))

    def test_auto_workers_is_one_on_small_machines(self) -> None:
        """With fewer than 4 cores the client stays in one process."""
        assert 1 == auto_workers(config(concurrency=256), cpus=2)
        assert 4 == auto_workers(config(concurrency=256), cpus=8)
        assert 7 == auto_workers(config(concurrency=1024), cpus=8)
        assert 4 == auto_workers(config(concurrency=256, workers=4), cpus=2)

    def test_auto_workers_counts_the_cores_this_process_may_use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A container with a 2-CPU quota on a 64-core host stays in one process; with a quota
        of 8 it gets 7 workers at concurrency 1024, not 63."""
        import aiperf._health as health

        monkeypatch.setattr(health.os, "sched_getaffinity", lambda _pid: set(range(64)))
        monkeypatch.setattr(health, "cgroup_cpu_limit", lambda: 2.0)
        assert 1 == auto_workers(config(concurrency=1024))
        monkeypatch.setattr(health, "cgroup_cpu_limit", lambda: 8.0)
        assert 7 == auto_workers(config(concurrency=1024))
        monkeypatch.setattr(health, "cgroup_cpu_limit", lambda: None)
        assert 16 == auto_workers(config(concurrency=1024))

    def test_live_sinks_take_the_load_out_of_their_process(self) -> None:
        """One worker stays in-process only without sinks; with any sink the load moves out."""
        assert not needs_pool(1, [])
        assert needs_pool(1, [object()])
        assert needs_pool(2, [])

    def test_the_progress_line_keeps_the_load_in_process(self) -> None:
        """A sink that declares itself cheap (the built-in progress line) does not force a
        worker; beside a telemetry sink, the load still moves out."""
        import io

        from aiperf.builtin.progress import ProgressLine

        line = ProgressLine(io.StringIO())
        assert not needs_pool(1, [line])
        assert needs_pool(1, [line, object()])
        assert needs_pool(2, [line])


class TestMessages:
    async def test_messages_survive_any_cut_of_the_stream(self) -> None:
        """Frames split at every odd size arrive whole, in order, each exactly once."""
        send, receive = trio.testing.memory_stream_one_way_pair()
        messages = [("done", list(range(n))) for n in range(40)] + [("end", None, b"x" * 70_000)]
        wire = b"".join(encode(m) for m in messages)
        reader = MessageReader(receive)

        async def write() -> None:
            sizes = [1, 2, 3, 5, 8, 13, 4096]
            at = 0
            for i in range(len(wire)):
                if at >= len(wire):
                    break
                size = sizes[i % len(sizes)]
                await send.send_all(wire[at : at + size])
                at += size
            await send.aclose()

        got = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            for _ in messages:
                got.append(await reader.receive())
        assert messages == got
        with pytest.raises(EOFError, match="pipe closed$"):
            await reader.receive()

    async def test_a_message_cut_short_is_an_error_not_a_message(self) -> None:
        """A worker that dies mid-frame ends its stream with EOFError."""
        send, receive = trio.testing.memory_stream_one_way_pair()
        await send.send_all(encode(("done", [1, 2, 3]))[:-1])
        await send.aclose()
        with pytest.raises(EOFError, match="mid-message"):
            await MessageReader(receive).receive()


class FakeProcess:
    """What the pool asks of a worker process, for one that has already ended."""

    def __init__(self, pid: int, exitcode: int) -> None:
        self.pid = pid
        self.exitcode = exitcode

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass

    def kill(self) -> None:
        pass


class FakeEngine:
    def __init__(self) -> None:
        from types import SimpleNamespace

        self.run = SimpleNamespace(cancelled=False, phase=Phase.PROFILE, profile_start_ns=None, profile_end_ns=None)
        self.bus = SimpleNamespace(publish=lambda event: None)
        self.sent = self.in_flight = self.cancelled_in_flight = 0
        self.failure = None
        self.stopping = False
        self.accepted: list[RequestRecord] = []
        self.unfinished: list[RequestRecord] = []
        self.loop_lags: list[float | None] = []
        self.process_health: list[object] = []

    def note_loop_lag(self, lag_ms) -> None:
        self.loop_lags.append(lag_ms)

    def accept(self, record, metrics) -> None:
        self.accepted.append(record)

    def write_unfinished(self, record) -> None:
        self.unfinished.append(record)


class TestDeadWorkers:
    async def test_a_worker_gone_without_its_end_fails_the_run_and_its_requests_are_written(self, capsys) -> None:
        """Worker 0's pipe closes before its end message (SIGKILL): the run fails naming it,
        its request in flight gets a worker_lost line; worker 1, stopped because of it, is not
        a user's cancellation, and its cancelled request is written, not counted."""
        pipes = [trio.testing.memory_stream_one_way_pair() for _ in range(2)]
        pool = WorkerPool(specs=[])
        pool.processes = [(FakeProcess(111, -9), MessageReader(pipes[0][1])), (FakeProcess(222, 0), MessageReader(pipes[1][1]))]
        done = RequestRecord(index=1, phase=Phase.PROFILE)
        cut = RequestRecord(index=3, phase=Phase.PROFILE, cancelled=True)
        engine = FakeEngine()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run, engine)
            await pipes[0][0].send_all(encode(("progress", 3, 1, [(4, Phase.PROFILE, 123)], 2.5)))
            await pipes[0][0].aclose()
            while engine.failure is None:
                await trio.sleep(0.01)
            # Worker 1, told to stop, hands over what it finished and what it cancelled.
            await pipes[1][0].send_all(
                encode(("done", [(done, object()), (cut, None)])) + encode(("progress", 2, 0, [], None))
                + encode(("end", True, 1, 10, 20))
            )  # fmt: skip
            await pipes[1][0].aclose()

        assert "worker 0 (pid 111) was killed by SIGKILL" == engine.failure
        assert [4] == [r.index for r in engine.unfinished if r.error and r.error.type == "worker_lost"]
        assert [3] == [r.index for r in engine.unfinished if r.cancelled and r.error is None]
        assert [1] == [r.index for r in engine.accepted]
        assert engine.run.cancelled is False
        assert 5 == engine.sent
        assert [2.5, None] == engine.loop_lags  # each worker's largest loop lag, for live sinks
        assert "aiperf: worker 0 (pid 111) was killed by SIGKILL; stopping the run" in capsys.readouterr().err

    def test_stall_timeout_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """AIPERF_WORKER_STALL_TIMEOUT sets the bound; a value that is not seconds is one line."""
        monkeypatch.setenv("AIPERF_WORKER_STALL_TIMEOUT", "2.5")
        assert 2.5 == stall_timeout()
        monkeypatch.setenv("AIPERF_WORKER_STALL_TIMEOUT", "soon")
        with pytest.raises(UsageError, match="AIPERF_WORKER_STALL_TIMEOUT: must be"):
            stall_timeout()


def test_lower_priority_covers_threads_already_running(tmp_path: Path) -> None:
    """Every thread steps back, the SDK threads that started before the call included."""
    script = textwrap.dedent(
        """
        import os, threading
        from aiperf._workers import lower_priority

        def nice(tid):
            return os.getpriority(os.PRIO_PROCESS, tid)

        started, done = threading.Event(), threading.Event()
        tids = []
        def sdk_thread():
            tids.append(threading.get_native_id())
            started.set()
            done.wait()
        thread = threading.Thread(target=sdk_thread)
        thread.start()
        started.wait()
        before = nice(0)
        after = lower_priority(3)
        print(before, after, nice(threading.get_native_id()), nice(tids[0]))
        done.set()
        thread.join()
        """
    )
    # In a child: a process can raise its nice value but never lower it again.
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, after, main_thread, other_thread = map(int, out.split())
    assert after == min(before + 3, 19)
    assert [after, after] == [main_thread, other_thread]


@pytest.mark.integration
def test_two_workers_give_one_merged_result(aiperf_cli, mock_server, tmp_path) -> None:
    """Two processes, one run directory: every request exactly once, one summary."""
    result = aiperf_cli(
        "profile", "--url", mock_server.url, "-m", "mock-model", "--streaming",
        "--concurrency", "4", "--request-count", "50", "--warmup-request-count", "4",
        "--workers", "2", "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
        "--artifact-dir", str(tmp_path / "run"),
    )
    assert 0 == result.returncode, result.stderr
    summary = json.loads((tmp_path / "run" / "profile_export_aiperf.json").read_text())
    assert 50 == summary["metrics"]["request_count"]["avg"]
    assert 8 == summary["metrics"]["output_sequence_length"]["avg"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "profile_export.jsonl").read_text().splitlines()]
    indices = sorted(line["request_index"] for line in lines)
    assert list(range(54)) == indices
    assert 4 == sum(1 for line in lines if line["phase"] == "warmup")


WHERE_PLUGIN = """
import json, os, threading, time
from aiperf import hookimpl

def nice():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

@hookimpl
def aiperf_add_options(command, parser):
    if command == "profile":
        group = parser.add_argument_group("where")
        group.add_argument("--where-out")
        group.add_argument("--where-stall-s", type=float, default=0.0)

@hookimpl
def aiperf_register_record_processors(register):
    class Where:
        name = "where"
        order = 10
        def process(self, record, values, run):
            values["where_pid"] = os.getpid()
            values["where_nice"] = nice()
    register(Where())

@hookimpl
def aiperf_live_sinks(config, run):
    out = config.plugin_options.get("where_out")
    if not out:
        return None
    stall = config.plugin_options.get("where_stall_s") or 0.0

    class Sink:
        name = "where"
        async def open(self, run):
            pass
        async def run(self, events):
            seen = None
            async for event in events:
                if seen is None and type(event).__name__ == "RequestDone":
                    seen = {"pid": os.getpid(), "nice": nice()}
                    # Blocks the whole trio loop of the process that runs this sink.
                    time.sleep(stall)
            with open(out, "w") as fh:
                json.dump(seen, fh)
        async def close(self, status):
            pass
        def report(self):
            return None
    return [Sink()]
"""


@pytest.fixture
def where_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-where", "aiperf_where_plugin", WHERE_PLUGIN)
    return site


def where_run(aiperf_cli, site: Path, url: str, run_dir: Path, *flags: str) -> list[dict]:
    result = aiperf_cli(
        "profile", "--url", url, "-m", "mock-model", "--streaming",
        "--synthetic-input-tokens-mean", "16", "--output-tokens-mean", "8",
        "--artifact-dir", str(run_dir), *flags,
        env={"PYTHONPATH": str(site)},
    )  # fmt: skip
    assert 0 == result.returncode, result.stderr
    return [json.loads(line) for line in (run_dir / "profile_export.jsonl").read_text().splitlines()]


@pytest.mark.integration
class TestSinksApart:
    def test_sinks_run_beside_the_load_never_in_its_process(self, aiperf_cli, mock_server, where_site, tmp_path) -> None:
        """With a live sink on, requests are sent and measured in another process than the
        sink's, and the sink's process has stepped back in the CPU queue."""
        out = tmp_path / "sink.json"
        lines = where_run(
            aiperf_cli, where_site, mock_server.url, tmp_path / "run",
            "--concurrency", "4", "--request-count", "40", "--where-out", str(out),
        )  # fmt: skip
        assert 40 == len(lines)
        load_pids = {line["metrics"]["where_pid"] for line in lines}
        load_nice = {line["metrics"]["where_nice"] for line in lines}
        sink = json.loads(out.read_text())
        assert 1 == len(load_pids) and sink["pid"] not in load_pids
        assert [min(load_nice.pop() + 10, 19)] == [sink["nice"]]
        assert os.getpid() not in load_pids

    def test_a_stalled_coordinator_never_stalls_the_load(self, aiperf_cli, mock_server, where_site, tmp_path) -> None:
        """A sink that blocks its process for 4 s: the worker keeps sending (its batches wait
        in its memory), so no gap opens between the requests' start times."""
        lines = where_run(
            aiperf_cli, where_site, mock_server.url, tmp_path / "run",
            "--concurrency", "8", "--request-count", "1500",
            "--where-out", str(tmp_path / "sink.json"), "--where-stall-s", "4",
        )  # fmt: skip
        assert 1500 == len(lines)
        starts = sorted(line["start_time_ns"] for line in lines)
        longest_gap_s = max(b - a for a, b in zip(starts, starts[1:])) / 1e9
        assert longest_gap_s < 2.0


def test_workers_auto_is_the_default_spelled_out() -> None:
    """``--workers auto`` parses to the same "not chosen" as leaving the flag out."""
    from aiperf._plugins import Plugins
    from aiperf.cli import build_parser

    parser, _commands = build_parser(Plugins.load())
    given = parser.parse_args(["profile", "-m", "m", "--workers", "auto"])
    absent = parser.parse_args(["profile", "-m", "m"])
    assert given.workers is None and getattr(absent, "workers", None) is None
    assert 3 == parser.parse_args(["profile", "-m", "m", "--workers", "3"]).workers
