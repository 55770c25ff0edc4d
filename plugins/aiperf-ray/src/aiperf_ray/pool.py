"""The coordinator's side of a Ray run: places the load actors, starts them at one instant,
polls their messages into the engine.

Everything about the run as a whole stays in the ``aiperf profile`` process (sinks, the
aggregator, the JSONL, the exports), exactly as with ``--workers``: this class is core's
:class:`aiperf.WorkerPool` with Ray as the transport. Its message loop, its handling of a
lost worker (a partial run, one line naming it, ``worker_lost`` lines for its requests in
flight) and the merge are the core's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import attrs
import trio
from aiperf import AiperfError, ProfileConfig, WorkerPool, make_worker_specs

from aiperf_ray.actor import LoadActor, clock_offset_ns, node_label
from aiperf_ray.config import RayOptions

#: seconds between the coordinator's start call and the common start instant: time for every
#: actor to get the call (milliseconds on a LAN), so that none starts late.
START_MARGIN_S = 0.5
#: how long one poll waits for a message on the actor (a worker sends every 50 ms).
POLL_S = 0.5
#: how long the actors may take to import aiperf and build their engines.
PREPARE_TIMEOUT_S = 120.0
#: how long the cluster's address may take to accept a connection.
CONNECT_TIMEOUT_S = 10.0


class ClusterError(AiperfError):
    """The Ray cluster could not be reached or could not host the load: one line, exit 1."""


def connect(address: str, verbose: int) -> None:
    """Join the cluster at ``address`` (once per process)."""
    import ray

    if ray.is_initialized():
        return
    if address != "auto":
        # Ray itself retries an address where nothing listens for minutes.
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            # Actors print nothing the coordinator needs: their failures come back as messages.
            log_to_driver=bool(verbose),
            logging_level=logging.INFO if verbose else logging.ERROR,
            namespace="aiperf",
        )
    except Exception as exc:  # noqa: BLE001 - Ray raises several kinds; one line for each
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None


def _check_reachable(address: str) -> None:
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def load_nodes() -> list[dict[str, Any]]:
    """The cluster's live nodes that can run actors (some CPU), in a stable order."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    return sorted(nodes, key=lambda n: (n.get("NodeManagerAddress", ""), n["NodeID"]))


def make_ray_pool(
    config: ProfileConfig,
    options: RayOptions,
    prompts: Sequence[Any],
    bodies: Sequence[bytes],
    conversations: Any,
) -> RayPool:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    assert options.address is not None
    connect(options.address, config.verbose or 0)
    nodes = load_nodes()
    if not nodes:
        raise ClusterError(f"the Ray cluster at {options.address} has no live node with a CPU")
    n = config.workers if config.workers is not None else len(nodes) * options.per_node
    # The prompts, bodies and sessions are made once, here, and put in the object store once:
    # every actor gets them by reference (each node fetches them once), not inside its spec.
    specs = [
        attrs.evolve(spec, conversations=None)
        for spec in make_worker_specs(config, n, (), (), conversations=conversations)
    ]
    data = (ray.put(tuple(prompts)), ray.put(tuple(bodies)), ray.put(conversations))
    remote = ray.remote(LoadActor)
    actors = []
    placed = []
    for i, _spec in enumerate(specs):
        node = nodes[i % len(nodes)]
        actors.append(
            remote.options(
                # A thread for the load's trio loop is the actor's own; these are for poll()
                # and stop() while it runs.
                max_concurrency=4,
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote()
        )
        placed.append(node_label(node["NodeID"], node.get("NodeManagerAddress", "?")))
    pool = RayPool(specs)
    pool.actors = actors
    pool.nodes = placed
    try:
        ready = ray.get(
            [a.prepare.remote(spec, *data) for a, spec in zip(actors, specs)], timeout=PREPARE_TIMEOUT_S
        )
    except Exception as exc:  # noqa: BLE001 - an actor that cannot start: one line, nothing left
        pool.kill()
        raise ClusterError(f"the load actors could not start on the Ray cluster: {_first_line(exc)}") from None
    pool.nodes = [info["node"] for info in ready]
    return pool


def _first_line(exc: BaseException) -> str:
    """The first line of a Ray error (they run to a page), without secrets."""
    from aiperf import scrub

    lines = (line.strip() for line in str(exc).splitlines())
    found = [line for line in lines if line]
    if not found:
        return type(exc).__name__
    # "Initialization failure from server:" says what failed on the line after it.
    line = f"{found[0]} {found[1]}" if found[0].endswith(":") and len(found) > 1 else found[0]
    return scrub(line).rstrip(".")


@attrs.define
class _Ended:
    """Why an actor's messages stopped: the Ray error, or its loop ended."""

    reason: str | None = None


@attrs.define
class _ActorReader:
    """The actor's messages, one at a time, as :class:`aiperf.WorkerPool` reads a pipe."""

    actor: Any
    ended: _Ended
    buffer: list[Any] = attrs.field(factory=list)

    async def receive(self) -> Any:
        import ray

        while not self.buffer:
            ref = self.actor.poll.remote(POLL_S)
            try:
                self.buffer = await trio.to_thread.run_sync(ray.get, ref)
            except ray.exceptions.ActorUnavailableError:  # a passing network fault: ask again
                await trio.sleep(POLL_S)
                continue
            except ray.exceptions.RayError as exc:
                self.ended.reason = _first_line(exc)
                raise EOFError(self.ended.reason) from None
        message = self.buffer.pop(0)
        if message is None:
            raise EOFError("the actor's loop ended")
        return message


@attrs.define
class RayPool(WorkerPool):
    """:class:`aiperf.WorkerPool` over Ray actors."""

    actors: list[Any] = attrs.field(factory=list)
    #: per worker, the node it runs on (as the JSONL names it).
    nodes: list[str] = attrs.field(factory=list)
    endings: list[_Ended] = attrs.field(factory=list)

    def start(self) -> None:
        # One instant for all: each actor turns it into its own clock, so an open-loop
        # schedule (worker i sends i, i + n, ...) stays one schedule across the nodes.
        start_wall_ns = time.time_ns() + int(START_MARGIN_S * 1e9)
        offset = clock_offset_ns()
        for actor in self.actors:
            actor.start.remote(start_wall_ns, offset)
            ending = _Ended()
            self.endings.append(ending)
            self.processes.append((actor, _ActorReader(actor, ending)))

    def stop(self, signum: int) -> None:
        self.stopping = True
        for actor in self.actors:
            actor.stop.remote()

    def kill(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - gone already
                pass

    def name(self, i: int) -> str:
        return f"worker {i} (Ray actor on node {self.nodes[i]})"

    def node(self, i: int) -> str | None:
        return self.nodes[i]

    async def _reap(self, i: int, stalled: bool) -> str:
        import ray

        actor = self.actors[i]
        reason = self.endings[i].reason
        await trio.to_thread.run_sync(lambda: ray.kill(actor, no_restart=True))
        if stalled:
            return "was killed"
        if reason is not None:
            return f"was lost: {reason}"
        return "ended its loop without its last message"

    async def _close(self, i: int) -> None:
        import ray

        actor = self.actors[i]

        def end() -> None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001, S110 - gone already
                pass

        await trio.to_thread.run_sync(end)


__all__ = ["ClusterError", "RayPool", "connect", "make_ray_pool"]
