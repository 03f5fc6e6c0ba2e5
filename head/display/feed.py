"""MQTT -> bounded queue -> the main thread: how the head's views receive the fleet.

paho calls ``on_message`` in its network thread; the feed only puts ``(topic, payload,
receive time)`` on a bounded queue. Whoever owns the model (the display's main loop, the
text summary) drains it with :meth:`ClusterFeed.drain`. When the queue is full the
message is dropped and counted, never queued without bound.

By default the feed is *looped*: no network thread; each :meth:`ClusterFeed.drain` first
reads what has arrived, in the drainer's own thread (the kiosk's main loop, the demo's
text summary). A room of 5,000 nodes sends the kiosk 5,000 readings a second, and a
second thread handing each over cost it ~3 points of a core (the two threads taking
turns at the interpreter). The price: while the broker is unreachable, each attempt to
connect again holds a frame up to :data:`CONNECT_TIMEOUT` (attempts 1 s apart, backing
off to 30 s; a broker that is up but refusing answers at once).
"""

import time
from collections.abc import Callable, Sequence

from piswarm.client import Message, MqttClient
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import topics

CONNECT_TIMEOUT = 1.0
"""Seconds a looped feed waits for a TCP connection to the broker (paho's default: 5)."""

DEFAULT_FILTERS = (
    topics.NODE_STATUS_FILTER,
    topics.NODE_TELEMETRY_FILTER,
    topics.JOB_STATUS_FILTER,
    topics.JOB_MAP_FILTER,
)
# The display also draws Life boards from the strips' frames, and experiments' curves.
DISPLAY_FILTERS = (*DEFAULT_FILTERS, topics.LIFE_FRAME_FILTER, topics.EXPERIMENT_STATUS_FILTER)


class ClusterFeed:
    """A subscriber that hands messages to another thread through a bounded queue."""

    def __init__(
        self,
        *,
        settings: BrokerSettings,
        role: str = "display",
        filters: Sequence[str] = DEFAULT_FILTERS,
        maxsize: int = 20_000,
        clock: Callable[[], float] = time.time,
        looped: bool = True,
    ) -> None:
        """``looped`` (the views' way): the thread that drains also reads the network,
        so it must drain often (a frame, a summary); ``False``: paho's own thread."""
        self.filters = tuple(filters)
        self.looped = looped
        self.maxsize = maxsize
        # A looped feed's messages arrive in the draining thread itself: a list, which
        # pump() never fills past maxsize, does what the thread-safe inbox did.
        self._arrived: list[Message] = []
        self.mqtt = MqttClient(
            settings,
            role=role,
            subscriptions=[(f, 1) for f in self.filters],
            handler=self._arrived.append if looped else None,
            inbox=maxsize,
            clock=clock,
            name=f"{role} feed",
            version="3.1.1",  # it only listens, to thousands of messages a second
            threaded=not looped,
            connect_timeout=CONNECT_TIMEOUT if looped else None,
        )
        self.connected = self.mqtt.connected

    @property
    def refused(self) -> str | None:
        """Why the broker refused us, if it did."""
        return self.mqtt.refused

    @property
    def dropped(self) -> int:
        """Messages the queue had no room for."""
        return self.mqtt.stats.dropped

    def start(self) -> "ClusterFeed":
        """Start connecting (a looped feed goes on in :meth:`drain`)."""
        self.mqtt.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Whether the feed is logged in and its subscriptions answered (from then on
        nothing published is missed) within ``timeout`` seconds. A looped feed reads the
        network meanwhile; what arrives waits for :meth:`drain`."""
        subscribed = self.mqtt.subscribed
        if not self.looped:
            return subscribed.wait(timeout)
        deadline = time.monotonic() + timeout
        while not subscribed.is_set() and time.monotonic() < deadline:
            if not self.mqtt.pump(self.maxsize - len(self._arrived)):
                time.sleep(0.01)
        return subscribed.is_set()

    def stop(self) -> None:
        self.mqtt.stop()

    def drain(self, limit: int = 100_000) -> list[Message]:
        """Everything queued so far (up to ``limit``), without waiting for more; a looped
        feed first reads what the network holds."""
        if not self.looped:
            return self.mqtt.drain(limit)
        arrived = self._arrived
        self.mqtt.pump(min(limit, self.maxsize) - len(arrived))
        taken = arrived[:limit]
        del arrived[:limit]
        return taken
