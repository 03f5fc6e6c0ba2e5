"""A simulated fleet of any size: the first shard in this process, the rest in children.

paho waits for its sockets with ``select()``, which cannot watch a descriptor numbered
past 1024, and each simulated node holds three (its socket and paho's wake-up pair): one
process holds ~340 nodes (measured: ``bench/telemetry.py --nodes 1000`` stopped at 340).
So :class:`SimFleet` splits the node ids into shards of at most :data:`SHARD_NODES`. The
first shard runs in this process, in a thread (it holds the nodes that do real work: the
shared sieve pool and the Life strips); every other shard is a spawned child process of
telemetry-only nodes. Each node keeps its own MQTT session, credentials, will and birth,
wherever it runs.

A child stops when the parent says so down its pipe, when the pipe closes, or when the
parent dies (:func:`~piswarm.children.watch_parent`); it then says goodbye for its nodes
and sends back its counters. A child that dies on its way is logged and started again
(its nodes' wills say ``lost`` meanwhile), and a node that meets a fatal error (another
agent with its id) stops the whole fleet, as it stops one agent.
"""

import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from node_agent.agent import Agent
from node_agent.runner import Workers
from node_agent.sim import build_fleet, run_fleet
from piswarm import logs, paths
from piswarm.children import ignore_stop_signals, stop_signals_held, watch_parent
from piswarm.mqtt import BrokerSettings, Credentials

log = logging.getLogger(__name__)

SHARD_NODES = 250
"""Nodes per process: 750 descriptors for their sockets, the rest of the 1024 that
``select()`` can watch left for the process's own (the demo's coordinator, display feed,
job database and strip pipes share the first shard's process)."""

MAX_RESTARTS = 5
"""A shard that dies this many times in a row (each within a minute of its start) stops
the fleet: it will not come up (a missing credentials file, a refused login)."""

STOP_WAIT = 60.0
"""Seconds a child has to say goodbye for its nodes and report, once told to stop."""


@dataclass(frozen=True)
class FleetSpec:
    """What every shard needs to run its nodes (picklable: it crosses to the children)."""

    users_dir: Path  # the nodes' credentials: ``credentials/<node>.toml``
    host: str
    port: int
    interval: float
    seed: int = 1

    def settings_for(self, node_id: str) -> BrokerSettings:
        creds = Credentials.load(paths.credentials_file(self.users_dir, node_id))
        return BrokerSettings(host=self.host, port=self.port, credentials=creds)


@dataclass(frozen=True)
class FleetStats:
    """What a shard (or the whole fleet, summed) did."""

    nodes: int = 0
    telemetry_sent: int = 0
    periods_missed: int = 0
    telemetry_dropped: int = 0
    fatal: str | None = None

    @classmethod
    def of(cls, agents: Sequence[Agent]) -> "FleetStats":
        return cls(
            nodes=len(agents),
            telemetry_sent=sum(a.stats.telemetry_sent for a in agents),
            periods_missed=sum(a.stats.periods_missed for a in agents),
            telemetry_dropped=sum(a.stats.telemetry_dropped for a in agents),
            fatal=next((a.fatal for a in agents if a.fatal), None),
        )

    def __add__(self, other: "FleetStats") -> "FleetStats":
        return FleetStats(
            nodes=self.nodes + other.nodes,
            telemetry_sent=self.telemetry_sent + other.telemetry_sent,
            periods_missed=self.periods_missed + other.periods_missed,
            telemetry_dropped=self.telemetry_dropped + other.telemetry_dropped,
            fatal=self.fatal or other.fatal,
        )


def shards(node_ids: Sequence[str], size: int = SHARD_NODES) -> list[list[str]]:
    """``node_ids`` in consecutive slices of at most ``size``, as even as they go (5000
    nodes: 20 of 250; 260 nodes: 2 of 130, not 250 and 10)."""
    if size < 1:
        raise ValueError(f"shard size {size} < 1")
    count = max(1, -(-len(node_ids) // size))
    base, extra = divmod(len(node_ids), count)
    out, start = [], 0
    for i in range(count):
        end = start + base + (i < extra)
        out.append(list(node_ids[start:end]))
        start = end
    return out


def _shard_main(
    node_ids: list[str], spec: FleetSpec, conn: Connection, parent: int, level: int
) -> None:
    """A child shard: run its nodes until told to stop (or orphaned), then report."""
    ignore_stop_signals()
    watch_parent(parent)
    logs.setup(level)
    stop, wake = threading.Event(), threading.Event()

    def listen() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()  # "stop", or EOF when the parent closed its end
        stop.set()
        wake.set()

    threading.Thread(target=listen, name="shard-stop", daemon=True).start()
    agents = build_fleet(
        node_ids, spec.settings_for, interval=spec.interval, seed=spec.seed, wake=wake.set
    )
    run_fleet(agents, stop, wake)
    with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
        conn.send(FleetStats.of(agents))


@dataclass
class _Child:
    node_ids: list[str]
    process: BaseProcess
    conn: Connection
    started: float
    restarts: int = 0  # in a row, each within a minute of its start


class SimFleet:
    """Every simulated node of ``node_ids``, sharded over processes; see the module doc.

    :meth:`start` starts them all, :meth:`run` watches the children until ``stop`` (or a
    fatal error), :meth:`stop` says goodbye everywhere and returns the summed counters.
    ``wake`` is what the first shard's agents set (a signal handler sets it after stop).
    """

    def __init__(
        self,
        node_ids: Sequence[str],
        spec: FleetSpec,
        *,
        workers: Workers | None = None,
        life_nodes: int = 0,
        shard_nodes: int = SHARD_NODES,
        stop: threading.Event | None = None,
        wake: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.stop_event = stop or threading.Event()
        self.wake = wake or threading.Event()
        self.clock = clock
        parts = shards(node_ids, shard_nodes)
        if life_nodes > len(parts[0]):
            raise ValueError(f"{life_nodes} Life nodes, but a shard holds {len(parts[0])}")
        self.agents: list[Agent] = build_fleet(
            parts[0],
            spec.settings_for,
            interval=spec.interval,
            seed=spec.seed,
            wake=self.wake.set,
            workers=workers,
            life_nodes=life_nodes,
        )
        self._child_ids = parts[1:]
        self._children: list[_Child] = []
        self._thread: threading.Thread | None = None
        self._context = multiprocessing.get_context("spawn")
        self.restarts = 0  # children started again after they died
        self.fatal: str | None = None

    @property
    def processes(self) -> int:
        """How many processes the fleet runs in (this one included)."""
        return 1 + len(self._child_ids)

    def child_pids(self) -> list[int]:
        return [c.process.pid for c in self._children if c.process.pid is not None]

    def _spawn(self, node_ids: list[str], restarts: int = 0) -> _Child:
        ours, theirs = self._context.Pipe()
        level = logging.getLogger().getEffectiveLevel()  # the children log as we do
        process = self._context.Process(
            target=_shard_main,
            args=(node_ids, self.spec, theirs, os.getpid(), level),
            name=f"sim-shard-{node_ids[0]}",
            daemon=True,
        )
        with stop_signals_held():
            process.start()
        theirs.close()
        return _Child(node_ids, process, ours, self.clock(), restarts)

    def start(self) -> "SimFleet":
        """Start the children, then this process's shard in a thread."""
        self._children = [self._spawn(ids) for ids in self._child_ids]
        self._thread = threading.Thread(
            target=run_fleet, args=(self.agents, self.stop_event, self.wake), name="sim-fleet"
        )
        self._thread.start()
        log.info(
            "simulated fleet: %d nodes in %d processes",
            len(self.agents) + sum(len(ids) for ids in self._child_ids),
            self.processes,
        )
        return self

    def run(self, *, every: float = 1.0) -> None:
        """Until ``stop`` is set: restart children that died, stop on a fatal error."""
        while not self.stop_event.wait(every):
            fatal = next((a.fatal for a in self.agents if a.fatal), None)
            if fatal:
                self.fatal = fatal
                return
            for i, child in enumerate(self._children):
                if child.process.is_alive():
                    continue
                if child.conn.poll():  # it reported before it ended: a fatal error
                    stats = _receive(child)
                    if stats is not None and stats.fatal:
                        self.fatal = stats.fatal
                        return
                quick = self.clock() - child.started < 60.0
                restarts = child.restarts + 1 if quick else 1
                if restarts > MAX_RESTARTS:
                    self.fatal = (
                        f"simulated shard {child.node_ids[0]} died {MAX_RESTARTS} times in a "
                        f"row (exit code {child.process.exitcode}): see the log above"
                    )
                    return
                self.restarts += 1
                log.error(
                    "simulated shard %s (%d nodes) died with exit code %s: starting it again",
                    child.node_ids[0],
                    len(child.node_ids),
                    child.process.exitcode,
                )
                child.conn.close()
                self._children[i] = self._spawn(child.node_ids, restarts)

    def stop(self) -> FleetStats:
        """Every shard says goodbye for its nodes; the counters of them all."""
        self.stop_event.set()
        self.wake.set()
        for child in self._children:
            with contextlib.suppress(OSError):  # it died: nothing to stop
                child.conn.send("stop")
        if self._thread is not None:
            self._thread.join()
        total = FleetStats.of(self.agents)
        deadline = self.clock() + STOP_WAIT
        for child in self._children:
            stats = None
            if child.conn.poll(max(0.0, deadline - self.clock())):
                stats = _receive(child)
            if stats is None:
                log.warning("simulated shard %s did not report: killed", child.node_ids[0])
                child.process.kill()
            else:
                total += stats
            child.process.join(max(0.0, deadline - self.clock()))
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            child.conn.close()
        self._children = []
        self.fatal = self.fatal or total.fatal
        log.info(
            "simulated fleet of %d nodes stopped: %d telemetry messages sent, %d periods "
            "missed, %d not sent while disconnected",
            total.nodes,
            total.telemetry_sent,
            total.periods_missed,
            total.telemetry_dropped,
        )
        return total


def _receive(child: _Child) -> FleetStats | None:
    try:
        stats = child.conn.recv()
    except (EOFError, OSError):
        return None
    return stats if isinstance(stats, FleetStats) else None
