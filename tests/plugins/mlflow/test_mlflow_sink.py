"""The live sink: batching off the trio thread, bounded buffer, counted losses, honest report."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from aiperf import LiveEvent, Phase, RunContext, RunStatus, ServerMetricSample
from aiperf_mlflow import environment
from aiperf_mlflow.config import MlflowConfig
from aiperf_mlflow.points import Point
from aiperf_mlflow.session import MlflowSession
from aiperf_mlflow.sink import MlflowLiveSink
from structlog.testing import capture_logs
from support.mlflow_values import gpu_sample, make_run, request_done

POINTS_PER_REQUEST = 6


class ScriptedSession(MlflowSession):
    """An MlflowSession whose MLflow calls are scripted: no store, no network."""

    def __init__(self, run_dir: Path, uri: str = "file:///nowhere", **kwargs: Any) -> None:
        super().__init__(
            config=MlflowConfig(tracking_uri=uri), run_dir=run_dir, probe_timeout_s=5.0, **kwargs
        )
        self.batches: list[list[Point]] = []
        self.fail_next = 0
        #: when set, log_points announces itself in ``entered`` and waits for ``gate``.
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.logged_event = threading.Event()
        self.failed = threading.Event()
        self.started = 0

    def start_run(self, run: RunContext) -> str:
        self.started += 1
        self.run_id = "run-1"
        return self.run_id

    def log_points(self, points: Any) -> None:
        if self.gate is not None:
            self.entered.set()
            self.gate.wait(10)
        if self.fail_next:
            self.fail_next -= 1
            self.failed.set()
            raise ConnectionError("server went away")
        self.batches.append(list(points))
        self.logged_event.set()

    def logged(self) -> int:
        return sum(len(b) for b in self.batches)


async def wait_logged(session: ScriptedSession) -> None:
    await trio.to_thread.run_sync(session.logged_event.wait, 10)
    session.logged_event.clear()


async def opened(tmp_path: Path, **sink: Any) -> tuple[MlflowLiveSink, ScriptedSession, RunContext]:
    run = make_run(tmp_path / "run")
    session = ScriptedSession(run.run_dir)
    live = MlflowLiveSink(session=session, **sink)
    await live.open(run)
    return live, session, run


class TestOpen:
    async def test_open_creates_the_run(self, tmp_path: Path) -> None:
        """A reachable store: the run is created before the measured phase."""
        live, session, _ = await opened(tmp_path)
        assert (1, "run-1", None) == (session.started, session.run_id, live.unavailable)

    async def test_open_unreachable_server_warns_exactly(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server that does not answer: the documented warning, no run, the benchmark goes on."""
        monkeypatch.setattr(environment, "probe", lambda config, timeout: False)
        run = make_run(tmp_path / "run")
        session = ScriptedSession(run.run_dir, uri="http://localhost:5000")
        live = MlflowLiveSink(session=session)
        with capture_logs() as logs:
            await live.open(run)
        assert [
            (
                "warning",
                "MLflow tracking server at http://localhost:5000 did not respond within 5s.",
            )
        ] == [(e["log_level"], e["event"]) for e in logs]
        assert (0, None) == (session.started, session.run_id)

    async def test_open_failure_is_reported_not_raised(self, tmp_path: Path) -> None:
        """MLflow refusing the run is a warning and a line in the report, not a crash."""
        run = make_run(tmp_path / "run")

        class Refusing(ScriptedSession):
            def start_run(self, run: RunContext) -> str:
                raise PermissionError("read-only store")

        live = MlflowLiveSink(session=Refusing(run.run_dir))
        with capture_logs() as logs:
            await live.open(run)
        assert ["mlflow_live_run_failed"] == [e["event"] for e in logs]
        assert "PermissionError: read-only store" == logs[0]["error"]
        # the post-run exporter tries again and has the last word on what was lost
        assert live.report() is None


class TestFlushing:
    async def test_points_go_out_while_the_run_goes_on(self, tmp_path: Path) -> None:
        """Points are logged on the timer while events still flow, not only at the end."""
        live, session, _ = await opened(tmp_path, flush_interval_s=0.01)
        send, receive = trio.open_memory_channel[LiveEvent](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(live.run, receive)
            for i in range(5):
                await send.send(request_done(i))
            await wait_logged(session)
            assert 5 * POINTS_PER_REQUEST == session.logged()
            await send.aclose()
        await live.close(RunStatus.FINISHED)
        assert None is live.report()

    async def test_full_batch_goes_out_before_the_interval(self, tmp_path: Path) -> None:
        """1000 waiting points do not wait for the timer."""
        live, session, _ = await opened(tmp_path, flush_interval_s=10_000)
        send, receive = trio.open_memory_channel[LiveEvent](1000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(live.run, receive)
            for i in range(200):
                await send.send(request_done(i))
            await wait_logged(session)
            assert 1000 == len(session.batches[0])
            await send.aclose()
        await live.close(RunStatus.FINISHED)
        assert 200 * POINTS_PER_REQUEST == session.logged()
        assert all(len(batch) <= 1000 for batch in session.batches)

    async def test_batch_in_flight_at_end_counts_as_logged(self, tmp_path: Path) -> None:
        """The end of the event stream lets a batch in flight land; nothing is double-counted."""
        live, session, _ = await opened(tmp_path, flush_interval_s=0.01)
        session.gate = threading.Event()
        send, receive = trio.open_memory_channel[LiveEvent](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(live.run, receive)
            await send.send(request_done(0))
            await trio.to_thread.run_sync(session.entered.wait, 10)
            await send.aclose()
            session.gate.set()
        await live.close(RunStatus.FINISHED)
        counts = session.live_counts
        assert (POINTS_PER_REQUEST, 0, 0) == (counts.logged, counts.dropped, counts.failed)
        assert POINTS_PER_REQUEST == session.logged()

    async def test_close_sends_the_rest(self, tmp_path: Path) -> None:
        """What is still buffered at the end goes out in close()."""
        live, session, _ = await opened(tmp_path)
        for i in range(3):
            live.accept(request_done(i))
        await live.close(RunStatus.FINISHED)
        assert 3 * POINTS_PER_REQUEST == session.logged()

    async def test_gpu_samples_get_steps_per_gpu(self, tmp_path: Path) -> None:
        """Each GPU's samples are numbered 0, 1, 2, ... on their own."""
        live, session, _ = await opened(tmp_path)
        for gpu in (0, 1, 0):
            live.accept(gpu_sample(gpu=gpu))
        await live.close(RunStatus.FINISHED)
        steps = sorted(
            {
                (p.key, p.step)
                for b in session.batches
                for p in b
                if p.key.startswith("live.hw.power")
            }
        )
        assert [
            ("live.hw.power.gpu0", 0),
            ("live.hw.power.gpu0", 1),
            ("live.hw.power.gpu1", 0),
        ] == steps

    async def test_server_samples_of_two_endpoints_never_share_a_key(self, tmp_path: Path) -> None:
        """Server metrics go out as live.server.* points, each key numbered on its own; two
        --url servers with the same labels write two curves: the second is named by its
        host and port, never with its query or password."""
        live, session, _ = await opened(tmp_path)
        first = "http://a:8000/metrics"
        second = "http://user:hunter2@b:8000/metrics?***"
        for i, source in enumerate([first, second, first, second]):
            live.accept(
                ServerMetricSample(
                    source=source, name="requests_running", value=float(i), unit="requests",
                    wall_ns=(i + 1) * 1_000_000_000, phase=Phase.PROFILE,
                    labels=(("model_name", "m"),),
                )
            )  # fmt: skip
        await live.close(RunStatus.FINISHED)
        logged = sorted(
            (p.key, p.step, p.value)
            for b in session.batches
            for p in b
            if p.key.startswith("live.server.")
        )
        assert [
            ("live.server.requests_running", 0, 0.0),
            ("live.server.requests_running", 1, 2.0),
            ("live.server.requests_running.b_8000", 0, 1.0),
            ("live.server.requests_running.b_8000", 1, 3.0),
        ] == logged
        assert session.live_counts.logged == 4


class TestLosses:
    async def test_full_buffer_drops_and_counts(self, tmp_path: Path) -> None:
        """Past the buffer's limit points are dropped, counted and reported."""
        live, session, _ = await opened(tmp_path, buffer_limit=10)
        for i in range(3):
            live.accept(request_done(i))
        await live.close(RunStatus.FINISHED)
        assert (10, 8) == (session.logged(), session.live_counts.dropped)
        assert "mlflow: 8 of 18 live points not logged (8 dropped: buffer full)" == live.report()

    async def test_failed_batch_counts_and_warns_once(self, tmp_path: Path) -> None:
        """A failing server loses the batch (counted), warns once, then recovers."""
        live, session, _ = await opened(tmp_path, flush_interval_s=0.01, max_backoff_s=0.05)
        session.fail_next = 2
        send, receive = trio.open_memory_channel[LiveEvent](100)
        with capture_logs() as logs:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(live.run, receive)
                for round_ in range(2):
                    await send.send(request_done(round_))
                    await trio.to_thread.run_sync(session.failed.wait, 10)
                    session.failed.clear()
                await send.send(request_done(2))
                await wait_logged(session)
                await send.aclose()
            await live.close(RunStatus.FINISHED)
        assert ["mlflow_live_logging_failed"] == [e["event"] for e in logs]
        counts = session.live_counts
        assert (2 * POINTS_PER_REQUEST, POINTS_PER_REQUEST) == (counts.failed, counts.logged)
        assert (
            "mlflow: 12 of 18 live points not logged (12 failed: ConnectionError: server went away)"
        ) == live.report()

    async def test_failed_final_flush_is_counted(self, tmp_path: Path) -> None:
        """At close, what cannot be sent is counted as failed, not silently forgotten."""
        live, session, _ = await opened(tmp_path)
        session.fail_next = 1
        for i in range(200):
            live.accept(request_done(i))
        await live.close(RunStatus.FINISHED)
        assert (1200, 0) == (session.live_counts.failed, session.logged())

    async def test_no_live_run_keeps_points_for_exporter(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Server down at start: points are kept (bounded) for the post-run upload."""
        monkeypatch.setattr(environment, "probe", lambda config, timeout: False)
        run = make_run(tmp_path / "run")
        session = ScriptedSession(run.run_dir, uri="http://localhost:5000")
        live = MlflowLiveSink(session=session)
        with capture_logs():
            await live.open(run)
        for i in range(4):
            live.accept(request_done(i))
        await live.close(RunStatus.FINISHED)
        assert (4 * POINTS_PER_REQUEST, []) == (len(session.pending), session.batches)
        assert live.report() is None  # nothing is claimed before the exporter's last attempt


class CountingClient:
    """Stands in for MlflowClient: counts ``log_batch`` calls and the metrics of each."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), synchronous: bool = True) -> None:
        self.calls.append(len(metrics))


class ClientSession(MlflowSession):
    """The real ``log_points`` on a counting client; the run is made up."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(
            config=MlflowConfig(tracking_uri="file:///nowhere"), run_dir=run_dir, probe_timeout_s=5.0
        )
        self.client = CountingClient()

    def start_run(self, run: RunContext) -> str:
        self.run_id = "run-1"
        return self.run_id


def spaced(index: int, every_ms: float) -> Any:
    """A finished request ending ``every_ms`` after the one before it."""
    import attrs

    event = request_done(index)
    end = request_done(0).metrics.end_ns + int(index * every_ms * 1e6)
    return attrs.evolve(event, metrics=attrs.evolve(event.metrics, end_ns=end))


class TestBatching:
    """Few, full requests to MLflow: a tracking server spends about as much per request as per
    thousand points, and the end of the run waits for what it has not taken."""

    @pytest.mark.parametrize("requests", [1, 166, 167, 2000])
    async def test_n_points_take_at_most_ceil_n_over_1000_log_batch_calls(
        self, tmp_path: Path, requests: int
    ) -> None:
        run = make_run(tmp_path / "run")
        session = ClientSession(run.run_dir)
        live = MlflowLiveSink(session=session, flush_interval_s=10_000)
        await live.open(run)
        send, receive = trio.open_memory_channel[LiveEvent](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(live.run, receive)
            for i in range(requests):
                await send.send(request_done(i))  # a second apart: all kept
            await send.aclose()
        await live.close(RunStatus.FINISHED)
        points = requests * POINTS_PER_REQUEST
        calls = session.client.calls
        assert points == sum(calls) == session.live_counts.logged
        assert len(calls) <= -(-points // 1000), calls
        assert all(n <= 1000 for n in calls)

    def test_log_points_splits_at_the_server_limit(self, tmp_path: Path) -> None:
        session = ClientSession(tmp_path)
        session.run_id = "run-1"
        session.log_points([Point("live.x", float(i), 0, i) for i in range(2500)])
        assert [1000, 1000, 500] == session.client.calls

    async def test_fast_requests_are_thinned_to_the_rate(self, tmp_path: Path) -> None:
        """1000 requests a second, no burst: one per 10 ms keeps its points (100 a second),
        the rest are counted as thinned, not as lost."""
        live, session, _ = await opened(tmp_path, request_rate=100.0, request_burst=1)
        for i in range(1000):
            live.accept(spaced(i, every_ms=1.0))
        await live.close(RunStatus.FINISHED)
        kept = session.logged() // POINTS_PER_REQUEST
        assert 100 == kept
        counts = session.live_counts
        assert (900, 0, 0) == (counts.thinned, counts.dropped, counts.failed)
        assert live.report() is None
        steps = sorted({p.step for batch in session.batches for p in batch})
        assert list(range(0, 1000, 10)) == steps

    async def test_the_first_requests_are_all_kept(self, tmp_path: Path) -> None:
        """A burst of 200 keeps every point of a short run, then the rate applies."""
        live, session, _ = await opened(tmp_path, request_rate=100.0, request_burst=200)
        for i in range(200):
            live.accept(spaced(i, every_ms=1.0))
        assert 200 * POINTS_PER_REQUEST == len(live._buffer)
        for i in range(200, 1000):
            live.accept(spaced(i, every_ms=1.0))
        await live.close(RunStatus.FINISHED)
        kept = session.logged() // POINTS_PER_REQUEST
        # the burst, then what 100 a second refill over the 1 s the requests span
        assert 200 + 95 <= kept <= 200 + 100, kept
        assert 1000 == kept + session.live_counts.thinned

    async def test_slow_requests_are_all_kept(self, tmp_path: Path) -> None:
        live, session, _ = await opened(tmp_path, request_rate=100.0)
        for i in range(50):
            live.accept(spaced(i, every_ms=10.0))
        await live.close(RunStatus.FINISHED)
        assert (50 * POINTS_PER_REQUEST, 0) == (session.logged(), session.live_counts.thinned)

    async def test_backlog_says_what_is_left_to_send(self, tmp_path: Path) -> None:
        live, session, _ = await opened(tmp_path)
        assert live.backlog() is None
        for i in range(3):
            live.accept(request_done(i))
        assert "18 points to send" == live.backlog()
        await live.close(RunStatus.FINISHED)
        assert live.backlog() is None
