"""Scaling experiments as the world sees them (``piswarm experiment``).

Topics (docs/topics.md has examples):

- ``piswarm/experiments/<name>/runs``    QoS 1: :class:`ExperimentRun`, one per finished run
- ``piswarm/experiments/<name>/status``  retained, QoS 1: :class:`ExperimentStatus`, the
  curve so far and the run under way (what the kiosk draws)
"""

from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.topics import EXPERIMENT_PATTERN, JOB_ID_PATTERN, NODE_ID_PATTERN

MAX_LISTED_NODES = 1000
"""Node ids a run or a status lists (a lab of 240 Pis whole; the CSV keeps every node's)."""
MAX_POINTS = 256
MAX_BYTES = 64 * 1024
"""An experiment's payloads may be larger than piswarm's other JSON (16 KiB): a status
holds up to 256 points and 1,000 node ids. Only the admin publishes them."""
EXPERIMENT_STATES = frozenset({"running", "done", "failed", "stopped"})
_NAME = spec(pattern=EXPERIMENT_PATTERN.pattern)
_NODE = spec(pattern=NODE_ID_PATTERN.pattern, max_len=MAX_LISTED_NODES)
_COUNT = spec(lo=0, hi=2**53)
_SECONDS = spec(lo=0, hi=1e10)
_TS = spec(lo=0, hi=1e11)
_TEMP = spec(lo=-60, hi=200)
_SOME = spec(max_len=8)


@dataclass(frozen=True)
class ExperimentRun:
    """One finished run: what ran where, how long it took, and where the time went."""

    experiment: str = field(metadata=_NAME)
    run: int = field(metadata=spec(lo=0, hi=10_000))  # its place in the sweep
    kind: Literal["primes", "life"]
    scaling: Literal["strong", "weak"]
    nodes: int = field(metadata=spec(lo=1, hi=1_000_000))
    workers: int = field(metadata=spec(lo=1, hi=1024))  # per node
    repeat: int = field(metadata=spec(lo=0, hi=100))
    job: str = field(metadata=spec(pattern=JOB_ID_PATTERN.pattern))
    work: int = field(metadata=spec(lo=0, hi=2**63))  # numbers searched, or cell updates
    wall_s: float = field(metadata=_SECONDS)  # submitted to finished, by the coordinator
    started: float = field(metadata=_TS)
    gap_s: float = field(metadata=_SECONDS)  # since the run before ended: the sweep's own cost
    result: str = field(metadata=spec(max_len=64))  # primes found, or the board's hash
    node_ids: tuple[str, ...] = field(metadata=_NODE)  # the run's nodes (up to 1,000)
    busy_s: float | None = field(default=None, metadata=_SECONDS)  # all nodes' workers
    busy_min_s: float | None = field(default=None, metadata=_SECONDS)  # the least busy node
    busy_max_s: float | None = field(default=None, metadata=_SECONDS)  # the busiest
    head_cpu_s: float | None = field(default=None, metadata=_SECONDS)  # the coordinator's
    broker_cpu_s: float | None = field(default=None, metadata=_SECONDS)
    messages: int | None = field(default=None, metadata=_COUNT)  # through the broker
    bytes: int | None = field(default=None, metadata=_COUNT)
    temp_max_c: float | None = field(default=None, metadata=_TEMP)
    temp_mean_c: float | None = field(default=None, metadata=_TEMP)
    throttled: int = field(default=0, metadata=_COUNT)  # nodes throttled during the run
    versions: tuple[str, ...] = field(default=(), metadata=_SOME)
    backends: tuple[str, ...] = field(default=(), metadata=_SOME)


@dataclass(frozen=True)
class ExperimentPoint:
    """A node count (at a worker count) of the curve: its mean time and speed-up."""

    nodes: int = field(metadata=spec(lo=1, hi=1_000_000))
    workers: int = field(metadata=spec(lo=1, hi=1024))
    wall_s: float = field(metadata=_SECONDS)
    speedup: float = field(metadata=spec(lo=0, hi=1e9))
    efficiency: float = field(metadata=spec(lo=0, hi=1e9))
    repeats: int = field(metadata=spec(lo=1, hi=100))


@dataclass(frozen=True)
class ExperimentFit:
    """The serial fraction the points of one worker count imply (Amdahl or Gustafson)."""

    workers: int = field(metadata=spec(lo=1, hi=1024))
    serial: float = field(metadata=spec(lo=0, hi=1))


@dataclass(frozen=True)
class ExperimentStatus:
    """Where an experiment stands: the curve so far, and the run under way."""

    experiment: str = field(metadata=_NAME)
    kind: Literal["primes", "life"]
    scaling: Literal["strong", "weak"]
    state: str = field(metadata=spec(choices=EXPERIMENT_STATES))
    runs_total: int = field(metadata=spec(lo=0, hi=10_000))
    runs_done: int = field(metadata=spec(lo=0, hi=10_000))
    points: tuple[ExperimentPoint, ...] = field(metadata=spec(max_len=MAX_POINTS))
    fits: tuple[ExperimentFit, ...] = field(metadata=spec(max_len=64))
    ts: float = field(metadata=_TS)
    current_nodes: int | None = field(default=None, metadata=spec(lo=1, hi=1_000_000))
    current_workers: int | None = field(default=None, metadata=spec(lo=1, hi=1024))
    current_ids: tuple[str, ...] = field(default=(), metadata=_NODE)  # up to 1,000
    max_nodes: int = field(default=1, metadata=spec(lo=1, hi=1_000_000))  # of the sweep
    error: str | None = field(default=None, metadata=spec(max_len=300))


def encode(payload: ExperimentRun | ExperimentStatus) -> bytes:
    return _schema.encode(payload, max_bytes=MAX_BYTES)


def decode_run(payload: bytes) -> ExperimentRun:
    return _schema.decode(ExperimentRun, payload, max_bytes=MAX_BYTES)


def decode_status(payload: bytes) -> ExperimentStatus:
    return _schema.decode(ExperimentStatus, payload, max_bytes=MAX_BYTES)
