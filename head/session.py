"""One short MQTT session for a command: subscribe, read what is retained, then what comes.

Reading retained messages needs to know when the broker has delivered all of them: the
session publishes a marker to its own ``piswarm/cli/<client>/sync`` topic after
subscribing (every user may, and only to its own client id: see the broker's ACL);
messages on one connection arrive in order, so when the marker is back every retained
message is too. ``piswarm status`` and ``piswarm job`` (:mod:`head.jobclient`) are built
on it.
"""

from collections.abc import Iterator

from piswarm.client import Message, MqttClient, MqttError
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import topics

INBOX = 100_000
"""Messages a session holds unread (and at most piswarm.inbox's bytes); a command reads
far fewer, so when it is full the rest are dropped, counted and logged (a snapshot would
be incomplete, not wrong)."""

SessionError = MqttError  # what a session raises: unreachable, refused, no answer


class Session:
    """A context manager: connected on entry, disconnected on exit."""

    def __init__(
        self, settings: BrokerSettings, *, connect_timeout: float = 10.0, role: str = "cli"
    ) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.mqtt = MqttClient(settings, role=role, inbox=INBOX)
        self.client_id = self.mqtt.client_id
        self.sync_topic = topics.cli_sync(self.client_id)

    @property
    def dropped(self) -> int:
        return self.mqtt.stats.dropped

    def __enter__(self) -> "Session":
        self.mqtt.connect(self.connect_timeout)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.mqtt.stop()

    def subscribe(self, *filters: str) -> None:
        """Subscribe (QoS 1) and wait for the broker's answer; a refusal is an error."""
        self.mqtt.subscribe(*filters, timeout=self.connect_timeout)

    def retained(self, *filters: str) -> list[tuple[str, bytes]]:
        """Subscribe to ``filters`` and return every message the broker holds for them
        (in order; newer ones may come with them); later ones follow in :meth:`messages`."""
        self.subscribe(*filters, self.sync_topic)
        self.mqtt.publish(self.sync_topic, b"sync", qos=1)
        found: list[tuple[str, bytes]] = []
        for message in self.mqtt.messages(self.connect_timeout):
            if message.topic == self.sync_topic:
                return found
            found.append((message.topic, message.payload))
        raise SessionError("the broker did not echo our marker: retained messages unknown")

    def messages(
        self, timeout: float, *, until: float | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """Messages as they come; ends after ``timeout`` s without one, or at ``until``
        (monotonic)."""
        message: Message
        for message in self.mqtt.messages(timeout, until=until):
            yield message.topic, message.payload

    def publish(self, topic: str, payload: bytes, *, timeout: float) -> None:
        """Publish at QoS 1 and wait until the broker has it."""
        self.mqtt.publish_wait(topic, payload, timeout=timeout)
