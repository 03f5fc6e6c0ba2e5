"""The coordinator's janitor: retained messages only where the protocol keeps them.

Mosquitto lets every user set the retain flag on whatever it may publish, and keeps each
retained message (in memory, and in ``mosquitto.db``, rewritten every few seconds) until
someone clears it: 50 retained messages of 8 MiB grew the broker to 430 MB. Its ACL
cannot refuse the flag (only a compiled plugin could), so the janitor, a second client of
the coordinator's process with the admin's login, sweeps instead. Every ``every``
seconds (and at each connect) it subscribes to ``piswarm/#``, reads every retained message
up to its own sync marker (as :mod:`head.session` does), and unsubscribes once a second
marker, sent behind its removals, is back (so a sweep that has ended has removed). A retained
message on a topic where the protocol keeps none, or larger than the protocol's limit for
its topic (:mod:`piswarm.protocol.retained`), is removed (an empty retained message) and
counted. Retained junk so lives at most one sweep.

A retained message is told from live traffic by its flag: the broker sets it only on
messages it sends from its store when a subscription is made (the janitor does not ask
for the flag as published). Messages are judged in paho's thread, by topic and size, and
never kept: a sweep costs the janitor no memory however much it finds.
"""

import logging
import threading

from piswarm.client import Message, MqttClient
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import topics
from piswarm.protocol.retained import retained_limit

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
_READ = b"read"  # the sweep's first marker: every retained message has come
_REMOVED = b"removed"  # its second: the broker has handled every removal sent before it


class Janitor:
    """Start with :meth:`start`, stop with :meth:`close`; counters are read by anyone."""

    def __init__(self, settings: BrokerSettings, *, every: float = SWEEP_EVERY_S) -> None:
        self.settings = settings
        self.every = every
        self.sweeps = 0  # finished
        self.removed = 0  # retained messages removed
        self.removed_bytes = 0
        self.swept = threading.Event()  # set at the end of each sweep (tests wait on it)
        self.mqtt = MqttClient(
            settings,
            role="janitor",
            handler=self._on_message,
            on_connect=self.sweep_now,  # a sweep at every connect: the broker may have restarted
            name="janitor",
        )
        self.client_id = self.mqtt.client_id
        self.sync_topic = topics.cli_sync(self.client_id)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def errors(self) -> int:
        """Callbacks that raised."""
        return self.mqtt.stats.callback_errors

    def start(self) -> None:
        self.mqtt.start()
        self._thread = threading.Thread(target=self._timer, name="janitor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.mqtt.stop()

    def sweep_now(self) -> None:
        """Start a sweep at once (it ends when the marker is back)."""
        self._wake.set()

    def _timer(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if not self.mqtt.running or self._stop.is_set():
                return
            self._begin()

    def _begin(self) -> None:
        """Subscribe to everything, then send the marker: retained messages come first."""
        self.swept.clear()
        self.mqtt.subscribe(topics.ALL_FILTER, qos=0)  # the marker's topic is under it too
        self.mqtt.publish(self.sync_topic, _READ, qos=0)

    def _on_message(self, msg: Message) -> None:
        if msg.topic == self.sync_topic:
            if msg.payload == _READ:
                # Every retained message is in, and the removals (QoS 1, which paho sends
                # in order, holding back what its in-flight window cannot take) are on their
                # way: a second marker behind them comes back once the broker has handled
                # them all.
                self.mqtt.publish(self.sync_topic, _REMOVED, qos=1)  # queued behind them
                return
            self.mqtt.unsubscribe(topics.ALL_FILTER)
            self.sweeps += 1
            self.swept.set()
            return
        if not msg.retain or not msg.payload:
            return  # live traffic during the sweep, or a removal
        limit = retained_limit(msg.topic)
        size = len(msg.payload)
        if limit is not None and size <= limit:
            return
        self.mqtt.publish(msg.topic, b"", qos=1, retain=True)
        self.removed += 1
        self.removed_bytes += size
        why = "the protocol retains nothing there" if limit is None else f"over {limit} bytes"
        log.warning("removed a retained message on %s (%d bytes): %s", msg.topic, size, why)
