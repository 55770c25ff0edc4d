"""Multi-turn sessions against the mock server: what the server saw (bodies, headers, times)
and what aiperf recorded (JSONL lines, the per-turn summary)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiperf.testing import MockServer
from support.fake_plugins import install_fake_distribution

pytestmark = pytest.mark.integration

HEADER = "X-Session-Id"


def records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "profile_export.jsonl").read_text().splitlines()]


def by_session(traces: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The mock's requests grouped by the session header, in the order it received them."""
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for trace in sorted(traces, key=lambda t: t["received_at"]):
        sessions[trace["headers"][HEADER.lower()]].append(trace)
    return sessions


def spans(lines: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each session's first send and last answer, from the JSONL (ns)."""
    out: dict[str, tuple[int, int]] = {}
    for line in lines:
        sid = line["session_id"]
        start, end = out.get(sid, (line["start_time_ns"], line["end_time_ns"]))
        out[sid] = (min(start, line["start_time_ns"]), max(end, line["end_time_ns"]))
    return out


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_synthetic_sessions_carry_the_real_replies_delays_header_and_concurrency(aiperf_cli, tmp_path) -> None:
    """5 sessions of 3 turns, 2 at a time, 150 ms think time, the id in a header.

    The server saw, for every session, turn n's messages = the user turns and the replies
    it had sent that session, verbatim (its replies are distinct per request); each turn left
    at least the delay after the previous answer; at most (and at some point exactly) 2
    sessions were in progress; the JSONL names session and turn; the summary splits by turn.
    """
    with MockServer(distinct_replies=True, record_headers=(HEADER,), record_bodies=True, ttft_ms=20, itl_ms=2) as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--streaming", "--isl", "12", "--osl", "6",
            "--conversation-num", "5", "--conversation-turn-mean", "3",
            "--conversation-turn-delay-mean", "150", "--session-header", HEADER,
            "--concurrency", "2", "--random-seed", "5", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        traces = server.stats(raw=True)["raw"]["requests"]
    assert 15 == len(traces)
    sessions = by_session(traces)
    assert 5 == len(sessions)
    replies = [t["reply"] for t in traces]
    assert len(set(replies)) == 15  # distinct replies: a reused one would show
    for turns in sessions.values():
        assert 3 == len(turns)
        for n, trace in enumerate(turns):
            messages = trace["body"]["messages"]
            assert 2 * n + 1 == len(messages)
            assert ["user", "assistant"] * n + ["user"] == [m["role"] for m in messages]
            for k in range(n):
                assert turns[k]["reply"] == messages[2 * k + 1]["content"]  # verbatim
                assert turns[k]["body"]["messages"][-1] == messages[2 * k]  # the same user turn

    lines = records(tmp_path / "run")
    assert 15 == len(lines)
    assert set(sessions) == {line["session_id"] for line in lines}
    for sid, turns in defaultdict(list, {s: sorted((x for x in lines if x["session_id"] == s),
                                                    key=lambda x: x["turn"]) for s in sessions}).items():  # fmt: skip
        assert [0, 1, 2] == [x["turn"] for x in turns]
        for before, after in zip(turns, turns[1:]):
            # The next turn leaves at least 150 ms after the previous answer was complete.
            assert after["start_time_ns"] - before["end_time_ns"] >= 150e6 - 1e6, sid
        # Its input holds the previous turns and answers: 12 + 6 more tokens per turn.
        assert [12, 30, 48] == [x["metrics"]["input_sequence_length"] for x in turns]
    assert 2 == most_at_once(list(spans(lines).values()))

    summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
    by_turn = summary["conversations"]["by_turn"]
    assert [0, 1, 2] == [t["turn"] for t in by_turn]
    assert [5, 5, 5] == [t["count"] for t in by_turn]
    assert all(5 == t["metrics"]["time_to_first_token"]["count"] for t in by_turn)
    assert [12, 30, 48] == [t["metrics"]["input_sequence_length"]["avg"] for t in by_turn]
    assert 5 == summary["conversations"]["sessions"]
    assert "By turn (measured phase)" in result.stdout


def test_multi_turn_file_sessions_across_workers_with_warmup(aiperf_cli, tmp_path) -> None:
    """A multi_turn file of 3 sessions, a system turn hoisted, 2 worker processes, a warm-up
    of 2 requests: every session's turns come from one worker with its id in the header; the
    measured phase runs each session once (repeated ids carry a suffix); warm-up lines are
    marked and left out of the summary."""
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in [
        {"session_id": "chat_1", "turns": [{"role": "system", "text": "be terse"}, {"text": "what is it"},
                                           {"text": "an example", "delay": 100, "output_length": 3}]},
        {"session_id": "chat_2", "turns": [{"text": "explain this"}, {"text": "and that", "delay": 50}]},
        {"session_id": "chat_3", "turns": [{"text": "hello"}]},
    ]) + "\n")  # fmt: skip
    with MockServer(distinct_replies=True, record_headers=(HEADER,), record_bodies=True, ttft_ms=10) as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--streaming", "--osl", "4",
            "--input-file", str(path), "--custom-dataset-type", "multi_turn", "--session-header", HEADER,
            "--concurrency", "2", "--workers", "2", "--warmup-request-count", "2",
            "--random-seed", "1", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        traces = server.stats(raw=True)["raw"]["requests"]
    lines = records(tmp_path / "run")
    profile = [x for x in lines if x["phase"] == "profile"]
    warmup = [x for x in lines if x["phase"] == "warmup"]
    assert 2 == len(warmup)
    # Each of the 3 sessions once in the measured phase, whichever worker ran it.
    assert 5 == len(profile)
    assert sorted([2, 2, 1]) == sorted(
        sum(1 for x in profile if x["session_id"] == s) for s in {x["session_id"] for x in profile}
    )
    assert {s.split("-")[0] for s in {x["session_id"] for x in profile}} == {"chat_1", "chat_2", "chat_3"}
    for sid in {x["session_id"] for x in lines}:
        assert 1 == len({x["worker"] for x in lines if x["session_id"] == sid}), sid
    assert {0, 1} == {x["worker"] for x in lines}
    for trace in traces:
        if trace["headers"][HEADER.lower()].startswith("chat_1"):
            assert {"role": "system", "content": "be terse"} == trace["body"]["messages"][0]
    summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
    assert 5 == summary["metrics"]["request_count"]["avg"]
    assert 5 == sum(t["count"] for t in summary["conversations"]["by_turn"])


def test_request_rate_starts_sessions_on_the_schedule(aiperf_cli, tmp_path) -> None:
    """--request-rate with sessions: first turns leave on the constant schedule (1/rate
    apart); later turns follow their session."""
    with MockServer(ttft_ms=5) as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--streaming", "--isl", "8", "--osl", "3",
            "--conversation-num", "6", "--conversation-turn-mean", "2", "--request-rate", "20",
            "--request-rate-mode", "constant", "--random-seed", "2", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
    lines = records(tmp_path / "run")
    assert 12 == len(lines)
    firsts = sorted(x["intended_start_time_ns"] for x in lines if x["turn"] == 0)
    assert 6 == len(firsts)
    for a, b in zip(firsts, firsts[1:]):
        assert abs((b - a) - 50e6) < 1e3


def test_cancelled_turn_ends_its_session(aiperf_cli, tmp_path) -> None:
    """Sessions of 3 turns, 40 % of requests cancelled 10 ms after sending while the server
    thinks for 300 ms: a session stops at its first cancelled turn, every other session runs
    all 3 turns, and only requests the seeded draw picked were cancelled."""
    from aiperf._arrivals import Cancellation

    with MockServer(ttft_ms=300) as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--streaming", "--isl", "8", "--osl", "3",
            "--conversation-num", "8", "--conversation-turn-mean", "3", "--concurrency", "4",
            "--request-cancellation-rate", "40", "--request-cancellation-delay", "0.01",
            "--random-seed", "11", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        disconnects = server.stats()["requests"]["client_disconnects"]
    assert 0 == result.returncode, result.stderr
    lines = records(tmp_path / "run")
    plan = Cancellation(rate_percent=40.0, delay_s=0.01, seed=11)
    cancelled = {x["request_index"] for x in lines if x.get("cancelled")}
    # A picked request whose answer was complete within the delay is left alone (a slow
    # first send can make it so); no other request is ever cancelled.
    assert cancelled <= {x["request_index"] for x in lines if plan.delay_for(x["request_index"]) is not None}
    assert len(cancelled) == disconnects
    ended_early = 0
    for sid in {x["session_id"] for x in lines}:
        turns = sorted((x for x in lines if x["session_id"] == sid), key=lambda x: x["turn"])
        assert list(range(len(turns))) == [x["turn"] for x in turns], sid
        flags = [bool(x.get("cancelled")) for x in turns]
        assert not any(flags[:-1]), sid  # nothing after a cancelled turn
        assert flags[-1] or len(turns) == 3, sid
        ended_early += flags[-1] and len(turns) < 3
    assert 8 == len({x["session_id"] for x in lines})
    assert ended_early >= 1 and len(cancelled) >= 2


def test_a_session_stays_on_one_server(aiperf_cli, tmp_path) -> None:
    """Two --url values: requests alternate between servers, but all turns of a session go
    to the same one (sessions alternate instead)."""
    with (
        MockServer(record_headers=(HEADER,)) as a,
        MockServer(record_headers=(HEADER,)) as b,
    ):
        result = aiperf_cli(
            "profile", "--url", a.url, b.url, "-m", "m", "--streaming", "--isl", "8", "--osl", "3",
            "--conversation-num", "4", "--conversation-turn-mean", "3", "--session-header", HEADER,
            "--concurrency", "2", "--random-seed", "4", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        seen_a = {t["headers"][HEADER.lower()] for t in a.stats(raw=True)["raw"]["requests"]}
        seen_b = {t["headers"][HEADER.lower()] for t in b.stats(raw=True)["raw"]["requests"]}
        assert (6, 6) == (a.stats()["requests"]["ok"], b.stats()["requests"]["ok"])
    assert {"session-0", "session-2"} == seen_a
    assert {"session-1", "session-3"} == seen_b


def test_duration_stops_starting_turns(aiperf_cli, tmp_path) -> None:
    """--benchmark-duration 1 with long sessions: no turn leaves after the first second."""
    with MockServer(ttft_ms=5) as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--streaming", "--isl", "8", "--osl", "3",
            "--conversation-num", "100", "--conversation-turn-mean", "50",
            "--conversation-turn-delay-mean", "100", "--concurrency", "3", "--benchmark-duration", "1",
            "--random-seed", "4", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
    lines = records(tmp_path / "run")
    starts = [x["start_time_ns"] for x in lines]
    assert len(lines) >= 6
    assert max(starts) - min(starts) < 1.0e9
    assert 3 == len({x["session_id"] for x in lines})


def test_request_count_caps_the_turns(aiperf_cli, tmp_path) -> None:
    """--request-count with sessions counts requests (turns): 10 sessions of 3 turns, at most
    7 requests; the summary's request count is 7."""
    with MockServer() as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--streaming", "--isl", "8", "--osl", "3",
            "--conversation-num", "10", "--conversation-turn-mean", "3", "--request-count", "7",
            "--concurrency", "2", "--random-seed", "4", "--artifact-dir", "run", "--no-progress",
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        assert 7 == server.stats()["requests"]["total"]
    assert 7 == len(records(tmp_path / "run"))
    summary = json.loads((tmp_path / "run/profile_export_aiperf.json").read_text())
    assert 7 == summary["metrics"]["request_count"]["avg"]


ONE_BY_ONE = """
import json, os
import trio
from aiperf import LoadStrategyType, hookimpl

class OneByOne:
    # Every call a strategy has: each session starts once the one before has sent its first
    # request (``sent``), and the prompt each session opens with is written down.
    async def drive(self, ctx):
        opened = []
        async with trio.open_nursery() as nursery:
            while (index := ctx.claim()) is not None:
                opened.append(ctx.prompt(index).text)
                sent = trio.Event()
                nursery.start_soon(ctx.execute, index, ctx.to_perf_ns(trio.current_time()), sent)
                await sent.wait()
        with open(os.environ["OPENED_PROMPTS"], "w") as out:
            json.dump(opened, out)

@hookimpl
def aiperf_register_load_strategies(register):
    register(LoadStrategyType(name="one_by_one", create=lambda config: OneByOne()))
"""


def test_a_plugin_strategy_paces_sessions_with_every_load_context_call(aiperf_cli, tmp_path) -> None:
    """In a conversation run the load context hands out sessions through the same calls as
    requests: ``prompt(i)`` is the prompt session ``i`` opens with, and ``execute``'s ``sent``
    event is set once the session's first request has left."""
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site, "aiperf-one-by-one", "aiperf_one_by_one", ONE_BY_ONE)
    opened = tmp_path / "opened.json"
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p),
        "OPENED_PROMPTS": str(opened),
    }
    with MockServer(record_headers=(HEADER,), record_bodies=True) as server:
        result = aiperf_cli(
            "profile", "--url", server.url, "-m", "m", "--isl", "12", "--osl", "4",
            "--conversation-num", "4", "--conversation-turn-mean", "2", "--session-header", HEADER,
            "--request-rate", "1000", "--request-rate-mode", "one_by_one", "--random-seed", "3",
            "--artifact-dir", "run", "--no-progress", env=env,
        )  # fmt: skip
        assert 0 == result.returncode, result.stderr
        traces = server.stats(raw=True)["raw"]["requests"]
    sessions = by_session(traces)
    assert 4 == len(sessions) and [2] * 4 == [len(turns) for turns in sessions.values()]
    first = sorted(turns[0]["body"]["messages"][-1]["content"] for turns in sessions.values())
    assert first == sorted(json.loads(opened.read_text()))
