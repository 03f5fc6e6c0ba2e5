"""Jobs as the world sees them: requests, the coordinator's replies, and job status.

Topics (docs/topics.md has examples and recipes):

- ``piswarm/jobs/submit/<user>`` QoS 1: :class:`PrimesRequest` (CLI or ``mosquitto_pub``)
- ``piswarm/jobs/cancel``         QoS 1: :class:`CancelRequest`
- ``piswarm/jobs/replies``        QoS 1: :class:`JobReply` (accepted with a job id, or why not)
- ``piswarm/jobs/<job>/status``   retained, QoS 1: :class:`JobStatus`, at most once a second
- ``piswarm/jobs/<job>/map``      retained, QoS 0: :class:`JobMap`, which node did which block

A request is validated in full before anything is stored: a range the sieve cannot do, a
block size that would make millions of blocks, or a typo gets a :class:`ProtocolError`
that names the field.
"""

from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema, life
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.placement import Placement
from piswarm.protocol.topics import JOB_ID_PATTERN, NODE_ID_PATTERN

MAX_NUMBER = 2**63 - 1  # SQLite integers and the sieves stop here
MAX_PRIME_GAP = 1550
"""No two consecutive primes below 2**64 are further apart (the largest gap there, after
18,361,375,334,787,046,697; T. Oliveira e Silva, S. Herzog, S. Pardi, 2014): every range of
this many numbers holds a prime."""
MIN_BLOCK = 10_000
MAX_BLOCK = 100_000_000
"""The largest block of a job keeping its primes: the encoded result (~3.5 MB near 1) must
fit the broker's 8 MiB packets."""
MAX_COUNTS_BLOCK = 10_000_000_000
"""The largest block of a count-only job (its result is a summary of any block; a node
lists the block ``MAX_BLOCK`` numbers at a time)."""
MAX_BLOCKS = MAX_NUMBER // MIN_BLOCK + 1
"""No limit of its own: every range of ``[0, MAX_NUMBER]`` in blocks of ``MIN_BLOCK`` or
more fits (a job is a range and a cursor; its size costs the coordinator nothing)."""
MAX_NAME = life.MAX_NAME
DEFAULT_BLOCK = 10_000_000
"""~0.1 s of numpy sieving, ~280 kB encoded near 1e9: the block size of a job that does
not say, before the coordinator has measured any node."""
MAP_CELLS = 400
"""A job map has at most this many cells (20 x 20 on the display), whatever the job size."""
MAP_MAX_BYTES = 64 * 1024
TOP_CONTRIBUTORS = 8
JOB_STATES = frozenset({"running", "done", "cancelled"})
DEFAULT_DOUBLE_CHECK = 0.03
"""The fraction of blocks the coordinator has computed twice when a request does not say
(``piswarm head --double-check`` changes it)."""
Keep = Literal["primes", "counts"]
KEEPS = frozenset({"primes", "counts"})

_JOB = spec(pattern=JOB_ID_PATTERN.pattern)
_REQUEST_ID = spec(pattern=r"[A-Za-z0-9_.:-]{0,64}")
_TS = spec(lo=0, hi=1e11)
_COUNT = spec(lo=0, hi=MAX_NUMBER)


@dataclass(frozen=True)
class PrimesRequest:
    """Find every prime in ``[start, end]`` (both inclusive, as people say a range).

    ``keep`` says what is stored of each block: ``"primes"``, every prime (export them,
    ~0.6 bytes a prime on the wire and on disk), or ``"counts"``, a summary (the count,
    twin pairs, the largest gap and a checksum: ~200 bytes a block, whatever its size).

    ``double_check`` is the fraction of blocks computed again by a different node and
    compared (0: none; ``None``: the coordinator's default, a few percent).

    ``block_size`` ``None`` (the default) lets the coordinator choose, from the speeds
    its nodes report, blocks that take a node about two seconds each.

    ``request_id`` is the submitter's own tag: the reply carries it, and submitting the
    same id twice (a retry) returns the first job instead of starting a second one.

    ``placement`` keeps the job to part of the room (:class:`Placement`; ``None``: all).
    """

    start: int = field(metadata=spec(lo=0, hi=MAX_NUMBER))
    end: int = field(metadata=spec(lo=0, hi=MAX_NUMBER))
    block_size: int | None = field(default=None, metadata=spec(lo=MIN_BLOCK, hi=MAX_COUNTS_BLOCK))
    kind: Literal["primes"] = "primes"
    name: str = field(default="", metadata=spec(max_len=MAX_NAME))
    request_id: str = field(default="", metadata=_REQUEST_ID)
    keep: Keep = "primes"
    double_check: float | None = field(default=None, metadata=spec(lo=0, hi=1))
    placement: Placement | None = None

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ProtocolError(f"start {self.start} is greater than end {self.end}")
        if self.block_size is None:
            return
        if self.block_size < MIN_BLOCK:  # decoding checks the field first; a caller may not
            raise ProtocolError(f"field 'block_size': {self.block_size} is below {MIN_BLOCK}")
        if self.block_size > max_block(self.keep):
            raise ProtocolError(
                f"field 'block_size': {self.block_size} is above {max_block(self.keep)} for a "
                "job keeping its primes (a block's primes must fit a broker packet)"
            )

    @property
    def size(self) -> int:
        """The block size: asked for, or chosen by the coordinator (``sized``)."""
        if self.block_size is None:
            raise ValueError("the block size is not chosen yet")
        return self.block_size

    @property
    def blocks(self) -> int:
        return -(-(self.end - self.start + 1) // self.size)

    def block_range(self, index: int) -> tuple[int, int]:
        """Block ``index`` as a half-open ``[lo, hi)``."""
        lo = self.start + index * self.size
        return lo, min(lo + self.size, self.end + 1)


def max_block(keep: Keep) -> int:
    """The largest block a job keeping ``keep`` may have."""
    return MAX_COUNTS_BLOCK if keep == "counts" else MAX_BLOCK


@dataclass(frozen=True)
class CancelRequest:
    """Stop a running job: its open blocks are no longer handed out."""

    job: str = field(metadata=_JOB)
    request_id: str = field(default="", metadata=_REQUEST_ID)


@dataclass(frozen=True)
class JobReply:
    """The coordinator's answer to a submit or cancel: ``ok`` with the job, or ``error``."""

    request_id: str = field(metadata=_REQUEST_ID)
    action: Literal["submit", "cancel"]
    ok: bool
    ts: float = field(metadata=_TS)
    job: str | None = field(default=None, metadata=_JOB)
    error: str | None = field(default=None, metadata=spec(max_len=300))


@dataclass(frozen=True)
class Contributor:
    """How much one node has done for a job."""

    node: str = field(metadata=spec(pattern=NODE_ID_PATTERN.pattern))
    blocks: int = field(metadata=_COUNT)
    primes: int = field(metadata=_COUNT)


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands. ``rate`` and ``eta_s`` are over the last ~30 seconds."""

    job: str = field(metadata=_JOB)
    state: str = field(metadata=spec(choices=JOB_STATES))
    name: str = field(metadata=spec(max_len=MAX_NAME))
    start: int = field(metadata=_COUNT)
    end: int = field(metadata=_COUNT)
    block_size: int = field(metadata=_COUNT)
    blocks_done: int = field(metadata=_COUNT)
    blocks_total: int = field(metadata=_COUNT)
    primes: int = field(metadata=_COUNT)
    largest: int | None = field(metadata=_COUNT)
    rate: float = field(metadata=spec(lo=0, hi=1e15))
    eta_s: float | None = field(metadata=spec(lo=0, hi=1e10))
    nodes: int = field(metadata=spec(lo=0, hi=1_000_000))
    top: tuple[Contributor, ...] = field(metadata=spec(max_len=TOP_CONTRIBUTORS))
    created: float = field(metadata=_TS)
    finished: float | None = field(metadata=_TS)
    ts: float = field(metadata=_TS)
    kind: Literal["primes"] = "primes"
    keep: Keep = "primes"
    twins: int | None = field(default=None, metadata=_COUNT)  # pairs (p, p + 2) found so far
    gap: int | None = field(default=None, metadata=_COUNT)  # the largest gap found so far
    gap_at: int | None = field(default=None, metadata=_COUNT)  # ... after this prime
    double_check: float = field(default=0.0, metadata=spec(lo=0, hi=1))  # the fraction asked
    checked: int = field(default=0, metadata=_COUNT)  # blocks two nodes agreed on
    mismatches: int = field(default=0, metadata=_COUNT)  # blocks two nodes disagreed on
    wrong: tuple[str, ...] = field(
        default=(), metadata=spec(pattern=NODE_ID_PATTERN.pattern, max_len=TOP_CONTRIBUTORS)
    )
    placement: Placement | None = None  # as the request named it
    waiting: str | None = field(default=None, metadata=spec(max_len=300))  # why no node works

    @property
    def fraction(self) -> float:
        return self.blocks_done / self.blocks_total if self.blocks_total else 1.0


@dataclass(frozen=True)
class JobMap:
    """The job's blocks in ``len(owner)`` cells (up to 400, each a run of equal blocks):
    ``owner[i]`` indexes ``nodes`` (the node that finished the cell's latest block, -1
    for none yet) and ``done[i]`` is the cell's percentage of finished blocks."""

    job: str = field(metadata=_JOB)
    blocks_total: int = field(metadata=_COUNT)
    nodes: tuple[str, ...] = field(
        metadata=spec(pattern=NODE_ID_PATTERN.pattern, max_len=MAP_CELLS)
    )
    owner: tuple[int, ...] = field(metadata=spec(lo=-1, hi=MAP_CELLS - 1, max_len=MAP_CELLS))
    done: tuple[int, ...] = field(metadata=spec(lo=0, hi=100, max_len=MAP_CELLS))

    def __post_init__(self) -> None:
        if len(self.owner) != len(self.done):
            raise ProtocolError("fields 'owner' and 'done' differ in length")
        if any(i >= len(self.nodes) for i in self.owner):
            raise ProtocolError("field 'owner': an index past the end of 'nodes'")


def decode_request(payload: bytes) -> "PrimesRequest | life.LifeRequest":
    """A job request from the wire; unknown ``kind`` values are named in the error."""
    data = _schema.load_json(payload, max_bytes=life.MAX_REQUEST_BYTES)
    kind = data.get("kind")
    if kind == "primes":
        if len(payload) > _schema.MAX_JSON_BYTES:
            raise ProtocolError(f"payload of {len(payload)} bytes exceeds {_schema.MAX_JSON_BYTES}")
        return _schema.decode_mapping(PrimesRequest, data)
    if kind == "life":
        return _schema.decode_mapping(life.LifeRequest, data)
    raise ProtocolError(f"unknown job kind {kind!r} (known: 'primes', 'life')")


def encode_request(request: "PrimesRequest | life.LifeRequest") -> bytes:
    return _schema.encode(request, max_bytes=life.MAX_REQUEST_BYTES)


def request_id_of(payload: bytes) -> str:
    """The ``request_id`` of a payload that may be invalid ('' if there is none usable):
    so a rejection can still be addressed to whoever sent it."""
    try:
        data = _schema.load_json(payload)
    except ProtocolError:
        return ""
    rid = data.get("request_id")
    if isinstance(rid, str) and _REQUEST_ID["pattern"].fullmatch(rid):
        return rid
    return ""


def decode_cancel(payload: bytes) -> CancelRequest:
    return _schema.decode(CancelRequest, payload)


def decode_reply(payload: bytes) -> JobReply:
    return _schema.decode(JobReply, payload)


def decode_job_status(payload: bytes) -> JobStatus:
    return _schema.decode(JobStatus, payload)


def decode_any_status(payload: bytes) -> "JobStatus | life.LifeStatus":
    """A retained job status of either kind."""
    data = _schema.load_json(payload)
    if data.get("kind") == "life":
        return _schema.decode_mapping(life.LifeStatus, data)
    return _schema.decode_mapping(JobStatus, data)


def decode_job_map(payload: bytes) -> JobMap:
    return _schema.decode(JobMap, payload, max_bytes=MAP_MAX_BYTES)


def encode_job_map(job_map: JobMap) -> bytes:
    return _schema.encode(job_map, max_bytes=MAP_MAX_BYTES)
