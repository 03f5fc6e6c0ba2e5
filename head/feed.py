"""MQTT -> bounded queue -> the main thread: how the head's views receive the fleet.

paho calls ``on_message`` in its network thread; the feed only puts ``(topic, payload,
receive time)`` on a bounded queue. Whoever owns the model (the display's main loop, the
text summary) drains it with :meth:`ClusterFeed.drain`. When the queue is full the
message is dropped and counted, never queued without bound.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from piswarm.inbox import Inbox
from piswarm.mqtt import BrokerSettings, connect_async, end_loop, guarded, new_client, reason_text
from piswarm.protocol import topics

log = logging.getLogger(__name__)

Message = tuple[str, bytes, float]

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
        client_id: str,
        filters: Sequence[str] = DEFAULT_FILTERS,
        maxsize: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.filters = tuple(filters)
        self.clock = clock
        self.queue: Inbox[Message] = Inbox(maxsize=maxsize)
        self.connected = threading.Event()
        self.dropped = 0
        self.callback_errors = 0
        self.refused: str | None = None  # why the broker refused us, if it did
        self._client: mqtt.Client | None = None

    def start(self) -> "ClusterFeed":
        client = new_client(self.client_id, self.settings)
        client.on_connect = guarded("on_connect", self._count_error)(self._on_connect)
        client.on_disconnect = guarded("on_disconnect", self._count_error)(self._on_disconnect)
        client.on_message = guarded("on_message", self._count_error)(self._on_message)
        self._client = client
        connect_async(client, self.settings)
        return self

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            end_loop(client)
        self.connected.clear()

    def drain(self, limit: int = 100_000) -> list[Message]:
        """Everything queued so far (up to ``limit``), without blocking."""
        out: list[Message] = []
        while len(out) < limit:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return out

    def _count_error(self) -> None:
        self.callback_errors += 1

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.refused = reason_text(reason)
            log.error("broker refused %s: %s", self.client_id, self.refused)
            return
        self.refused = None
        client.subscribe([(f, 1) for f in self.filters])
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self.connected.clear()
        if self._client is not None:
            log.warning("%s disconnected (%s); reconnecting", self.client_id, reason_text(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.queue.put_nowait((msg.topic, bytes(msg.payload), self.clock()))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("%s: queue full, %d messages dropped", self.client_id, self.dropped)
