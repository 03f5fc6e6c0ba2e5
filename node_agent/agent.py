"""The node agent: one MQTT client that announces a node and reports its sensors.

An :class:`Agent` owns a paho client (network I/O in paho's thread) and is *ticked* by a
driver loop (:func:`drive`) that publishes telemetry when it is due. The real agent drives
one Agent; the simulated fleet drives hundreds from one loop in one process.

Lifecycle on the wire (docs/topics.md):
- will, registered before connecting: retained ``offline`` / ``lost`` on the status topic;
- on every (re)connect: subscribe to the node's ``cmd`` and ``status`` topics, publish
  retained ``online`` with this agent's ``instance`` (its start, then random digits);
- every ``interval`` seconds: ``telemetry`` with ``seq`` counting periods since start;
- on ``stop()``: retained ``offline`` / ``shutdown``, then a clean disconnect (which, by the
  MQTT spec, does not send the will).
"""

import heapq
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from node_agent.identity import Identity
from node_agent.life_runner import LifeRunner
from node_agent.runner import WorkRunner
from node_agent.sensors import Sensors
from piswarm import __version__, protocol
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
from piswarm.protocol.health import Health, HealthClock

log = logging.getLogger(__name__)

_PENDING_LIMIT = 1000  # QoS 1 publishes remembered for refusal messages


def instance_token(now: float) -> str:
    """24 hex digits: the agent's start in ms since the epoch, then 12 random ones. Two
    tokens order as their agents started (ties broken at random)."""
    return f"{int(now * 1000):012x}{secrets.token_hex(6)}"


@dataclass
class AgentStats:
    """Counters an operator (or a test) can read; approximate across threads."""

    telemetry_sent: int = 0
    telemetry_dropped: int = 0  # due while disconnected
    periods_missed: int = 0  # the driver was late by whole periods
    publish_refused: int = 0  # the broker answered with a failure reason code
    malformed: int = 0  # bad commands received
    callback_errors: int = 0
    connects: int = 0


class Agent:
    """One node on the broker. No I/O until :meth:`start`."""

    def __init__(
        self,
        *,
        node_id: str,
        settings: BrokerSettings,
        sensors: Sensors,
        identity: Identity,
        interval: float = 5.0,
        simulated: bool = False,
        version: str = __version__,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        wake: Callable[[], None] = lambda: None,
        runner: WorkRunner | None = None,
        life: LifeRunner | None = None,
    ) -> None:
        self.node_id = topics.validate_node_id(node_id)
        self.settings = settings
        self.sensors = sensors
        self.identity = identity
        self.interval = interval
        self.simulated = simulated
        self.version = version
        self.clock = clock
        self.wall_clock = wall_clock
        self.wake = wake
        self.runner = runner
        self.life = life
        if runner is not None:
            runner.wake = wake
        self.stats = AgentStats()
        self.instance = instance_token(wall_clock())
        self.client_id = ""  # unguessable, made at start()
        self.seq = 0
        self.connected = threading.Event()
        self.fatal: str | None = None  # set when the agent must stop (e.g. replaced)
        self._client: mqtt.Client | None = None
        self._stopping: mqtt.Client | None = None
        self._goodbye: mqtt.MQTTMessageInfo | None = None
        self._next_due: float | None = None
        self._send_now = False
        self._pending: OrderedDict[int, str] = OrderedDict()
        self._lock = threading.Lock()
        self._status_topic = topics.node_status(node_id)
        self._telemetry_topic = topics.node_telemetry(node_id)
        self._cmd_topic = topics.node_cmd(node_id)
        self._health_topic = topics.health(node_id)
        self._health = HealthClock()
        self.started = wall_clock()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, first_due: float | None = None) -> None:
        """Register the will and start connecting (retries until the broker answers)."""
        self.client_id = unique_client_id(self.node_id)
        client = new_client(self.client_id, self.settings)
        will = protocol.NodeOffline(node=self.node_id, ts=self.wall_clock(), reason="lost")
        client.will_set(self._status_topic, protocol.encode(will), qos=1, retain=True)
        count_error = self._count_callback_error
        client.on_connect = guarded("on_connect", count_error)(self._on_connect)
        client.on_disconnect = guarded("on_disconnect", count_error)(self._on_disconnect)
        client.on_publish = guarded("on_publish", count_error)(self._on_publish)
        client.on_subscribe = guarded("on_subscribe", count_error)(self._on_subscribe)
        client.on_message = guarded("on_message", count_error)(self._on_message)
        self._client = client
        self._next_due = first_due if first_due is not None else self.clock()
        connect_async(client, self.settings)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish retained ``offline``, disconnect cleanly and stop the network thread."""
        self.begin_stop()
        self.end_session(time.monotonic() + timeout)
        self.finish_stop()

    # A fleet stops in three passes over all its agents, so that nothing is waited for
    # one agent after another: with the broker gone, each goodbye waits for a PUBACK that
    # never comes and each thread sits up to a second in paho's reconnect back-off, which
    # one by one is minutes for 240 nodes.

    def begin_stop(self) -> None:
        """Pass 1: publish the retained ``offline`` goodbye (no waiting)."""
        client = self._client
        if client is None:
            return
        self._stopping, self._client = client, None
        if self.runner is not None:
            self.runner.release()
        if self.life is not None:
            self.life.stop()
        if self.connected.is_set() and self.fatal is None:
            offline = protocol.NodeOffline(
                node=self.node_id, ts=self.wall_clock(), reason="shutdown"
            )
            self._goodbye = client.publish(
                self._status_topic, protocol.encode(offline), qos=1, retain=True
            )

    def end_session(self, deadline: float) -> None:
        """Pass 2: wait (until ``deadline``, monotonic) for the goodbye, then disconnect."""
        client, goodbye, self._goodbye = self._stopping, self._goodbye, None
        if client is None:
            return
        if goodbye is not None and self.connected.is_set():
            try:
                goodbye.wait_for_publish(max(0.0, deadline - time.monotonic()))
                confirmed = goodbye.is_published()
            except (RuntimeError, ValueError) as exc:  # paho: not connected / not queued
                log.warning("%s: offline status not confirmed: %s", self.node_id, exc)
            else:
                if not confirmed:
                    log.warning("%s: offline status not confirmed before shutdown", self.node_id)
        client.disconnect()

    def finish_stop(self) -> None:
        """Pass 3: wait for the network thread to end."""
        client, self._stopping = self._stopping, None
        if client is not None:
            end_loop(client)
        self.connected.clear()

    # -- the driver's side ----------------------------------------------------------------

    def tick(self, now: float) -> float:
        """Publish telemetry if due and let the runner work; return when the next tick is
        due (``clock`` time)."""
        if self._next_due is None:
            return now + self.interval
        runner_due = float("inf")
        if self.runner is not None:
            online = self._client is not None and self.connected.is_set()
            runner_due = self.runner.tick(now, self._publish_for_runner if online else None)
        if self._send_now:
            self._send_now = False
            self.publish_telemetry()
        self._publish_health(now)
        if now >= self._next_due:
            missed = int((now - self._next_due) // self.interval)
            if missed:
                self.stats.periods_missed += missed
                self.seq += missed
            self._next_due += (missed + 1) * self.interval
            self.publish_telemetry()
        return min(self._next_due, runner_due)

    def health(self) -> Health:
        """The counters ``piswarm status --health`` shows for this node (its workers and
        Life runner included; each strip reports its own in its progress messages)."""
        stats, runner, life = self.stats, self.runner, self.life
        return Health(
            name=self.node_id,
            process="agent",
            ts=self.wall_clock(),
            started=self.started,
            malformed=stats.malformed
            + (runner.stats.malformed if runner else 0)
            + (life.malformed if life else 0),
            refused=stats.publish_refused
            + (runner.stats.rejected if runner else 0)
            + (life.refused if life else 0),
            dropped=stats.telemetry_dropped + (runner.stats.assigns_dropped if runner else 0),
            errors=stats.callback_errors + (life.errors if life else 0),
        )

    def _publish_health(self, now: float) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            return
        health = self.health()
        if self._health.due(now, health.counters()):
            client.publish(self._health_topic, protocol.encode(health), qos=0, retain=True)

    def _publish_for_runner(self, topic: str, payload: bytes, qos: int) -> None:
        self.publish(topic, payload, qos=qos)

    def telemetry(self) -> protocol.Telemetry:
        """A telemetry message from the sensors, numbered with the current ``seq``."""
        reading = self.sensors.read()
        return protocol.Telemetry(
            node=self.node_id,
            seq=self.seq,
            ts=self.wall_clock(),
            temp_c=None if reading.temp_c is None else round(reading.temp_c, 2),
            temp_source=reading.temp_source,
            throttle=reading.throttle,
            cpu_percent=round(reading.cpu_percent, 1),
            load=tuple(round(x, 2) for x in reading.load),
            mem_percent=round(reading.mem_percent, 1),
            freq_mhz=None if reading.freq_mhz is None else round(reading.freq_mhz, 1),
            uptime_s=round(reading.uptime_s, 1),
        )

    def publish_telemetry(self) -> None:
        client = self._client
        message = self.telemetry()
        self.seq += 1
        if client is None or not self.connected.is_set():
            self.stats.telemetry_dropped += 1
            return
        info = client.publish(self._telemetry_topic, protocol.encode(message), qos=0)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.stats.telemetry_sent += 1
        else:
            self.stats.telemetry_dropped += 1

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Publish on behalf of the node; a QoS 1 refusal by the broker is logged."""
        client = self._client
        if client is None:
            raise RuntimeError("agent not started")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            with self._lock:
                self._pending[info.mid] = topic
                while len(self._pending) > _PENDING_LIMIT:
                    self._pending.popitem(last=False)
        return info.mid

    @property
    def wants_tick(self) -> bool:
        """True when the agent has something to do before its next period."""
        return self._send_now or (self.runner is not None and self.runner.wants_tick)

    def request_telemetry(self) -> None:
        """Send telemetry at the next tick, out of period (the ``telemetry`` command)."""
        self._send_now = True
        self.wake()

    # -- paho callbacks (network thread; all wrapped by ``guarded``) ------------------------

    def _count_callback_error(self) -> None:
        self.stats.callback_errors += 1

    def birth(self) -> protocol.NodeOnline:
        return protocol.NodeOnline(
            node=self.node_id,
            ts=self.wall_clock(),
            host=self.identity.host,
            ip=self.identity.ip,
            version=self.version,
            cores=self.identity.cores,
            model=self.identity.model,
            telemetry_interval=self.interval,
            simulated=self.simulated,
            workers=0 if self.runner is None else self.runner.workers.count,
            backend=None if self.runner is None else self.runner.backend,
            life_strips=0 if self.life is None else self.life.max_strips,
            instance=self.instance,
        )

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("%s: broker refused the connection: %s", self.node_id, reason_text(reason))
            return
        self.stats.connects += 1
        if self.stats.connects > 1:
            log.info(
                "%s: reconnected to %s:%d", self.node_id, self.settings.host, self.settings.port
            )
        extra = [] if self.runner is None else self.runner.subscriptions()
        extra += [] if self.life is None else self.life.subscriptions()
        client.subscribe([(self._cmd_topic, 1), (self._status_topic, 1), *extra])
        self.publish(self._status_topic, protocol.encode(self.birth()), qos=1, retain=True)
        self.connected.set()
        if self.runner is not None:
            self.runner.on_connect()
        self.request_telemetry()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self.connected.clear()
        if self._client is not None:  # whatever the reason (0x8E too): paho reconnects
            log.warning("%s: disconnected (%s); reconnecting", self.node_id, reason_text(reason))

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any
    ) -> None:
        with self._lock:
            topic = self._pending.pop(mid, "?")
        if reason.is_failure:
            self.stats.publish_refused += 1
            log.warning(
                "%s: broker refused publish to %s: %s", self.node_id, topic, reason_text(reason)
            )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reasons: Sequence[ReasonCode],
        _props: Any,
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.error("%s: subscription refused: %s", self.node_id, reason_text(reason))

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.life is not None and self.life.handles(msg.topic):
            self.life.on_message(msg.topic, bytes(msg.payload))
            return
        if self.runner is not None and self.runner.handles(msg.topic):
            self.runner.on_message(msg.topic, bytes(msg.payload))
            return
        if msg.topic == self._status_topic:
            self._on_own_status(bytes(msg.payload))
            return
        try:
            command = protocol.decode_command(bytes(msg.payload))
        except protocol.ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("%s: ignored bad command %r: %s", self.node_id, msg.payload[:200], exc)
            return
        if command.cmd == "ping":
            pong = protocol.Pong(
                node=self.node_id, id=command.id, ts=self.wall_clock(), version=self.version
            )
            self.publish(topics.node_pong(self.node_id), protocol.encode(pong), qos=1)
        elif command.cmd == "telemetry":
            self.request_telemetry()

    def _on_own_status(self, payload: bytes) -> None:
        """A birth on this node's status topic from another agent that started later:
        two machines share this node id (a cloned SD card, a copied config). The older
        agent stops, as one kicked off by the newer used to; births of this agent's
        earlier runs (older instances) are history, not company."""
        if not payload:
            return
        try:
            status = protocol.decode_status(payload)
        except protocol.ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("%s: ignored a bad status of its own: %s", self.node_id, exc)
            return
        if not isinstance(status, protocol.NodeOnline) or status.instance <= self.instance:
            return
        self.fatal = (
            f"another agent runs as node {self.node_id!r} (host {status.host}, ip "
            f"{status.ip or '?'}), started after this one: two machines share this node id"
        )
        log.error("%s: %s", self.node_id, self.fatal)
        self.wake()


def drive(
    agents: Sequence[Agent],
    stop: threading.Event,
    wake: threading.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[threading.Event, float], bool] = threading.Event.wait,
    slot: float = 0.02,
) -> None:
    """Tick ``agents`` when each is due, until ``stop`` is set or one hits a fatal error.

    A heap keyed by due time means a wake-up touches only the agents that are due, so a
    fleet of 240 staggered agents costs one tick per message, not 240. ``wake`` is what
    the agents' ``wake`` callbacks set (out-of-period telemetry, a fatal error) and what a
    signal handler sets after ``stop``: it cuts the wait short. Agents due within ``slot``
    seconds of each other are ticked in one wake-up (240 nodes at 1 Hz: ~50 wake-ups a
    second instead of 240); each message still carries the time it was taken. ``clock``
    and ``wait`` (``wake.wait`` with a timeout: True when woken) go together, so a test
    can run the loop on a hand clock.
    """
    now = clock()
    heap = [(agent.tick(now), i) for i, agent in enumerate(agents)]
    heapq.heapify(heap)
    while not stop.is_set():
        timeout = heap[0][0] - clock() + slot if heap else 1.0
        if wait(wake, max(0.0, timeout)):
            wake.clear()
            if any(agent.fatal for agent in agents):
                return
            now = clock()
            for agent in agents:  # rare: connects and commands
                if agent.wants_tick:
                    agent.tick(now)
        horizon = clock() + slot
        while heap and heap[0][0] <= horizon:
            _due, i = heapq.heappop(heap)
            heapq.heappush(heap, (agents[i].tick(horizon), i))
