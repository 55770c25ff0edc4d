"""The load actor: one worker's share of the load, run on a node of the Ray cluster.

It runs the same loop a ``--workers`` process runs (:class:`aiperf.Worker`), in a trio loop of
its own thread, and keeps the messages that loop sends until the coordinator polls for them.
The coordinator's clock and this node's differ: every time this worker sends is moved onto the
coordinator's ``perf_counter`` through the wall clocks (the same on one machine, as close as
NTP keeps them across machines). Durations (TTFT, ITL) are differences and never move.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from typing import Any

import attrs
import trio
from aiperf import RequestMetrics, RequestRecord, Worker, WorkerSpec


def clock_offset_ns() -> int:
    """This process's wall clock minus its perf_counter: perf + offset = wall."""
    return time.time_ns() - time.perf_counter_ns()


def node_label(node_id: str, name: str) -> str:
    """A node as the JSONL's ``node`` names it: its address and the head of its Ray id (two
    nodes on one machine share the address)."""
    return f"{name}/{node_id[:8]}"


class LoadActor:
    """Created on a chosen node; ``prepare``, then ``start``, then ``poll`` until the end."""

    def __init__(self) -> None:
        self._messages: queue.Queue[list[Any] | None] = queue.Queue()
        self._worker: Worker | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._stop_asked = False
        self._node = ""
        self._lock = threading.Lock()

    def prepare(
        self, spec: WorkerSpec, prompts: tuple[Any, ...], bodies: tuple[bytes, ...], conversations: Any
    ) -> dict[str, Any]:
        """Build the worker (plugins, tokenizer) from its spec and the data the coordinator
        put in the object store once; says where it runs."""
        import ray

        spec = attrs.evolve(spec, prompts=tuple(prompts), bodies=tuple(bodies), conversations=conversations)
        # A worker's stop is asked by the coordinator (stop()): no signal handlers, which only
        # the main thread may install.
        self._worker = Worker.build(spec, stop_signals=())
        context = ray.get_runtime_context()
        node_id = context.get_node_id()
        name = ray.util.get_node_ip_address()
        self._node = node_label(node_id, name)
        return {"node": self._node, "node_id": node_id, "pid": os.getpid()}

    def start(self, start_wall_ns: int, coordinator_offset_ns: int) -> None:
        """Start the load at the wall-clock instant every worker was given (plus this
        worker's own offset in a constant-rate schedule)."""
        worker = self._worker
        assert worker is not None, "prepare() first"
        offset = clock_offset_ns()
        shift = offset - coordinator_offset_ns
        delay = (start_wall_ns - offset - time.perf_counter_ns()) / 1e9 + worker.spec.start_delay_s
        self._thread = threading.Thread(
            target=self._run, args=(worker, max(delay, 0.0), shift), name="aiperf-load", daemon=True
        )
        self._thread.start()

    def poll(self, timeout: float) -> list[Any]:
        """The messages sent since the last poll, waiting up to ``timeout`` s for the first;
        a ``None`` in the list: the worker's loop is over, nothing follows."""
        out: list[Any] = []
        try:
            first = self._messages.get(timeout=timeout)
        except queue.Empty:
            return out
        items = [first]
        while True:
            try:
                items.append(self._messages.get_nowait())
            except queue.Empty:
                break
        for item in items:
            if item is None:
                out.append(None)
            else:
                out.extend(item)
        return out

    def stop(self) -> None:
        """Stop the load as SIGTERM stops a local worker: in-flight requests are cancelled and
        written, what finished is kept."""
        with self._lock:
            self._stop_asked = True
            token, worker = self._token, self._worker
        if token is None or worker is None:
            return  # not started yet: it stops as soon as it starts
        try:
            trio.from_thread.run_sync(worker.stop, signal.SIGTERM, trio_token=token)
        except trio.RunFinishedError:
            pass

    def _run(self, worker: Worker, delay: float, shift: int) -> None:
        node = self._node

        async def send(messages: list[tuple[Any, ...]]) -> None:
            self._messages.put([_moved(message, shift, node) for message in messages])

        async def main() -> str | None:
            with self._lock:
                self._token = trio.lowlevel.current_trio_token()
                stop_asked = self._stop_asked
            if stop_asked:
                worker.stop(signal.SIGTERM)
            return await worker.serve(send, start_delay_s=delay)

        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - said to the coordinator, never lost
            from aiperf import describe_error

            self._messages.put([("failed", describe_error(exc, limit=None))])
        finally:
            self._messages.put(None)


def _moved(message: tuple[Any, ...], shift: int, node: str) -> tuple[Any, ...]:
    """``message`` with its times on the coordinator's clock, its records naming the node."""
    kind = message[0]
    if kind == "done":
        return ("done", [_record(record, metrics, shift, node) for record, metrics in message[1]])
    if kind == "progress":
        pending = [(index, phase, start + shift if start else start) for index, phase, start in message[3]]
        return (kind, message[1], message[2], pending, message[4])
    if kind == "phase":
        return (kind, message[1], message[2] + shift if message[2] is not None else None)
    if kind == "end":
        _kind, cancelled, cut, start, end = message
        return (
            kind, cancelled, cut,
            start + shift if start is not None else None, end + shift if end is not None else None,
        )  # fmt: skip
    return message


def _record(
    record: RequestRecord, metrics: RequestMetrics | None, shift: int, node: str
) -> tuple[RequestRecord, RequestMetrics | None]:
    record.node = node
    if shift:
        if record.intended_ns is not None:
            record.intended_ns += shift
        if record.start_ns:
            record.start_ns += shift
        if record.sent_end_ns is not None:
            record.sent_end_ns += shift
        if record.response_ns is not None:
            record.response_ns += shift
        if record.end_ns is not None:
            record.end_ns += shift
        record.chunk_ns = [t + shift for t in record.chunk_ns]
        if metrics is not None:
            metrics = attrs.evolve(metrics, start_ns=metrics.start_ns + shift, end_ns=metrics.end_ns + shift)
    return record, metrics
