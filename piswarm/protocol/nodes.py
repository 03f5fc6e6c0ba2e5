"""Payloads a node publishes about itself, and the commands it answers.

Topics (docs/topics.md has examples and recipes):

- ``piswarm/nodes/<node>/status``    retained, QoS 1: :class:`NodeOnline` | :class:`NodeOffline`
- ``piswarm/nodes/<node>/telemetry`` QoS 0: :class:`Telemetry`
- ``piswarm/nodes/<node>/cmd``       QoS 1: :class:`Command` (to the node)
- ``piswarm/nodes/<node>/pong``      QoS 1: :class:`Pong` (the node's answer to ``ping``)
"""

from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.topics import NODE_ID_PATTERN

_NODE = spec(pattern=NODE_ID_PATTERN.pattern)
_TS = spec(lo=0, hi=1e11)  # seconds since the epoch
_TEXT = spec(max_len=200)

THROTTLE_FLAGS: dict[int, str] = {
    0: "under_voltage",
    1: "freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
}
"""Bits 0-3 of ``vcgencmd get_throttled`` (now); bits 16-19 are the same since boot."""

TEMP_SOURCES = frozenset({"thermal", "vcgencmd", "psutil", "simulated", "unknown"})
OFFLINE_REASONS = frozenset({"shutdown", "lost"})
COMMANDS = frozenset({"ping", "telemetry"})


@dataclass(frozen=True)
class Throttle:
    """Decoded ``vcgencmd get_throttled``: what is happening now and since boot."""

    raw: int = field(metadata=spec(lo=0, hi=0xFFFFFFFF))
    now: tuple[str, ...] = field(metadata=spec(choices=frozenset(THROTTLE_FLAGS.values())))
    since_boot: tuple[str, ...] = field(metadata=spec(choices=frozenset(THROTTLE_FLAGS.values())))

    @classmethod
    def from_raw(cls, raw: int) -> "Throttle":
        """Decode the bit field that ``vcgencmd get_throttled`` prints."""
        return cls(
            raw=raw,
            now=tuple(name for bit, name in THROTTLE_FLAGS.items() if raw & (1 << bit)),
            since_boot=tuple(
                name for bit, name in THROTTLE_FLAGS.items() if raw & (1 << (bit + 16))
            ),
        )

    @property
    def active(self) -> bool:
        """True while the Pi is throttled, capped or under-voltage right now."""
        return bool(self.now)


@dataclass(frozen=True)
class NodeOnline:
    """Birth message: retained on the status topic while the node is connected."""

    node: str = field(metadata=_NODE)
    ts: float = field(metadata=_TS)
    host: str = field(metadata=_TEXT)
    version: str = field(metadata=spec(max_len=40))
    cores: int = field(metadata=spec(lo=1, hi=4096))
    model: str = field(metadata=_TEXT)
    telemetry_interval: float = field(metadata=spec(lo=0.05, hi=3600))
    ip: str | None = field(default=None, metadata=spec(max_len=45))
    simulated: bool = False
    workers: int = field(default=0, metadata=spec(lo=0, hi=4096))
    backend: str | None = field(default=None, metadata=spec(max_len=20))
    life_strips: int = field(default=0, metadata=spec(lo=0, hi=4096))
    instance: str = field(default="", metadata=spec(pattern=r"[0-9a-f]{0,32}"))
    state: Literal["online"] = "online"


@dataclass(frozen=True)
class NodeOffline:
    """Retained when a node leaves: ``shutdown`` (clean) or ``lost`` (its will).

    For ``lost`` the broker sends the will registered at connect time, so ``ts`` is the
    time of that connection, not of the loss: subscribers use their receive time.
    """

    node: str = field(metadata=_NODE)
    ts: float = field(metadata=_TS)
    reason: str = field(metadata=spec(choices=OFFLINE_REASONS))
    state: Literal["offline"] = "offline"


NodeStatus = NodeOnline | NodeOffline


@dataclass(frozen=True)
class Telemetry:
    """One periodic reading. ``seq`` counts up by one per period, so gaps show losses."""

    node: str = field(metadata=_NODE)
    seq: int = field(metadata=spec(lo=0, hi=2**53))
    ts: float = field(metadata=_TS)
    temp_c: float | None = field(metadata=spec(lo=-60, hi=200))
    temp_source: str = field(metadata=spec(choices=TEMP_SOURCES))
    throttle: Throttle | None
    cpu_percent: float = field(metadata=spec(lo=0, hi=100))
    load: tuple[float, ...] = field(metadata=spec(lo=0, hi=1e6, max_len=3))
    mem_percent: float = field(metadata=spec(lo=0, hi=100))
    freq_mhz: float | None = field(metadata=spec(lo=0, hi=1e5))
    uptime_s: float = field(metadata=spec(lo=0, hi=1e10))
    busy_s: float | None = field(default=None, metadata=spec(lo=0, hi=1e12))
    """Seconds this node's sieve workers have spent on blocks since the agent started,
    all workers together (None: it runs none). What an experiment counts as busy."""

    def __post_init__(self) -> None:
        if len(self.load) != 3:
            raise ProtocolError("field 'load': expected [1 min, 5 min, 15 min]")


@dataclass(frozen=True)
class Command:
    """A command to one node: ``ping`` (answered on ``pong``) or ``telemetry`` (send now)."""

    cmd: str = field(metadata=spec(choices=COMMANDS))
    id: str = field(default="", metadata=spec(max_len=64))


@dataclass(frozen=True)
class Pong:
    """A node's answer to ``ping``: the command's ``id`` and the node's clock."""

    node: str = field(metadata=_NODE)
    id: str = field(metadata=spec(max_len=64))
    ts: float = field(metadata=_TS)
    version: str = field(metadata=spec(max_len=40))


def decode_status(payload: bytes) -> NodeStatus:
    """Decode a status payload into :class:`NodeOnline` or :class:`NodeOffline`."""
    data = _schema.load_json(payload)
    state = data.get("state")
    if state == "online":
        return _schema.decode_mapping(NodeOnline, data)
    if state == "offline":
        return _schema.decode_mapping(NodeOffline, data)
    raise ProtocolError(f"field 'state': {state!r} is not 'online' or 'offline'")


def decode_telemetry(payload: bytes) -> Telemetry:
    """Decode a telemetry payload."""
    return _schema.decode(Telemetry, payload)


def decode_command(payload: bytes) -> Command:
    """Decode a command payload."""
    return _schema.decode(Command, payload)


def decode_pong(payload: bytes) -> Pong:
    """Decode a pong payload."""
    return _schema.decode(Pong, payload)
