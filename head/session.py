"""One short MQTT session for a command: subscribe, read what is retained, then what comes.

Reading retained messages needs to know when the broker has delivered all of them: the
session publishes a marker to its own ``piswarm/cli/<client>/sync`` topic after
subscribing (every user may, and only to its own client id: see the broker's ACL);
messages on one connection arrive in order, so when the marker is back every retained
message is too. ``piswarm status`` and ``piswarm job`` (:mod:`head.jobclient`) are built
on it.
"""

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from piswarm.errors import PiswarmError
from piswarm.inbox import Inbox
from piswarm.mqtt import (
    BrokerSettings,
    end_loop,
    guarded,
    new_client,
    reason_text,
    unique_client_id,
)
from piswarm.protocol import topics

log = logging.getLogger(__name__)

INBOX = 100_000
"""Messages a session holds unread (and at most piswarm.inbox's bytes); a command reads
far fewer, so when it is full the rest are dropped, counted and logged (a snapshot would
be incomplete, not wrong)."""


class SessionError(PiswarmError):
    """The broker could not be reached, or refused."""


class Session:
    """A context manager: connected on entry, disconnected on exit."""

    def __init__(
        self, settings: BrokerSettings, *, connect_timeout: float = 10.0, role: str = "cli"
    ) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.client_id = unique_client_id(role)
        self.sync_topic = topics.cli_sync(self.client_id)
        self.dropped = 0
        self._client = new_client(self.client_id, settings)
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(maxsize=INBOX)
        self._connected = threading.Event()
        self._subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._refused: str | None = None

    def __enter__(self) -> "Session":
        c = self._client
        c.on_connect = guarded("on_connect")(self._on_connect)
        c.on_message = guarded("on_message")(self._on_message)
        c.on_subscribe = guarded("on_subscribe")(self._on_subscribe)
        c.reconnect_delay_set(1, 2)
        try:
            c.connect(self.settings.host, self.settings.port, keepalive=30)
        except OSError as exc:
            raise SessionError(
                f"cannot reach the broker at {self.settings.host}:{self.settings.port}: {exc}"
            ) from None
        c.loop_start()
        if not self._connected.wait(self.connect_timeout):
            end_loop(c)
            why = self._refused or "no answer"
            raise SessionError(
                f"cannot log in to the broker at {self.settings.host}:{self.settings.port}: {why}"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.disconnect()
        end_loop(self._client)

    # -- paho's thread -------------------------------------------------------------------

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self._refused = reason_text(reason)
            return
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning("%d messages dropped: more than %d unread", self.dropped, INBOX)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        self._subscribed.put(list(reasons))

    # -- the caller's thread -----------------------------------------------------------------

    def subscribe(self, *filters: str) -> None:
        """Subscribe (QoS 1) and wait for the broker's answer; a refusal is an error."""
        self._client.subscribe([(f, 1) for f in filters])
        try:
            reasons = self._subscribed.get(timeout=self.connect_timeout)
        except queue.Empty:
            raise SessionError("the broker did not answer a subscription") from None
        refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            raise SessionError(f"the broker refused to let us read {refused[0]}")

    def retained(self, *filters: str) -> list[tuple[str, bytes]]:
        """Subscribe to ``filters`` and return every message the broker holds for them
        (in order; newer ones may come with them); later ones follow in :meth:`messages`."""
        self.subscribe(*filters, self.sync_topic)
        self._client.publish(self.sync_topic, b"sync", qos=1)
        found: list[tuple[str, bytes]] = []
        for topic, payload in self.messages(self.connect_timeout):
            if topic == self.sync_topic:
                return found
            found.append((topic, payload))
        raise SessionError("the broker did not echo our marker: retained messages unknown")

    def messages(
        self, timeout: float, *, until: float | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """Messages as they come; ends after ``timeout`` s without one, or at ``until``
        (monotonic)."""
        while True:
            wait = timeout if until is None else min(timeout, until - time.monotonic())
            if wait <= 0:
                return
            try:
                yield self._inbox.get(timeout=wait)
            except queue.Empty:
                return

    def publish(self, topic: str, payload: bytes, *, timeout: float) -> None:
        """Publish at QoS 1 and wait until the broker has it."""
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise SessionError(f"could not publish to {topic}: {mqtt.error_string(info.rc)}")
