"""The node's part in distributed Life: start a process per strip it is given.

The coordinator publishes a binary :class:`~piswarm.protocol.life.StripAssign` on
``piswarm/nodes/<node>/life/assign``. Each strip runs in its own spawned process
(:mod:`node_agent.life_strip`) with its own MQTT connection, so it can drive the network
from its compute loop. A newer epoch of a job replaces the node's strips of older epochs;
a repeated assignment (QoS 1 may deliver twice) is ignored. At most ``max_strips`` run at
once, so memory and processes stay bounded.
"""

import logging
import multiprocessing
import os
import threading
from multiprocessing.process import BaseProcess

from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, life, topics

log = logging.getLogger(__name__)

StripKey = tuple[str, int, int]  # job, epoch, strip


def _strip_main(node_id: str, settings: BrokerSettings, payload: bytes, parent: int) -> None:
    """The strip process (numpy is imported there, never in the agent itself)."""
    from node_agent.life_strip import run_strip

    run_strip(node_id, settings, payload, parent)


class LifeRunner:
    """Strip processes of one node. ``on_message`` runs on paho's thread, ``tick`` and
    ``stop`` on the driver's: a lock keeps the table consistent."""

    def __init__(self, *, node_id: str, settings: BrokerSettings, max_strips: int) -> None:
        if max_strips < 1:
            raise ValueError("at least one strip")
        self.node_id = node_id
        self.settings = settings
        self.max_strips = max_strips
        self.assign_topic = topics.node_life_assign(node_id)
        self.malformed = 0
        self.refused = 0
        self.started = 0
        self._lock = threading.Lock()
        self._running: dict[StripKey, BaseProcess] = {}
        self._context = multiprocessing.get_context("spawn")

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.assign_topic, 1)]

    def handles(self, topic: str) -> bool:
        return topic == self.assign_topic

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            assign, _packed = life.decode_assign(payload)
        except ProtocolError as exc:
            self.malformed += 1
            log.warning("%s: ignored a bad strip assignment: %s", self.node_id, exc)
            return
        key = (assign.job, assign.epoch, assign.strip)
        with self._lock:
            self._reap()
            for old in [k for k in self._running if k[0] == assign.job and k[1] < assign.epoch]:
                log.info("%s: strip %s replaced by epoch %d", self.node_id, old, assign.epoch)
                self._end(old)
            if key in self._running:
                return  # delivered twice
            if len(self._running) >= self.max_strips:
                self.refused += 1
                log.warning("%s: already running %d strips, refusing %s", self.node_id,
                            len(self._running), key)  # fmt: skip
                return
            process = self._context.Process(
                target=_strip_main,
                args=(self.node_id, self.settings, payload, os.getpid()),
                name=f"strip-{assign.job}-{assign.epoch}-{assign.strip}",
                daemon=True,
            )
            process.start()
            self._running[key] = process
            self.started += 1
        log.info(
            "%s: running strip %d/%d of %s (rows %d-%d, generations %d-%d)", self.node_id,
            assign.strip + 1, assign.strips, assign.job, assign.row0,
            assign.row0 + assign.rows - 1, assign.gen, assign.gens,
        )  # fmt: skip

    def running(self) -> list[StripKey]:
        with self._lock:
            self._reap()
            return sorted(self._running)

    def tick(self) -> None:
        with self._lock:
            self._reap()

    def stop(self) -> None:
        with self._lock:
            for key in list(self._running):
                self._end(key)

    def _reap(self) -> None:
        for key, process in list(self._running.items()):
            if not process.is_alive():
                process.join()
                if process.exitcode:
                    log.warning("%s: strip %s ended with exit code %s", self.node_id, key,
                                process.exitcode)  # fmt: skip
                del self._running[key]

    def _end(self, key: StripKey) -> None:
        process = self._running.pop(key)
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
