"""Test-side MQTT: a subscriber that records messages and waits on them (never sleeps)."""

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from piswarm.mqtt import end_loop

_ids = itertools.count()


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool
    at: float


class Recorder:
    """Connects as ``user``, subscribes to ``filters``, keeps every message it receives."""

    def __init__(self, port: int, user, filters=("piswarm/#",), *, host="127.0.0.1"):
        self.messages: list[Msg] = []
        self._cond = threading.Condition()
        self.connect_reason = None
        self.connected = threading.Event()
        self.published: queue.Queue = queue.Queue()
        self.client_id = f"test-{user.name if user else 'anon'}-{next(_ids)}"
        self.user_name = user.name if user else "anon"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
        )
        if user is not None:
            self.client.username_pw_set(user.name, user.password)
        self.filters = filters
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, _u, _f, reason, _p):
        self.connect_reason = reason
        if not reason.is_failure:
            if self.filters:
                client.subscribe([(f, 1) for f in self.filters])
            else:
                self.connected.set()

    def _on_subscribe(self, _c, _u, _mid, _reasons, _p):
        self.connected.set()  # "connected" means subscribed too: no race with publishers

    def _on_message(self, _c, _u, msg):
        with self._cond:
            self.messages.append(Msg(msg.topic, bytes(msg.payload), msg.retain, time.time()))
            self._cond.notify_all()

    def _on_publish(self, _c, _u, mid, reason, _p):
        self.published.put((mid, reason))

    @property
    def submit_topic(self) -> str:
        """Where this user submits jobs (``piswarm/jobs/submit/<user>``)."""
        return f"piswarm/jobs/submit/{self.user_name}"

    def wait_connected(self, timeout=10.0):
        assert self.connected.wait(timeout), f"not connected: {self.connect_reason}"
        return self

    def wait_for(self, pred: Callable[[Msg], bool], timeout=10.0) -> Msg:
        """The first message (already received or arriving) that satisfies ``pred``."""
        msg = self.first(pred, timeout)
        if msg is None:
            with self._cond:
                topics = sorted({m.topic for m in self.messages})[:20]
            raise AssertionError(f"no matching message within {timeout}s; saw {topics}")
        return msg

    def first(self, pred: Callable[[Msg], bool], timeout: float) -> Msg | None:
        """Like :meth:`wait_for`, but None when nothing matches within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for msg in self.messages[seen:]:
                    if pred(msg):
                        return msg
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def wait_for_all(self, pred: Callable[[Msg], bool], count: int, timeout=10.0) -> list[Msg]:
        """The first ``count`` messages that satisfy ``pred``, once that many have come."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if pred(m)]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} messages within {timeout}s")
                self._cond.wait(left)

    def matching(self, pred: Callable[[Msg], bool]) -> list[Msg]:
        with self._cond:
            return [m for m in self.messages if pred(m)]

    def publish(self, topic, payload, qos=1, retain=False):
        """Publish and return the broker's reason code for QoS 1 (PUBACK)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        while True:
            mid, reason = self.published.get(timeout=10)
            if mid == info.mid:
                return reason

    def close(self):
        self.client.disconnect()
        end_loop(self.client)
