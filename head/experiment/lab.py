"""The room as an experiment sees it, through one MQTT session.

One session carries everything, read in order by the thread that runs the experiment:
the nodes' births (who is online, with how many workers and strips, which version and
backend), their telemetry (busy seconds, temperature, throttling), the strips' progress
(a Life strip's busy seconds), the broker's ``$SYS`` totals (messages and bytes), the
coordinator's replies and the current job's status. Nothing here blocks paho's thread:
the session's inbox holds what arrives until :meth:`Lab.pump` reads it.
"""

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from head.jobclient import JobClient, Status
from piswarm import protocol
from piswarm.fleet import MAX_ROOM_NODES
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, jobs, life, topics
from piswarm.protocol.placement import Placement

log = logging.getLogger(__name__)


@dataclass
class NodeSeen:
    """What the experiment knows of one node."""

    workers: int = 0
    strips: int = 0
    version: str = ""
    backend: str | None = None
    online: bool = False
    busy_s: float | None = None  # as its latest telemetry said
    heard: float = 0.0  # when its latest telemetry came (monotonic)


@dataclass
class Window:
    """What the nodes of a run said while it ran."""

    nodes: tuple[str, ...]
    job: str | None = None
    busy_at_start: dict[str, float | None] = field(default_factory=dict)
    temp_max: dict[str, float] = field(default_factory=dict)
    temp_sum: float = 0.0
    temp_count: int = 0
    throttled: set[str] = field(default_factory=set)
    strips: dict[tuple[int, int], tuple[str, float]] = field(default_factory=dict)
    """(epoch, strip) -> (node, busy seconds) of a Life job's strips, the latest report"""


class Lab(JobClient):
    """A session that follows the room (a context manager, as every session)."""

    def __init__(self, settings: BrokerSettings, *, connect_timeout: float = 10.0) -> None:
        super().__init__(settings, connect_timeout=connect_timeout)
        self.nodes: OrderedDict[str, NodeSeen] = OrderedDict()
        self.sys: dict[str, int] = {}
        self.replies: dict[str, jobs.JobReply] = {}
        self.status: Status | None = None
        self.window: Window | None = None
        self.malformed = 0
        self.running_jobs: list[Status] = []  # when the session opened

    def __enter__(self) -> "Lab":
        super().__enter__()
        self._wait_for_coordinator(self.connect_timeout)
        self.running_jobs = [s for s in self.snapshot() if s.state == "running"]
        for topic, payload in self.retained(topics.NODE_STATUS_FILTER):
            self._take(topic, payload)
        self.subscribe(
            topics.NODE_TELEMETRY_FILTER,
            topics.LIFE_PROGRESS_FILTER,
            topics.JOBS_REPLIES,
            *topics.SYS_COUNTERS,
        )
        # The broker's totals are retained: they come at once, unless it keeps none.
        self.wait(lambda: all(t in self.sys for t in topics.SYS_COUNTERS), 3.0, "$SYS totals")
        return self

    # -- reading ---------------------------------------------------------------------------

    def pump(self, until: float) -> None:
        """Take in what arrives until ``until`` (monotonic)."""
        timeout = max(0.0, until - time.monotonic())
        for topic, payload in self.messages(timeout, until=until):
            self._take(topic, payload)
            if time.monotonic() >= until:
                return

    def wait(self, done: Callable[[], bool], timeout: float, what: str) -> bool:
        """Pump until ``done()``; False (logged) when ``timeout`` s pass first."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                log.warning("%s: not within %g s", what, timeout)
                return False
            self.pump(min(deadline, time.monotonic() + 0.05))
        return True

    def _take(self, topic: str, payload: bytes) -> None:
        try:
            if topic.startswith("$SYS/"):
                self.sys[topic] = int(payload.split(b".")[0])
            elif topic == topics.JOBS_REPLIES:
                reply = jobs.decode_reply(payload)
                self.replies[reply.request_id] = reply
            elif topic.startswith(topics.JOBS_PREFIX):
                if payload:
                    status = jobs.decode_any_status(payload)
                    if self.window is not None and status.job == self.window.job:
                        self.status = status
            elif topics.is_life_strip_topic(topic):
                self._on_progress(topic, payload)
            else:
                node, leaf = topics.parse_node_topic(topic)
                if leaf == "status" and payload:
                    self._on_status(node, protocol.decode_status(payload))
                elif leaf == "telemetry":
                    self._on_telemetry(node, protocol.decode_telemetry(payload))
        except (ProtocolError, ValueError) as exc:
            self.malformed += 1
            log.warning("ignored a bad message on %s: %s", topic, exc)

    def _seen(self, node: str) -> NodeSeen | None:
        seen = self.nodes.get(node)
        if seen is None:
            if len(self.nodes) >= MAX_ROOM_NODES:
                return None
            seen = self.nodes[node] = NodeSeen()
        return seen

    def _on_status(self, node: str, status: protocol.NodeStatus) -> None:
        seen = self._seen(node)
        if seen is None:
            return
        seen.online = isinstance(status, protocol.NodeOnline)
        if isinstance(status, protocol.NodeOnline):
            seen.workers, seen.strips = status.workers, status.life_strips
            seen.version, seen.backend = status.version, status.backend

    def _on_telemetry(self, node: str, reading: protocol.Telemetry) -> None:
        seen = self._seen(node)
        if seen is None:
            return
        seen.busy_s, seen.heard = reading.busy_s, time.monotonic()
        w = self.window
        if w is None or node not in w.busy_at_start:
            return
        if reading.temp_c is not None:
            w.temp_max[node] = max(w.temp_max.get(node, reading.temp_c), reading.temp_c)
            w.temp_sum += reading.temp_c
            w.temp_count += 1
        if reading.throttle is not None and reading.throttle.active:
            w.throttled.add(node)

    def _on_progress(self, topic: str, payload: bytes) -> None:
        node, job, epoch, strip, _leaf = topics.parse_life_strip_topic(topic)
        w = self.window
        if w is None or job != w.job:
            return
        report = life.decode_progress(payload)
        if report.busy_s is not None:
            w.strips[(epoch, strip)] = (node, report.busy_s)

    # -- the room --------------------------------------------------------------------------

    def candidates(self, pick: tuple[str, ...], *, life_job: bool, workers: int) -> list[str]:
        """Online nodes the experiment may use that have ``workers`` workers (or Life
        strip slots), in id order."""
        chosen = Placement(nodes=pick)
        return sorted(
            node
            for node, seen in self.nodes.items()
            if seen.online
            and chosen.admits(node)
            and (seen.strips if life_job else seen.workers) >= workers
        )

    def open_window(self, nodes: list[str]) -> None:
        self.window = Window(
            nodes=tuple(nodes),
            busy_at_start={n: self.nodes[n].busy_s for n in nodes if n in self.nodes},
        )
        self.status = None

    def submit_run(self, request: jobs.PrimesRequest | life.LifeRequest, timeout: float) -> str:
        """Submit a run's job and return its id (the window follows its status)."""
        credentials = self.settings.credentials
        if credentials is None:
            raise ProtocolError("an experiment needs broker credentials (--credentials)")
        window = self.window
        if window is None:
            raise RuntimeError("open the run's window before submitting its job")
        rid = request.request_id
        self.publish(
            topics.jobs_submit(credentials.username), jobs.encode_request(request), timeout=timeout
        )
        if not self.wait(lambda: rid in self.replies, timeout, f"the coordinator's reply to {rid}"):
            raise ProtocolError(f"no answer from the coordinator within {timeout:g} s")
        reply = self.replies.pop(rid)
        if not reply.ok or reply.job is None:
            raise ProtocolError(f"the coordinator refused the run's job: {reply.error}")
        window.job = reply.job
        self.subscribe(topics.job_status(reply.job))
        return reply.job

    def ask_telemetry(self, nodes: list[str], timeout: float) -> None:
        """Ask ``nodes`` for a reading now and wait for it (their busy seconds then
        include every block of the run just ended)."""
        asked = time.monotonic()
        command = protocol.encode(protocol.Command(cmd="telemetry", id=uuid.uuid4().hex[:8]))
        for node in nodes:
            self.mqtt.publish(topics.node_cmd(node), command, qos=1)

        def answered() -> bool:
            return all(n in self.nodes and self.nodes[n].heard >= asked for n in nodes)

        self.wait(answered, timeout, f"telemetry from the {len(nodes)} nodes of the run")
