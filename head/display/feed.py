"""MQTT -> bounded queue -> the main thread: how the head's views receive the fleet.

paho calls ``on_message`` in its network thread; the feed only puts ``(topic, payload,
receive time)`` on a bounded queue. Whoever owns the model (the display's main loop, the
text summary) drains it with :meth:`ClusterFeed.drain`. When the queue is full the
message is dropped and counted, never queued without bound.
"""

import time
from collections.abc import Callable, Sequence

from piswarm.client import Message, MqttClient
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import topics

DEFAULT_FILTERS = (
    topics.NODE_STATUS_FILTER,
    topics.NODE_TELEMETRY_FILTER,
    topics.JOB_STATUS_FILTER,
    topics.JOB_MAP_FILTER,
)
# The display also draws Life boards from the strips' frames.
DISPLAY_FILTERS = (*DEFAULT_FILTERS, topics.LIFE_FRAME_FILTER)


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
    ) -> None:
        self.filters = tuple(filters)
        self.mqtt = MqttClient(
            settings,
            role=role,
            subscriptions=[(f, 1) for f in self.filters],
            inbox=maxsize,
            clock=clock,
            name=f"{role} feed",
            version="3.1.1",  # it only listens, to thousands of messages a second
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
        self.mqtt.start()
        return self

    def stop(self) -> None:
        self.mqtt.stop()

    def drain(self, limit: int = 100_000) -> list[Message]:
        """Everything queued so far (up to ``limit``), without blocking."""
        return self.mqtt.drain(limit)
