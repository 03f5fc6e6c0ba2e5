"""Did the new agents come up? Watch the retained node statuses on the broker.

Subscribed before the push starts, so no birth is missed; a node counts as confirmed once
its ``online`` status carries the version just deployed.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable

from piswarm import protocol
from piswarm.client import Message, MqttClient
from piswarm.mqtt import BrokerSettings
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
        self._changed = threading.Condition()
        self.mqtt = MqttClient(
            settings,
            role="deploy",
            subscriptions=[(topics.NODE_STATUS_FILTER, 1)],
            handler=self._on_message,
            name="deploy watcher",
        )
        self.connected = self.mqtt.connected

    @property
    def refused(self) -> str | None:
        return self.mqtt.refused

    def __enter__(self) -> "StatusWatcher":
        self.mqtt.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.mqtt.stop()

    def _on_message(self, msg: Message) -> None:
        try:
            node, _leaf = topics.parse_node_topic(msg.topic)
            if node not in self.watched or not msg.payload:
                return
            status = protocol.decode_status(msg.payload)
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
