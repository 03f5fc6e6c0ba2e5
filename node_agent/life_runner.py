"""The node's part in distributed Life: start a process per strip it is given.

The coordinator publishes a binary :class:`~piswarm.protocol.life.StripAssign` on
``piswarm/nodes/<node>/life/assign``. Each strip runs in its own spawned process
(:mod:`node_agent.life_strip`) with its own MQTT connection, so it can drive the network
from its compute loop. A newer epoch of a job replaces the node's strips of older epochs;
a repeated assignment (QoS 1 may deliver twice) is ignored. At most ``max_strips`` run at
once, so memory and processes stay bounded; an assignment that finds no free slot waits
for one, briefly.
"""

import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from piswarm.children import ignore_stop_signals, stop_signals_held
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, life, topics

log = logging.getLogger(__name__)

StripKey = tuple[str, int, int]  # job, epoch, strip


def _start_process(process: BaseProcess) -> None:
    with stop_signals_held():
        process.start()


def _strip_main(node_id: str, settings: BrokerSettings, payload: bytes, parent: int) -> None:
    """The strip process (numpy is imported there, never in the agent itself). Ctrl-C
    and SIGTERM are for the agent, which stops its strips itself."""
    ignore_stop_signals()
    from node_agent.life_strip import run_strip

    run_strip(node_id, settings, payload, parent)


ARRIVED_LIMIT = 64
"""Assignments taken from paho's thread and not yet looked at (a coordinator sends a
node at most a few per epoch; more are a flood, counted as refused)."""

POLL_EVERY = 0.2  # seconds: how soon a strip that exited frees its slot for one waiting


class LifeRunner:
    """Strip processes of one node.

    paho's thread only decodes an assignment and queues it (:meth:`on_message`): starting
    a process writes the strip's board down a pipe to a child that is still starting
    Python, and ending one waits for it, which on paho's thread would hold up every
    message and the keepalive, and on the agent's driver thread its telemetry. So the
    runner does that work in :meth:`tick`, on a thread of its own that runs while it has
    strips to start, wait for or watch (one per node that holds strips, beside a process
    per strip). Built with ``threaded=False`` it is ticked by its caller instead.

    An assignment that finds every slot taken waits (at most ``max_strips`` of them, for
    at most ``wait_limit`` seconds) and starts on a later ``tick``: the strips of a job
    that just ended take a moment to exit, and the next job's assignments arrive at once.
    One that waits too long is dropped; the coordinator sees its strip never advance and
    re-partitions.
    """

    def __init__(
        self,
        *,
        node_id: str,
        settings: BrokerSettings,
        max_strips: int,
        wait_limit: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        threaded: bool = True,
        spawn: Callable[[BaseProcess], None] | None = None,
    ) -> None:
        """``spawn`` starts a strip's process (default ``process.start()``; a test slows
        it down)."""
        if max_strips < 1:
            raise ValueError("at least one strip")
        self.node_id = node_id
        self.settings = settings
        self.max_strips = max_strips
        self.wait_limit = wait_limit
        self.clock = clock
        self.threaded = threaded
        self.spawn = spawn or _start_process
        self.assign_topic = topics.node_life_assign(node_id)
        self.malformed = 0
        self.refused = 0
        self.started = 0
        self.errors = 0  # steps of the runner's thread that raised (logged)
        # paho's thread and the runner's share only the arrivals, under their own lock.
        self._arrived_lock = threading.Lock()
        self._arrived: deque[tuple[life.StripAssign, bytes]] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._work = threading.Event()
        self._lock = threading.Lock()  # the tables below: the runner's thread and stop()
        self._running: dict[StripKey, BaseProcess] = {}
        self._waiting: OrderedDict[StripKey, tuple[float, life.StripAssign, bytes]] = OrderedDict()
        self._context = multiprocessing.get_context("spawn")

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.assign_topic, 1)]

    def handles(self, topic: str) -> bool:
        return topic == self.assign_topic

    def on_message(self, topic: str, payload: bytes) -> None:
        """paho's thread: decode and queue, nothing that waits."""
        try:
            assign, _packed = life.decode_assign(payload)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("%s: ignored a bad strip assignment: %s", self.node_id, exc)
            return
        with self._arrived_lock:
            if self._closed:
                return
            if len(self._arrived) >= ARRIVED_LIMIT:
                self.refused += 1
                log.warning(
                    "%s: %d strip assignments not yet started: refused strip %d of %s",
                    self.node_id,
                    len(self._arrived),
                    assign.strip,
                    assign.job,
                )
                return
            self._arrived.append((assign, payload))
            if self.threaded and self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name=f"life-{self.node_id}", daemon=True
                )
                self._thread.start()
        self._work.set()

    def _serve(self) -> None:
        """The runner's thread: tick until there is nothing to start, wait for or watch."""
        while True:
            try:
                self.tick()
            except Exception:  # boundary: a bug here must not leave strips unwatched
                self.errors += 1
                log.exception("%s: the strip runner failed a step", self.node_id)
            with self._lock, self._arrived_lock:
                if self._closed or not (self._arrived or self._waiting or self._running):
                    self._thread = None
                    return
            self._work.wait(POLL_EVERY if self._waiting else 1.0)
            self._work.clear()

    def _take_arrived(self) -> list[tuple[life.StripAssign, bytes]]:
        with self._arrived_lock:
            taken = list(self._arrived)
            self._arrived.clear()
        return taken

    def _accept(self, assign: life.StripAssign, payload: bytes) -> None:
        key = (assign.job, assign.epoch, assign.strip)
        for old in [k for k in self._running if k[0] == assign.job and k[1] < assign.epoch]:
            log.info("%s: strip %s replaced by epoch %d", self.node_id, old, assign.epoch)
            self._end(old)
        for old in [k for k in self._waiting if k[0] == assign.job and k[1] < assign.epoch]:
            del self._waiting[old]
        if key in self._running or key in self._waiting:
            return  # delivered twice
        if len(self._running) < self.max_strips:
            self._start(key, assign, payload)
            return
        if len(self._waiting) >= self.max_strips:
            dropped, _ = self._waiting.popitem(last=False)
            self.refused += 1
            log.warning("%s: too many strips waiting, dropped %s", self.node_id, dropped)
        log.info(
            "%s: all %d strip slots busy, %s waits for one", self.node_id, self.max_strips, key
        )
        self._waiting[key] = (self.clock(), assign, payload)

    def _start(self, key: StripKey, assign: life.StripAssign, payload: bytes) -> None:
        process = self._context.Process(
            target=_strip_main,
            args=(self.node_id, self.settings, payload, os.getpid()),
            name=f"strip-{assign.job}-{assign.epoch}-{assign.strip}",
            daemon=True,
        )
        self.spawn(process)
        self._running[key] = process
        self.started += 1
        log.info(
            "%s: running strip %d/%d of %s (rows %d-%d, generations %d-%d)",
            self.node_id,
            assign.strip + 1,
            assign.strips,
            assign.job,
            assign.row0,
            assign.row0 + assign.rows - 1,
            assign.gen,
            assign.gens,
        )

    def waiting(self) -> list[StripKey]:
        with self._lock:
            return list(self._waiting)

    def running(self) -> list[StripKey]:
        with self._lock:
            self._reap()
            return sorted(self._running)

    def tick(self) -> None:
        """Start what arrived, reap what ended, start or give up what waits."""
        with self._lock:
            self._reap()
            for assign, payload in self._take_arrived():
                self._accept(assign, payload)
            now = self.clock()
            for key, (since, assign, payload) in list(self._waiting.items()):
                if now - since > self.wait_limit:
                    del self._waiting[key]
                    self.refused += 1
                    log.warning(
                        "%s: no strip slot for %s in %.0f s, gave it up",
                        self.node_id,
                        key,
                        now - since,
                    )
                elif len(self._running) < self.max_strips:
                    del self._waiting[key]
                    self._start(key, assign, payload)

    def stop(self) -> None:
        """End every strip and the runner's thread; later assignments are ignored."""
        with self._arrived_lock:
            self._closed = True
            self._arrived.clear()
            thread = self._thread
        self._work.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            self._waiting.clear()
            for key in list(self._running):
                self._end(key)

    def _reap(self) -> None:
        for key, process in list(self._running.items()):
            if not process.is_alive():
                process.join()
                if process.exitcode:
                    log.warning(
                        "%s: strip %s ended with exit code %s", self.node_id, key, process.exitcode
                    )
                del self._running[key]

    def _end(self, key: StripKey) -> None:
        """Stop a strip at once: it ignores SIGTERM, and it has nothing to save (the
        job's state is in its checkpoints)."""
        process = self._running.pop(key)
        process.kill()
        process.join()
