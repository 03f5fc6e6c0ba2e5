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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from node_agent.identity import Identity
from node_agent.life_runner import LifeRunner
from node_agent.runner import WorkRunner
from node_agent.sensors import Sensors
from piswarm import __version__, protocol
from piswarm.client import Message, MqttClient, Will
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import topics
from piswarm.protocol.health import Health, HealthClock

log = logging.getLogger(__name__)


def instance_token(now: float) -> str:
    """24 hex digits: the agent's start in ms since the epoch, then 12 random ones. Two
    tokens order as their agents started (ties broken at random)."""
    return f"{int(now * 1000):012x}{secrets.token_hex(6)}"


@dataclass
class AgentStats:
    """Counters an operator (or a test) can read; approximate across threads. The MQTT
    client keeps its own (connects, refused publishes, callback errors): ``Agent.mqtt``."""

    telemetry_sent: int = 0
    telemetry_dropped: int = 0  # due while disconnected
    periods_missed: int = 0  # the driver was late by whole periods
    malformed: int = 0  # bad commands received


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
        self.seq = 0
        self.fatal: str | None = None  # set when the agent must stop (e.g. replaced)
        self._next_due: float | None = None
        self._send_now = False
        self._status_topic = topics.node_status(node_id)
        self._telemetry_topic = topics.node_telemetry(node_id)
        self._cmd_topic = topics.node_cmd(node_id)
        self._health_topic = topics.health(node_id)
        self._health = HealthClock()
        self.started = wall_clock()
        will = protocol.NodeOffline(node=self.node_id, ts=self.started, reason="lost")
        self.mqtt = MqttClient(
            settings,
            role=self.node_id,
            subscriptions=self._subscriptions,
            handler=self._on_message,
            will=Will(self._status_topic, protocol.encode(will)),
            on_connect=self._on_connect,
            clock=wall_clock,
            name=self.node_id,
        )
        self.client_id = self.mqtt.client_id  # unguessable
        self.connected = self.mqtt.connected

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, first_due: float | None = None) -> None:
        """Start connecting, the will registered (retries until the broker answers)."""
        self._next_due = first_due if first_due is not None else self.clock()
        self.mqtt.start()

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
        if not self.mqtt.running:
            return
        if self.runner is not None:
            self.runner.release()
        if self.life is not None:
            self.life.stop()
        goodbye = None
        if self.fatal is None:  # a replaced agent leaves the status to its successor
            offline = protocol.NodeOffline(
                node=self.node_id, ts=self.wall_clock(), reason="shutdown"
            )
            goodbye = Will(self._status_topic, protocol.encode(offline))
        self.mqtt.begin_stop(goodbye)

    def end_session(self, deadline: float) -> None:
        """Pass 2: wait (until ``deadline``, monotonic) for the goodbye, then disconnect."""
        self.mqtt.end_session(deadline)

    def finish_stop(self) -> None:
        """Pass 3: wait for the network thread to end."""
        self.mqtt.finish_stop()

    # -- the driver's side ----------------------------------------------------------------

    def tick(self, now: float) -> float:
        """Publish telemetry if due and let the runner work; return when the next tick is
        due (``clock`` time)."""
        if self._next_due is None:
            return now + self.interval
        runner_due = float("inf")
        if self.runner is not None:
            online = self.mqtt.running and self.connected.is_set()
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
            refused=self.mqtt.stats.publish_refused
            + self.mqtt.stats.subscribe_refused
            + (runner.stats.rejected if runner else 0)
            + (life.refused if life else 0),
            dropped=stats.telemetry_dropped + (runner.stats.assigns_dropped if runner else 0),
            errors=self.mqtt.stats.callback_errors + (life.errors if life else 0),
        )

    def _publish_health(self, now: float) -> None:
        if not self.mqtt.running or not self.connected.is_set():
            return
        health = self.health()
        if self._health.due(now, health.counters()):
            self.mqtt.publish(self._health_topic, protocol.encode(health), qos=0, retain=True)

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
            busy_s=None if self.runner is None else round(self.runner.stats.busy_s, 6),
        )

    def publish_telemetry(self) -> None:
        message = self.telemetry()
        self.seq += 1
        if not self.connected.is_set():
            self.stats.telemetry_dropped += 1
            return
        info = self.mqtt.publish(self._telemetry_topic, protocol.encode(message), qos=0)
        if info is not None and info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.stats.telemetry_sent += 1
        else:
            self.stats.telemetry_dropped += 1

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Publish on behalf of the node; a QoS 1 refusal by the broker is logged and
        counted by the client."""
        info = self.mqtt.publish(topic, payload, qos=qos, retain=retain)
        if info is None:
            raise RuntimeError("agent not started, or stopped")
        return info.mid

    @property
    def wants_tick(self) -> bool:
        """True when the agent has something to do before its next period."""
        return self._send_now or (self.runner is not None and self.runner.wants_tick)

    def request_telemetry(self) -> None:
        """Send telemetry at the next tick, out of period (the ``telemetry`` command)."""
        self._send_now = True
        self.wake()

    # -- paho's thread (every callback guarded and counted by the client) -----------------

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

    def _subscriptions(self) -> list[tuple[str, int]]:
        extra = [] if self.runner is None else self.runner.subscriptions()
        extra += [] if self.life is None else self.life.subscriptions()
        return [(self._cmd_topic, 1), (self._status_topic, 1), *extra]

    def _on_connect(self) -> None:
        """After the subscriptions went out: the birth, then work and telemetry."""
        self.publish(self._status_topic, protocol.encode(self.birth()), qos=1, retain=True)
        if self.runner is not None:
            self.runner.on_connect()
        self.request_telemetry()

    def _on_message(self, msg: Message) -> None:
        if self.life is not None and self.life.handles(msg.topic):
            self.life.on_message(msg.topic, msg.payload)
            return
        if self.runner is not None and self.runner.handles(msg.topic):
            self.runner.on_message(msg.topic, msg.payload)
            return
        if msg.topic == self._status_topic:
            self._on_own_status(msg.payload)
            return
        try:
            command = protocol.decode_command(msg.payload)
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
