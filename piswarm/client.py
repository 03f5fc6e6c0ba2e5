"""The one MQTT client every piswarm process uses (paho underneath).

Seven clients (the agent, the coordinator and its janitor, the display's feed, the
command-line session, a Life strip, deploy's watcher) each used to wire paho by hand and
each repeated connect, resubscribe, guard and stop, not always alike. :class:`MqttClient`
does it once; its surface follows aiomqtt's ``Client`` (a context manager; ``subscribe``,
``publish``, ``messages``), kept synchronous because paho is:

- **connect with backoff**: paho retries 1, 2, 4 ... 30 s apart; a refusal is kept in
  :attr:`refused` and logged;
- **resubscribe on every connect**: what was subscribed is subscribed again before the
  owner's ``on_connect`` runs (so a birth published there finds its answers heard);
- **guarded callbacks, counted**: nothing raises into paho (it would kill its thread);
  a failing callback is logged and counted in :attr:`stats`;
- **a bounded inbox with counted drops**, or a ``handler`` called on paho's thread for
  owners that only sort or count (it must not block);
- **refused publishes counted**: MQTT v5 brokers answer a QoS 1 publish the ACL denies
  with a reason code; it is logged and counted rather than lost silently;
- **a clean stop**: an optional goodbye, waited for, then DISCONNECT and every socket
  closed (:func:`piswarm.mqtt.end_loop`). A fleet of simulated agents stops in three
  passes (:meth:`begin_stop`, :meth:`end_session`, :meth:`finish_stop`) so nothing is
  waited for one client after another.

A client is threaded (paho's network thread runs it) or, for a Life strip that drives
the network from its compute loop, looped by its owner (:meth:`loop`).
"""

import logging
import queue
import select
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from piswarm.errors import PiswarmError
from piswarm.inbox import DEFAULT_MAX_BYTES, Inbox
from piswarm.mqtt import (
    BrokerSettings,
    MqttVersion,
    connect_async,
    end_loop,
    guarded,
    new_client,
    reason_text,
    unique_client_id,
)

log = logging.getLogger(__name__)

PENDING_LIMIT = 1000
"""QoS 1 publishes remembered until the broker answers, to name a refused one's topic
(paho's own queue holds at most as many; older ones are forgotten, not the messages)."""

Subscriptions = Sequence[tuple[str, int]]


class MqttError(PiswarmError):
    """The broker could not be reached, refused us, or refused a subscription."""


class Message(NamedTuple):
    """A message as received: topic, payload, when (the client's clock) and whether the
    broker sent it from its retained store."""

    topic: str
    payload: bytes
    at: float
    retain: bool = False


@dataclass(frozen=True)
class Will:
    """A message the broker publishes for us if we vanish (and, as a goodbye, the one
    we publish ourselves when we stop cleanly: MQTT sends no will on DISCONNECT)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass
class ClientStats:
    """Counters anyone may read (approximate across threads)."""

    connects: int = 0
    received: int = 0  # messages that arrived (into the inbox, or to the handler)
    callback_errors: int = 0  # callbacks that raised (each logged)
    dropped: int = 0  # messages the inbox had no room for
    publish_refused: int = 0  # publishes the broker answered with a failure reason
    publish_failed: int = 0  # publishes paho would not even queue
    subscribe_refused: int = 0  # filters the broker would not let us read


class ReadAhead:
    """A connected client's plain TCP socket, read ahead: one ``recv`` takes what the
    kernel holds (up to ``CHUNK`` bytes) and paho's small reads are served from it.

    paho's own :meth:`~paho.mqtt.client.Client.loop` asks an SSL socket's ``pending()``
    before it waits, so bytes held here are never forgotten by a loop either. Only
    :meth:`MqttClient.pump` puts one in place (a new connection gets a new socket)."""

    CHUNK = 65536

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._at = 0

    @classmethod
    def around(cls, client: mqtt.Client | None) -> "ReadAhead | None":
        """The client's socket, read ahead (wrapped now if it is a plain one)."""
        if client is None:
            return None
        sock = client.socket()
        if isinstance(sock, ReadAhead) or sock is None:
            return sock
        if type(sock) is not socket.socket:  # (piswarm connects over plain TCP only)
            return None
        ahead = cls(sock)
        client._sock = ahead  # the one attribute paho reads from
        return ahead

    def recv(self, size: int) -> bytes:
        buf, at = self._buf, self._at
        if at >= len(buf):
            buf = self._sock.recv(self.CHUNK)  # BlockingIOError and EOF (b"") pass up
            if not buf:
                return buf
            at = 0
        out = buf[at : at + size]
        self._buf, self._at = buf, at + len(out)
        return out

    def pending(self) -> int:
        """Bytes read and not yet taken (what paho asks of an SSL socket)."""
        return len(self._buf) - self._at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class MqttClient:
    """One connection to the broker; see the module. No I/O until :meth:`start`."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        role: str,
        subscriptions: Subscriptions | Callable[[], Subscriptions] = (),
        handler: Callable[[Message], None] | None = None,
        inbox: int = 10_000,
        inbox_bytes: int = DEFAULT_MAX_BYTES,
        will: Will | None = None,
        on_connect: Callable[[], None] | None = None,
        on_error: Callable[[], None] | None = None,
        threaded: bool = True,
        clock: Callable[[], float] = time.time,
        ticks: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        name: str | None = None,
        version: MqttVersion = "5",
        connect_timeout: float | None = None,
    ) -> None:
        """``subscriptions`` (or a function giving them) are made at every connect;
        ``handler`` receives messages on paho's thread instead of the inbox (which then
        stays empty); ``on_connect`` runs on paho's thread after the subscriptions went
        out; ``on_error`` is called when a callback raised (beside the count); ``version``
        "3.1.1" is for a client that only listens (see :func:`~piswarm.mqtt.new_client`);
        ``connect_timeout`` bounds each TCP connect (paho's default: 5 s), which a looped
        client waits out in its owner's thread."""
        self.settings = settings
        self.client_id = unique_client_id(role)
        self.name = name or role
        self.threaded = threaded
        self.version = version
        self.connect_timeout = connect_timeout
        self.handler = handler
        self.will = will
        self.clock, self.ticks, self.sleep = clock, ticks, sleep
        self.stats = ClientStats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the connect's subscriptions are answered
        self.refused: str | None = None  # why the broker refused the connection, if it did
        self.inbox: Inbox[Message] = Inbox(maxsize=max(1, inbox), max_bytes=inbox_bytes)
        self._initial = subscriptions
        self._extra: dict[str, int] = {}  # subscribed since, kept over reconnects
        self._on_connect_hook = on_connect
        self._on_error = on_error
        self._client: mqtt.Client | None = None
        self._stopping: mqtt.Client | None = None
        self._goodbye: mqtt.MQTTMessageInfo | None = None
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, str] = OrderedDict()  # mid -> topic
        self._answered = threading.Condition()  # subscription answers, by mid
        self._answers: OrderedDict[int, list[ReasonCode]] = OrderedDict()
        self._connect_mid: int | None = None
        self._retry_at = 0.0  # a looped client: when to try the broker again (0: connected)
        self._delay = 1.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "MqttClient":
        """Start connecting: in paho's thread, retrying until the broker answers (a
        looped client connects now; a broker that is down is retried from :meth:`loop`)."""
        client = self._make()
        if self.threaded:
            connect_async(client, self.settings)
            return self
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive)
        except OSError as exc:
            log.warning("%s: broker not reachable yet: %s", self.name, exc)
            self._retry_at = self.ticks() + self._delay
        return self

    def connect(self, timeout: float) -> "MqttClient":
        """Connect now and wait until logged in, for a command that cannot wait: an
        :class:`MqttError` saying why not (unreachable at once; refused; no answer)."""
        client = self._make()
        where = f"{self.settings.host}:{self.settings.port}"
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive)
        except OSError as exc:
            self._client = None
            end_loop(client)
            raise MqttError(f"cannot reach the broker at {where}: {exc}") from None
        if self.threaded:
            client.loop_start()
        deadline = self.ticks() + timeout
        while not self.connected.is_set():
            left = deadline - self.ticks()
            if self.refused is not None or left <= 0:
                self.stop()
                raise MqttError(
                    f"cannot log in to the broker at {where}: {self.refused or 'no answer'}"
                )
            if self.threaded:
                self.connected.wait(min(left, 0.1))
            else:
                self.loop(min(left, 0.1))
        return self

    def _make(self) -> mqtt.Client:
        if self._client is not None:
            raise RuntimeError(f"{self.name}: started twice")
        client = new_client(self.client_id, self.settings, self.version)
        if self.connect_timeout is not None:
            client.connect_timeout = self.connect_timeout
        if self.will is not None:
            w = self.will
            client.will_set(w.topic, w.payload, qos=w.qos, retain=w.retain)
        wrap = guarded(f"{self.name} callback", self._count_error)
        client.on_connect = wrap(self._on_connect)
        client.on_disconnect = wrap(self._on_disconnect)
        client.on_subscribe = wrap(self._on_subscribe)
        client.on_publish = wrap(self._on_publish)
        client.on_message = wrap(self._on_message)
        self._client = client
        return client

    def __enter__(self) -> "MqttClient":
        return self.connect(10.0)

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self, goodbye: Will | None = None, timeout: float = 3.0) -> None:
        """Publish ``goodbye`` (if connected) and wait for it, then disconnect and close."""
        self.begin_stop(goodbye)
        self.end_session(self.ticks() + timeout)
        self.finish_stop()

    def begin_stop(self, goodbye: Will | None = None) -> None:
        """Pass 1: publish the goodbye without waiting; nothing more is published."""
        client, self._client = self._client, None
        if client is None:
            return
        self._stopping = client
        if goodbye is not None and self.connected.is_set():
            self._goodbye = client.publish(
                goodbye.topic, goodbye.payload, qos=goodbye.qos, retain=goodbye.retain
            )

    def end_session(self, deadline: float) -> None:
        """Pass 2: wait (until ``deadline``, on ``ticks``) for the goodbye; disconnect."""
        client, goodbye, self._goodbye = self._stopping, self._goodbye, None
        if client is None:
            return
        if goodbye is not None and self.connected.is_set():
            try:
                goodbye.wait_for_publish(max(0.0, deadline - self.ticks()))
                if not goodbye.is_published():
                    log.warning("%s: goodbye not confirmed before the stop", self.name)
            except (RuntimeError, ValueError) as exc:  # paho: not connected / not queued
                log.warning("%s: goodbye not confirmed: %s", self.name, exc)
        client.disconnect()

    def finish_stop(self) -> None:
        """Pass 3: end paho's thread and close every socket."""
        client, self._stopping = self._stopping, None
        if client is not None:
            end_loop(client)
        self.connected.clear()

    @property
    def running(self) -> bool:
        """Started and not stopped."""
        return self._client is not None

    # -- the owner's side --------------------------------------------------------------------

    def subscribe(self, *filters: str, qos: int = 1, timeout: float | None = None) -> None:
        """Subscribe now (when connected) and at every reconnect. With ``timeout``, wait
        for the broker's answer: :class:`MqttError` if it refuses or does not answer."""
        with self._lock:
            for f in filters:
                self._extra[f] = qos
        client = self._client
        if client is None or not self.connected.is_set():
            if timeout is not None:
                raise MqttError(f"{self.name}: not connected to the broker")
            return
        result, mid = client.subscribe([(f, qos) for f in filters])  # never under our lock
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"{self.name}: subscribe failed: {mqtt.error_string(result)}")
        if timeout is None:
            return
        reasons = self._answer(mid, timeout)
        if reasons is None:
            raise MqttError(f"{self.name}: the broker did not answer a subscription")
        refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            raise MqttError(f"the broker refused to let {self.name} read {refused[0]}")

    def _answer(self, mid: int, timeout: float) -> list[ReasonCode] | None:
        """The broker's answer to subscription ``mid`` (paho's thread files it)."""
        deadline = self.ticks() + timeout
        with self._answered:
            while mid not in self._answers:
                left = deadline - self.ticks()
                if left <= 0:
                    return None
                if self.threaded:
                    self._answered.wait(left)
                else:
                    self._answered.release()
                    try:
                        self.loop(min(left, 0.05))
                    finally:
                        self._answered.acquire()
            return self._answers.pop(mid)

    def unsubscribe(self, *filters: str) -> None:
        with self._lock:
            for f in filters:
                self._extra.pop(f, None)
        client = self._client
        if client is not None:
            client.unsubscribe(list(filters))

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> mqtt.MQTTMessageInfo | None:
        """Queue a publish (``None`` once stopped). Whether the broker refuses it comes
        later, logged and counted."""
        client = self._client
        if client is None:
            return None
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.stats.publish_failed += 1
            log.warning(
                "%s: publish to %s not queued: %s", self.name, topic, mqtt.error_string(info.rc)
            )
        elif qos > 0:  # queued (while disconnected too): the broker's answer comes later
            with self._lock:
                self._pending[info.mid] = topic
                while len(self._pending) > PENDING_LIMIT:
                    self._pending.popitem(last=False)
        return info

    def publish_wait(
        self, topic: str, payload: bytes, *, timeout: float, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and wait until the broker has it: :class:`MqttError` if it does not."""
        info = self.publish(topic, payload, qos=qos, retain=retain)
        if info is None:
            raise MqttError(f"{self.name}: stopped, nothing published to {topic}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise MqttError(f"could not publish to {topic}: {exc}") from None
        if not info.is_published():
            raise MqttError(f"the broker did not take the publish to {topic} in {timeout:g} s")

    def get(self, timeout: float) -> Message | None:
        """The next message from the inbox, or ``None`` after ``timeout`` seconds."""
        try:
            return self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return None

    def drain(self, limit: int = 100_000) -> list[Message]:
        """Everything in the inbox (up to ``limit``), without waiting."""
        return self.inbox.take(limit)

    def messages(self, timeout: float, *, until: float | None = None) -> Iterator[Message]:
        """Messages as they come; ends after ``timeout`` s without one, or at ``until``
        (on ``ticks``)."""
        while True:
            wait = timeout if until is None else min(timeout, until - self.ticks())
            if wait <= 0:
                return
            message = self.get(wait)
            if message is None:
                return
            yield message

    def pump(self, limit: int) -> int:
        """A looped client's turn at the network for an owner that drains its inbox: read
        what has arrived, up to ``limit`` messages, without waiting for more; how many
        came. paho reads a packet a call, a byte or two at a time (four system calls a
        message): its socket is wrapped in a :class:`ReadAhead` that takes what the
        kernel holds at once, and packets are read straight from it, a poll only when one
        brings no message (28 -> 13.5 us a telemetry message, measured)."""
        stats = self.stats
        start = stats.received
        self.loop(0)  # writes, keep-alive, a reconnect when due, and a first read
        client = self._client
        sock = ReadAhead.around(client)
        if client is None or sock is None:
            return stats.received - start
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        for _turn in range(limit + 16):  # bounded, whatever the packets are
            if stats.received - start >= limit:
                break
            before = stats.received
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                self._lost()
                break
            if client.want_write():  # an ack, or what a callback queued: out now
                client.loop_write()
            if stats.received == before and not sock.pending() and not poller.poll(0):
                break  # nothing more has arrived (a packet that was not a message, too)
        return stats.received - start

    def _lost(self) -> None:
        self.connected.clear()
        self._retry_at = self.ticks() + self._delay

    def loop(self, timeout: float) -> None:
        """A looped client's turn at the network: read, write, keep alive, and when the
        broker is gone reconnect, 1 s and then up to 30 s apart (on ``ticks``)."""
        client = self._client
        if client is None:
            return
        if self._retry_at:
            wait = self._retry_at - self.ticks()
            if wait > 0:
                self.sleep(min(wait, timeout))
                return
            try:
                client.reconnect()
            except OSError as exc:
                self._delay = min(30.0, self._delay * 2)
                self._retry_at = self.ticks() + self._delay
                log.warning(
                    "%s: reconnect failed (%s); next try in %.0f s", self.name, exc, self._delay
                )
                return
            self._retry_at = 0.0
        rc = client.loop(timeout)
        if rc in (mqtt.MQTT_ERR_CONN_LOST, mqtt.MQTT_ERR_NO_CONN):
            self._lost()

    # -- paho's thread -----------------------------------------------------------------------

    def _count_error(self) -> None:
        self.stats.callback_errors += 1
        if self._on_error is not None:
            self._on_error()

    def _subscriptions(self) -> list[tuple[str, int]]:
        initial = self._initial() if callable(self._initial) else self._initial
        with self._lock:
            merged = dict(initial) | self._extra
        return list(merged.items())

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            self.refused = reason_text(reason)
            log.error("%s: the broker refused the connection: %s", self.name, self.refused)
            return
        self.refused = None
        self._delay = 1.0
        self.stats.connects += 1
        if self.stats.connects > 1:
            log.info("%s: reconnected to %s:%d", self.name, self.settings.host, self.settings.port)
        self.subscribed.clear()
        wanted = self._subscriptions()
        if wanted:
            _result, self._connect_mid = client.subscribe(wanted)
        else:
            self.subscribed.set()
        if self._on_connect_hook is not None:
            self._on_connect_hook()  # a birth goes out before anything the owner sends
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any
    ) -> None:
        self.connected.clear()
        if self._client is not None:  # whatever the reason (0x8E too): we reconnect
            log.warning("%s: disconnected (%s); reconnecting", self.name, reason_text(reason))

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, reasons: Sequence[ReasonCode], _p: Any
    ) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            self.stats.subscribe_refused += len(refused)
            log.error("%s: subscription refused: %s", self.name, reason_text(refused[0]))
        with self._answered:
            self._answers[mid] = list(reasons)
            while len(self._answers) > 64:  # answers nobody waits for
                self._answers.popitem(last=False)
            self._answered.notify_all()
        if mid == self._connect_mid:
            self.subscribed.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._lock:
            topic = self._pending.pop(mid, "?")
        if reason.is_failure:
            self.stats.publish_refused += 1
            log.warning(
                "%s: broker refused publish to %s: %s", self.name, topic, reason_text(reason)
            )

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        message = Message(msg.topic, bytes(msg.payload), self.clock(), bool(msg.retain))
        if self.handler is not None:
            self.handler(message)
            return
        try:
            self.inbox.put_nowait(message)
        except queue.Full:
            self.stats.dropped += 1
            dropped = self.stats.dropped
            if dropped in (1, 10, 100) or dropped % 1000 == 0:
                log.warning("%s: inbox full, %d messages dropped so far", self.name, dropped)
