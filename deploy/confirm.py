"""Did the new agents come up? Watch the retained node statuses on the broker.

Subscribed before the push starts, so no birth is missed; a node counts as confirmed once
its ``online`` status carries the version just deployed.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from piswarm import protocol
from piswarm.mqtt import (
    BrokerSettings,
    connect_async,
    end_loop,
    guarded,
    new_client,
    reason_text,
    unique_client_id,
)
from piswarm.protocol import topics

log = logging.getLogger(__name__)


class StatusWatcher:
    """The latest ``online`` version of each watched node (bounded by the inventory)."""

    def __init__(
        self,
        settings: BrokerSettings,
        nodes: Iterable[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.watched = frozenset(nodes)
        self.clock = clock
        self.versions: dict[str, str | None] = {}
        self.connected = threading.Event()
        self.refused: str | None = None
        self._changed = threading.Condition()
        self._client: mqtt.Client | None = None

    def __enter__(self) -> "StatusWatcher":
        client = new_client(unique_client_id("deploy"), self.settings)
        client.on_connect = guarded("on_connect")(self._on_connect)
        client.on_message = guarded("on_message")(self._on_message)
        self._client = client
        connect_async(client, self.settings)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._client is not None:
            self._client.disconnect()
            end_loop(self._client)

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.refused = reason_text(reason)
            log.error("broker refused the deploy watcher: %s", self.refused)
            return
        client.subscribe(topics.NODE_STATUS_FILTER, qos=1)
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            node, _leaf = topics.parse_node_topic(msg.topic)
            if node not in self.watched or not msg.payload:
                return
            status = protocol.decode_status(bytes(msg.payload))
        except protocol.ProtocolError as exc:
            log.debug("ignored status on %s: %s", msg.topic, exc)
            return
        version = status.version if isinstance(status, protocol.NodeOnline) else None
        with self._changed:
            self.versions[node] = version
            self._changed.notify_all()

    def wait_for(self, expected: dict[str, str], timeout: float) -> set[str]:
        """Wait until every node reports its expected version (or ``timeout``); return
        the nodes that did."""
        deadline = self.clock() + timeout
        with self._changed:
            while True:
                done = {n for n, v in expected.items() if self.versions.get(n) == v}
                left = deadline - self.clock()
                if len(done) == len(expected) or left <= 0:
                    return done
                self._changed.wait(min(left, 0.5))
