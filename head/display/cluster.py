"""What the head node knows about the fleet: a plain-Python model, no MQTT, no pygame.

Messages go in through :meth:`ClusterModel.apply` (topic, payload, receive time); the
display, the demo's text summary and ``piswarm status`` read :meth:`ClusterModel.nodes`
and :meth:`ClusterModel.summary`. Bad payloads are counted and ignored; telemetry that is
older than what the model already has (duplicates, reordering) is ignored too.
"""

import enum
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from piswarm import protocol
from piswarm.fleet import MAX_ROOM_NODES
from piswarm.protocol import topics

log = logging.getLogger(__name__)

CHANGE_LOG = 16_384
"""Recent changes remembered, so a view can redraw just those (a minute of 240 nodes at
1 Hz, three seconds of 5,000; older than that, the view looks at every node once)."""

STALE_PERIODS = 3
"""A node is stale after this many telemetry periods without a message."""


class NodeState(enum.Enum):
    LIVE = "live"  # online, telemetry arriving
    STALE = "stale"  # online, but no telemetry for STALE_PERIODS periods
    OFFLINE = "offline"  # said goodbye, or its will was sent
    NEVER = "never"  # expected (in the layout) but never heard from


@dataclass
class NodeView:
    """Everything known about one node."""

    node_id: str
    birth: protocol.NodeOnline | None = None
    goodbye: protocol.NodeOffline | None = None
    telemetry: protocol.Telemetry | None = None
    status_at: float | None = None  # receive time of the latest status
    telemetry_at: float | None = None  # receive time of the latest telemetry

    @property
    def online(self) -> bool:
        return self.birth is not None and self.goodbye is None

    @property
    def interval(self) -> float:
        return self.birth.telemetry_interval if self.birth else 5.0

    @property
    def last_seen(self) -> float | None:
        status_at, telemetry_at = self.status_at, self.telemetry_at
        if status_at is None or (telemetry_at is not None and telemetry_at > status_at):
            return telemetry_at
        return status_at

    @property
    def temp_c(self) -> float | None:
        return self.telemetry.temp_c if self.telemetry else None

    @property
    def throttled(self) -> bool:
        throttle = self.telemetry.throttle if self.telemetry else None
        return bool(throttle and throttle.active)

    def state(self, now: float) -> NodeState:
        # Called for every node several times a second in a room of thousands: plain.
        birth = self.birth
        if birth is None:
            return NodeState.NEVER if self.goodbye is None else NodeState.OFFLINE
        if self.goodbye is not None:
            return NodeState.OFFLINE
        last = self.last_seen
        if last is not None and now - last > STALE_PERIODS * birth.telemetry_interval:
            return NodeState.STALE
        return NodeState.LIVE


@dataclass(frozen=True)
class ClusterSummary:
    total: int
    live: int
    stale: int
    offline: int
    never: int
    throttled: int
    hottest: tuple[str, float] | None
    average_temp: float | None


@dataclass
class ModelStats:
    applied: int = 0
    malformed: int = 0
    out_of_order: int = 0
    over_capacity: int = 0
    last_error: str = ""


@dataclass
class ClusterModel:
    """The fleet as seen from the head node. Bounded: at most ``max_nodes`` entries."""

    expected: Iterable[str] = ()
    max_nodes: int = MAX_ROOM_NODES
    stats: ModelStats = field(default_factory=ModelStats)

    def __post_init__(self) -> None:
        self._nodes: dict[str, NodeView] = {n: NodeView(n) for n in self.expected}
        self.members = 0  # +1 whenever a node is added: views re-arrange only then
        self.version = 0  # +1 on every applied change
        self._recent: deque[tuple[int, str]] = deque(maxlen=CHANGE_LOG)

    def _node(self, node_id: str) -> NodeView | None:
        view = self._nodes.get(node_id)
        if view is None:
            if len(self._nodes) >= self.max_nodes:
                self.stats.over_capacity += 1
                return None
            view = self._nodes[node_id] = NodeView(node_id)
            self.members += 1
        return view

    def _changed(self, view: NodeView) -> bool:
        self.version += 1
        self.stats.applied += 1
        self._recent.append((self.version, view.node_id))
        return True

    def changed_since(self, version: int) -> set[str] | None:
        """Nodes changed after model ``version``; None when that is too long ago to tell."""
        if version >= self.version:
            return set()
        if not self._recent or self._recent[0][0] > version + 1:
            return None
        changed: set[str] = set()
        for v, node_id in reversed(self._recent):
            if v <= version:
                break
            changed.add(node_id)
        return changed

    def apply(self, topic: str, payload: bytes, received_at: float) -> bool:
        """Apply one message; False (and counted) when it is malformed or ignored."""
        if not topic.startswith(topics.NODES_PREFIX):
            return False  # jobs and the rest: not this model's business
        try:
            node_id, leaf = topics.parse_node_topic(topic)
            if leaf == "status":
                return self._apply_status(node_id, protocol.decode_status(payload), received_at)
            if leaf == "telemetry":
                message = protocol.decode_telemetry(payload)
                return self._apply_telemetry(node_id, message, received_at)
            return False  # cmd / pong: not part of the picture
        except protocol.ProtocolError as exc:
            self.stats.malformed += 1
            self.stats.last_error = f"{topic}: {exc}"
            log.warning("ignored malformed message on %s: %s", topic, exc)
            return False

    def _apply_status(self, node_id: str, status: protocol.NodeStatus, at: float) -> bool:
        if status.node != node_id:
            raise protocol.ProtocolError(f"status names node {status.node!r}", topic=node_id)
        view = self._node(node_id)
        if view is None:
            return False
        if isinstance(status, protocol.NodeOnline):
            if view.birth is None or status.ts != view.birth.ts:
                view.telemetry = None  # a new life: seq starts again
            view.birth, view.goodbye = status, None
        else:
            view.goodbye = status
        view.status_at = at
        return self._changed(view)

    def _apply_telemetry(self, node_id: str, message: protocol.Telemetry, at: float) -> bool:
        if message.node != node_id:
            raise protocol.ProtocolError(f"telemetry names node {message.node!r}", topic=node_id)
        view = self._node(node_id)
        if view is None:
            return False
        if view.telemetry is not None and message.seq <= view.telemetry.seq:
            self.stats.out_of_order += 1
            return False
        view.telemetry, view.telemetry_at = message, at
        return self._changed(view)

    def get(self, node_id: str) -> NodeView | None:
        return self._nodes.get(node_id)

    def views(self) -> Iterable[NodeView]:
        """Every node, in no order (cheaper than :meth:`nodes`)."""
        return self._nodes.values()

    def nodes(self) -> list[NodeView]:
        """Every node, sorted by id."""
        return [self._nodes[n] for n in sorted(self._nodes)]

    def summary(self, now: float) -> ClusterSummary:
        counts = dict.fromkeys(NodeState, 0)
        temps: list[tuple[float, str]] = []
        throttled = 0
        for view in self._nodes.values():
            state = view.state(now)
            counts[state] += 1
            if state is NodeState.LIVE:
                throttled += view.throttled  # with a temperature sensor or without
                if view.temp_c is not None:
                    temps.append((view.temp_c, view.node_id))
        hottest = max(temps) if temps else None
        return ClusterSummary(
            total=len(self._nodes),
            live=counts[NodeState.LIVE],
            stale=counts[NodeState.STALE],
            offline=counts[NodeState.OFFLINE],
            never=counts[NodeState.NEVER],
            throttled=throttled,
            hottest=(hottest[1], hottest[0]) if hottest else None,
            average_temp=sum(t for t, _ in temps) / len(temps) if temps else None,
        )
