"""How work moves between the coordinator and the nodes (pull, with leases and acks).

Topics (docs/topics.md has the sequence and examples):

- ``piswarm/jobs/coordinator``                  retained, QoS 1: :class:`CoordinatorStatus`
- ``piswarm/nodes/<node>/work/request``         QoS 1: :class:`WorkRequest` (node -> coordinator)
- ``piswarm/nodes/<node>/work/assign``          QoS 1: :class:`WorkAssign` (blocks, leased)
- ``piswarm/nodes/<node>/results/<job>/<block>`` QoS 1: binary prime block (``primes.py``)
  or a summary; ``.../results/<job>/summaries``: several summaries (``counts.py``)
- ``piswarm/nodes/<node>/acks``                 QoS 1: :class:`ResultAck`, after the commit

A node asks for as many blocks as it has free workers (``want`` is absolute, so a repeated
request never over-asks); the coordinator remembers the want and serves it as soon as work
exists. A node keeps every result until it is acknowledged and sends it again after a
reconnect or when the coordinator comes (back) online.
"""

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.jobs import MAX_BLOCKS, MAX_NUMBER, Keep, max_block
from piswarm.protocol.topics import JOB_ID_PATTERN, NODE_ID_PATTERN

MAX_WANT = 64
MAX_WORKERS = 1024
MAX_HOLDING = 256
"""Blocks a request may list as held: more than a node's slots and unacknowledged results."""
BACKENDS = frozenset({"numpy", "primesieve"})
OUTCOMES = frozenset({"stored", "duplicate", "rejected"})
MAX_ACKED = 256
"""Further blocks one ack may name (``ResultAck.more``)."""

_JOB = spec(pattern=JOB_ID_PATTERN.pattern)
_TS = spec(lo=0, hi=1e11)


@dataclass(frozen=True)
class CoordinatorStatus:
    """The coordinator's birth and will: nodes (re)send requests and results on ``online``."""

    state: Literal["online", "offline"]
    ts: float = field(metadata=_TS)
    version: str = field(default="", metadata=spec(max_len=40))


@dataclass(frozen=True)
class WorkRequest:
    """'I can take ``want`` more blocks now' (0: none, stop remembering me).

    ``speed``: numbers a second one of the node's ``workers`` sieves (its recent blocks):
    the coordinator sizes the blocks of new jobs from them.

    ``holding`` lists the blocks the node has (``"<job>/<block>"``: assigned, computing,
    or computed and not yet acknowledged). A coordinator that restarted gives back the
    node's leases from before its restart that are not on the list: their assignment was
    lost with the old coordinator, and they would otherwise wait out the lease. ``None``
    (an older node) changes nothing.
    """

    node: str = field(metadata=spec(pattern=NODE_ID_PATTERN.pattern))
    want: int = field(metadata=spec(lo=0, hi=MAX_WANT))
    ts: float = field(metadata=_TS)
    backend: str = field(default="numpy", metadata=spec(choices=BACKENDS))
    holding: tuple[str, ...] | None = field(
        default=None,
        metadata=spec(pattern=rf"{JOB_ID_PATTERN.pattern}/[0-9]{{1,15}}", max_len=MAX_HOLDING),
    )
    speed: float | None = field(default=None, metadata=spec(lo=0, hi=1e13))
    workers: int | None = field(default=None, metadata=spec(lo=0, hi=MAX_WORKERS))

    @staticmethod
    def holding_of(blocks: Iterable[tuple[str, int]]) -> tuple[str, ...]:
        """``holding`` for these ``(job, block)`` pairs: sorted, at most ``MAX_HOLDING``."""
        return tuple(f"{job}/{block}" for job, block in sorted(blocks))[:MAX_HOLDING]

    def held(self) -> set[tuple[str, int]]:
        """The ``(job, block)`` pairs of ``holding`` (none when it is absent)."""
        pairs = (item.rsplit("/", 1) for item in self.holding or ())
        return {(job, int(block)) for job, block in pairs}


@dataclass(frozen=True)
class BlockRange:
    """A further block of an assignment: every prime in ``[lo, hi)``."""

    block: int = field(metadata=spec(lo=0, hi=MAX_BLOCKS - 1))
    lo: int = field(metadata=spec(lo=0, hi=MAX_NUMBER))
    hi: int = field(metadata=spec(lo=1, hi=MAX_NUMBER))


@dataclass(frozen=True)
class WorkAssign:
    """One block to compute: every prime in ``[lo, hi)``, result due before the lease ends.
    ``keep``: what to send back, the encoded primes or their summary (``counts.py``).

    ``more``: further blocks of the same job on the same terms (the blocks a node wanted,
    leased together, in one message); :meth:`each` splits them."""

    job: str = field(metadata=_JOB)
    block: int = field(metadata=spec(lo=0, hi=MAX_BLOCKS - 1))
    lo: int = field(metadata=spec(lo=0, hi=MAX_NUMBER))
    hi: int = field(metadata=spec(lo=1, hi=MAX_NUMBER))
    lease_s: float = field(metadata=spec(lo=1, hi=86_400))
    kind: Literal["primes"] = "primes"
    keep: Keep = "primes"
    more: tuple[BlockRange, ...] = field(default=(), metadata=spec(max_len=MAX_WANT - 1))

    def __post_init__(self) -> None:
        for lo, hi in ((self.lo, self.hi), *((r.lo, r.hi) for r in self.more)):
            if not 0 < hi - lo <= max_block(self.keep):
                raise ProtocolError(f"block [{lo}, {hi}) is empty or too large")
        if len({self.block, *(r.block for r in self.more)}) != 1 + len(self.more):
            raise ProtocolError("a block is assigned twice in one message")

    def each(self) -> list["WorkAssign"]:
        """One assignment per block."""
        one = dataclasses.replace(self, more=())
        more = (dataclasses.replace(one, block=r.block, lo=r.lo, hi=r.hi) for r in self.more)
        return [one, *more]


@dataclass(frozen=True)
class ResultAck:
    """The coordinator's answer to results, sent after they are on disk (or refused).

    ``more`` lists further blocks of the same job with the same outcome: the results of
    one node stored in one commit are acknowledged in one message."""

    job: str = field(metadata=_JOB)
    block: int = field(metadata=spec(lo=0, hi=MAX_BLOCKS - 1))
    outcome: str = field(metadata=spec(choices=OUTCOMES))
    error: str | None = field(default=None, metadata=spec(max_len=300))
    more: tuple[int, ...] = field(
        default=(), metadata=spec(lo=0, hi=MAX_BLOCKS - 1, max_len=MAX_ACKED)
    )

    @property
    def blocks(self) -> tuple[int, ...]:
        return (self.block, *self.more)


def decode_coordinator(payload: bytes) -> CoordinatorStatus:
    return _schema.decode(CoordinatorStatus, payload)


def decode_work_request(payload: bytes) -> WorkRequest:
    return _schema.decode(WorkRequest, payload)


def decode_assign(payload: bytes) -> WorkAssign:
    return _schema.decode(WorkAssign, payload)


def decode_ack(payload: bytes) -> ResultAck:
    return _schema.decode(ResultAck, payload)
