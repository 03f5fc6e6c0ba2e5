"""The distributed Game of Life on the wire: the job, strips, halos, checkpoints, frames.

Topics (docs/topics.md has examples and the sequence of one exchange):

- ``piswarm/jobs/submit/<user>``           QoS 1: :class:`LifeRequest` (``"kind": "life"``)
- ``piswarm/jobs/<job>/status``            retained, QoS 1: :class:`LifeStatus`
- ``piswarm/jobs/<job>/life``              retained, QoS 1: :class:`LifeControl` (epoch, state)
- ``piswarm/nodes/<node>/life/assign``     QoS 1: binary :class:`StripAssign` + the strip
- ``piswarm/nodes/<node>/life/<job>/<epoch>/<strip>/<leaf>`` what a running strip publishes:

  - ``up`` / ``down``  QoS 0: binary :class:`Halo`, its top / bottom rows for the strip
    above / below
  - ``want``           QoS 0: :class:`HaloWant`, "send me that halo again"
  - ``checkpoint``     QoS 1: binary :class:`Checkpoint`, the whole strip every C generations
  - ``frame``          QoS 0: binary :class:`Frame`, a picture of the strip for the display
  - ``progress``       QoS 0: :class:`Progress`, about once a second

Binary payloads are ``PSLF``, a little-endian uint32 header length, the header as JSON
(validated like every other payload) and the body. Boards travel bit-packed: row by row,
64 cells to a little-endian uint64 word, cell ``x`` in bit ``x % 64`` of word ``x // 64``.
"""

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.placement import Placement
from piswarm.protocol.topics import JOB_ID_PATTERN, NODE_ID_PATTERN

MIN_SIDE = 3
MAX_SIDE = 16_384
MAX_CELLS = 1 << 25
"""32 M cells: 4 MiB packed, so even a single node's strip fits the broker's 8 MiB packets."""
MAX_GENS = 1_000_000_000
MAX_SEED = 2**63 - 1
MAX_NAME = 80
"""A job's label, on the display and in the CLI (both kinds of job)."""
MAX_HALO = 64
MAX_HALO_ROWS = 3 * MAX_HALO  # the depth and what the boundary may move (halo_rows)
DEFAULT_HALO = 16
"""Rows per exchange (and generations between exchanges): ANCHORS.md measured 72% parallel
efficiency at 1, 84% at 4, 87% at 16 on two strips of 4096 x 4096."""
DEFAULT_CHECKPOINT = 1000
MAX_PATTERN_BYTES = 512 * 1024
MAX_REQUEST_BYTES = MAX_PATTERN_BYTES + 4096
MAX_STRIPS = 4096
MAX_EPOCH = 1_000_000
FRAME_CELLS = 1024
"""A frame is pooled (any live cell in an s x s square) to at most this many cells a side."""
MAX_FRAMES_PER_S = 15
MAX_BOARD_FRAMES_PER_S = 480  # all strips together: what one display decodes in ~5% of a core
MAX_PACE = 100_000.0  # generations a second; 0 is "as fast as the cluster can"
LIFE_STATES = frozenset({"running", "done", "cancelled", "failed"})
WRAPS = frozenset({"torus", "dead"})

MAGIC = b"PSLF"
_LEN = struct.Struct("<I")

_JOB = spec(pattern=JOB_ID_PATTERN.pattern)
_NODE = spec(pattern=NODE_ID_PATTERN.pattern)
_SIDE = spec(lo=1, hi=MAX_SIDE)
_ROW = spec(lo=0, hi=MAX_SIDE)
_GEN = spec(lo=0, hi=MAX_GENS)
_EPOCH = spec(lo=0, hi=MAX_EPOCH)
_STRIP = spec(lo=0, hi=MAX_STRIPS - 1)
_COUNT = spec(lo=0, hi=MAX_CELLS)
_TS = spec(lo=0, hi=1e11)
_REQUEST_ID = spec(pattern=r"[A-Za-z0-9_.:-]{0,64}")

T = TypeVar("T")
Wrap = Literal["torus", "dead"]
Side = Literal["up", "down"]


def words_for(width: int) -> int:
    return -(-width // 64)


@dataclass(frozen=True)
class LifeRequest:
    """Run ``gens`` generations of a ``width`` x ``height`` board.

    The start is either ``pattern`` (RLE text, placed with its top-left corner at ``x``,
    ``y``, or centred when they are null) or a random soup: each cell alive with
    probability ``density``, from ``seed``. ``frame_every`` 0 sends no pictures.
    ``pace`` > 0 holds the board to that many generations a second, for people to watch.
    """

    width: int = field(metadata=spec(lo=MIN_SIDE, hi=MAX_SIDE))
    height: int = field(metadata=spec(lo=MIN_SIDE, hi=MAX_SIDE))
    gens: int = field(metadata=spec(lo=1, hi=MAX_GENS))
    kind: Literal["life"] = "life"
    wrap: Wrap = "torus"
    pattern: str = field(default="", metadata=spec(max_len=MAX_PATTERN_BYTES))
    x: int | None = field(default=None, metadata=spec(lo=0, hi=MAX_SIDE))
    y: int | None = field(default=None, metadata=spec(lo=0, hi=MAX_SIDE))
    density: float | None = field(default=None, metadata=spec(lo=0, hi=1))
    seed: int = field(default=0, metadata=spec(lo=0, hi=MAX_SEED))
    frame_every: int = field(default=1, metadata=spec(lo=0, hi=MAX_GENS))
    checkpoint_every: int = field(default=DEFAULT_CHECKPOINT, metadata=spec(lo=1, hi=MAX_GENS))
    halo: int = field(default=DEFAULT_HALO, metadata=spec(lo=1, hi=MAX_HALO))
    pace: float = field(default=0.0, metadata=spec(lo=0, hi=MAX_PACE))
    name: str = field(default="", metadata=spec(max_len=MAX_NAME))
    request_id: str = field(default="", metadata=_REQUEST_ID)
    placement: Placement | None = None  # where its strips may run (the whole room: None)

    def __post_init__(self) -> None:
        if self.width * self.height > MAX_CELLS:
            raise ProtocolError(
                f"{self.width} x {self.height} is more than {MAX_CELLS:,} cells "
                "(4096 x 8192 is the largest board)"
            )
        if bool(self.pattern) == (self.density is not None):
            raise ProtocolError("give either 'pattern' (RLE text) or 'density' (a random soup)")
        if (self.x is None) != (self.y is None):
            raise ProtocolError("give both 'x' and 'y', or neither (centred)")


@dataclass(frozen=True)
class StripRef:
    """Where a neighbouring strip runs."""

    node: str = field(metadata=_NODE)
    strip: int = field(metadata=_STRIP)


@dataclass(frozen=True)
class StripAssign:
    """Run strip ``strip`` (rows ``[row0, row0 + rows)``) of epoch ``epoch`` from
    generation ``gen`` to ``gens``; the body is the strip at ``gen`` (zlib of packed rows).
    ``above`` / ``below`` are null at a dead edge; on a one-strip torus they name itself.
    With ``pace`` > 0 every strip holds itself to that many generations a second and
    exchanges halos :func:`round_depth` deep, so the picture moves smoothly."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    strip: int = field(metadata=_STRIP)
    strips: int = field(metadata=spec(lo=1, hi=MAX_STRIPS))
    row0: int = field(metadata=_ROW)
    rows: int = field(metadata=_SIDE)
    width: int = field(metadata=_SIDE)
    height: int = field(metadata=_SIDE)
    wrap: Wrap
    gen: int = field(metadata=_GEN)
    gens: int = field(metadata=_GEN)
    halo: int = field(metadata=spec(lo=1, hi=MAX_HALO))
    frame_every: int = field(metadata=spec(lo=0, hi=MAX_GENS))
    checkpoint_every: int = field(metadata=spec(lo=1, hi=MAX_GENS))
    above: StripRef | None
    below: StripRef | None
    pace: float = field(default=0.0, metadata=spec(lo=0, hi=MAX_PACE))

    def __post_init__(self) -> None:
        if self.strip >= self.strips or self.row0 + self.rows > self.height:
            raise ProtocolError("the strip lies outside the board")
        if self.gen > self.gens:
            raise ProtocolError("the start generation is past the end")
        if self.rows < self.halo and self.strips > 1:
            raise ProtocolError(f"a strip of {self.rows} rows cannot send {self.halo}-row halos")


@dataclass(frozen=True)
class Halo:
    """``rows`` rows of strip ``strip`` at generation ``gen``: its top rows (``side``
    ``up``, for the strip above) or bottom rows (``down``, for the strip below).

    A round of ``k`` generations needs ``k`` rows; a strip sends up to ``2k`` more
    (:func:`halo_rows`) so that the boundary can move that far (:func:`boundary_shift`).
    ``strip_rows`` is the sender's height and ``speed`` its measured computing speed in
    row-generations a second (0: not measured yet), both as they were at ``gen``."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    strip: int = field(metadata=_STRIP)
    gen: int = field(metadata=_GEN)
    side: Side
    rows: int = field(metadata=spec(lo=1, hi=MAX_HALO_ROWS))
    words: int = field(metadata=spec(lo=1, hi=words_for(MAX_SIDE)))
    strip_rows: int = field(default=0, metadata=spec(lo=0, hi=MAX_SIDE))
    speed: int = field(default=0, metadata=spec(lo=0, hi=2**53))

    def __post_init__(self) -> None:
        if self.strip_rows and self.rows > self.strip_rows:
            raise ProtocolError(f"a halo of {self.rows} rows from a strip of {self.strip_rows}")


@dataclass(frozen=True)
class HaloWant:
    """Strip ``strip`` still waits for ``from_strip``'s ``side`` halo of generation ``gen``."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    strip: int = field(metadata=_STRIP)
    from_strip: int = field(metadata=_STRIP)
    gen: int = field(metadata=_GEN)
    side: Side


@dataclass(frozen=True)
class Checkpoint:
    """The whole strip at generation ``gen`` (zlib of packed rows); ``crc32`` is of the
    packed rows, before compression."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    strip: int = field(metadata=_STRIP)
    row0: int = field(metadata=_ROW)
    rows: int = field(metadata=_SIDE)
    width: int = field(metadata=_SIDE)
    gen: int = field(metadata=_GEN)
    population: int = field(metadata=_COUNT)
    crc32: int = field(metadata=spec(lo=0, hi=2**32 - 1))


@dataclass(frozen=True)
class Frame:
    """A picture of a strip for the display: ``scale`` x ``scale`` squares of the board
    pooled to one cell (alive if any is), rows ``row0 // scale`` on; the body is zlib of
    ``numpy.packbits`` rows (most significant bit first, as packbits does)."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    strip: int = field(metadata=_STRIP)
    strips: int = field(metadata=spec(lo=1, hi=MAX_STRIPS))
    node: str = field(metadata=_NODE)
    row0: int = field(metadata=_ROW)
    rows: int = field(metadata=_SIDE)
    width: int = field(metadata=_SIDE)
    height: int = field(metadata=_SIDE)
    gen: int = field(metadata=_GEN)
    scale: int = field(metadata=spec(lo=1, hi=MAX_SIDE))
    population: int = field(metadata=_COUNT)

    @property
    def pooled_rows(self) -> tuple[int, int]:
        """The frame's rows as ``[first, end)`` in pooled coordinates."""
        return self.row0 // self.scale, -(-(self.row0 + self.rows) // self.scale)

    @property
    def pooled_width(self) -> int:
        return -(-self.width // self.scale)


@dataclass(frozen=True)
class Progress:
    """How far a strip has got; ``rate`` is generations a second (the whole job's pace,
    since strips move in step); ``cells_per_s`` is this strip's own computing speed, cell
    updates a second while not waiting (what the coordinator sizes strips by); ``row0``
    and ``rows`` are the board rows the strip holds now (neighbours move rows between
    them to balance their speeds)."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    strip: int = field(metadata=_STRIP)
    gen: int = field(metadata=_GEN)
    population: int = field(metadata=_COUNT)
    rate: float = field(metadata=spec(lo=0, hi=1e9))
    wait_p50_ms: float | None = field(default=None, metadata=spec(lo=0, hi=1e9))
    wait_p99_ms: float | None = field(default=None, metadata=spec(lo=0, hi=1e9))
    duplicates: int = field(default=0, metadata=spec(lo=0, hi=2**53))
    stale: int = field(default=0, metadata=spec(lo=0, hi=2**53))
    malformed: int = field(default=0, metadata=spec(lo=0, hi=2**53))
    wants_sent: int = field(default=0, metadata=spec(lo=0, hi=2**53))
    cells_per_s: float | None = field(default=None, metadata=spec(lo=0, hi=1e13))
    row0: int | None = field(default=None, metadata=_ROW)
    rows: int | None = field(default=None, metadata=_SIDE)
    conflict_gen: int | None = field(default=None, metadata=_GEN)
    conflict_node: str | None = field(default=None, metadata=_NODE)
    busy_s: float | None = field(default=None, metadata=spec(lo=0, hi=1e12))
    """Seconds this strip has spent computing generations (not waiting for halos)."""


@dataclass(frozen=True)
class LifeControl:
    """Retained on ``piswarm/jobs/<job>/life``: strips of an older epoch, or of a job no
    longer ``running``, stop."""

    job: str = field(metadata=_JOB)
    epoch: int = field(metadata=_EPOCH)
    state: str = field(metadata=spec(choices=LIFE_STATES))


@dataclass(frozen=True)
class LifeStatus:
    """Where a Life job stands. ``gen`` is the generation every strip has reached;
    ``population`` is counted at ``population_gen`` (the last complete checkpoint);
    ``hash`` is the SHA-256 of the final packed board (first 16 hex digits) once done."""

    job: str = field(metadata=_JOB)
    state: str = field(metadata=spec(choices=LIFE_STATES))
    name: str = field(metadata=spec(max_len=MAX_NAME))
    width: int = field(metadata=_SIDE)
    height: int = field(metadata=_SIDE)
    wrap: str = field(metadata=spec(choices=WRAPS))
    gens: int = field(metadata=_GEN)
    gen: int = field(metadata=_GEN)
    epoch: int = field(metadata=_EPOCH)
    strips: int = field(metadata=spec(lo=0, hi=MAX_STRIPS))
    nodes: tuple[str, ...] = field(metadata=spec(pattern=NODE_ID_PATTERN.pattern, max_len=1024))
    population: int = field(metadata=_COUNT)
    population_gen: int = field(metadata=_GEN)
    rate: float = field(metadata=spec(lo=0, hi=1e9))
    eta_s: float | None = field(metadata=spec(lo=0, hi=1e10))
    hash: str | None = field(metadata=spec(pattern=r"[0-9a-f]{16}"))
    created: float = field(metadata=_TS)
    finished: float | None = field(metadata=_TS)
    ts: float = field(metadata=_TS)
    error: str | None = field(default=None, metadata=spec(max_len=300))
    placement: Placement | None = None  # as the request named it
    waiting: str | None = field(default=None, metadata=spec(max_len=300))  # why no strip runs
    kind: Literal["life"] = "life"

    @property
    def fraction(self) -> float:
        return self.gen / self.gens if self.gens else 1.0


def frame_interval(strips: int) -> float:
    """Seconds between one strip's frames: 15 a second, fewer when so many strips send
    them that the display would spend its time decoding (256 strips: ~2 a second each)."""
    return 1 / min(MAX_FRAMES_PER_S, max(1.0, MAX_BOARD_FRAMES_PER_S / strips))


def frame_scale(width: int, height: int) -> int:
    """How many board cells a side one frame cell stands for: at most ``FRAME_CELLS``
    frame cells along the longer side."""
    return max(1, -(-max(width, height) // FRAME_CELLS))


def halo_rows(depth: int, strip_rows: int) -> int:
    """Rows a strip of ``strip_rows`` sends for a round of ``depth`` generations: the
    ``depth`` its neighbour needs, and up to twice as many again so that the boundary
    between them can move that far in one round (the cores of a machine, like Pis that
    throttle, change speed by a third within a second). A thin strip sends at most an
    eighth of its rows more: there the halos are much of what the strips send at all."""
    return depth + max(0, min(2 * depth, (strip_rows - depth) // 8))


def boundary_shift(upper: Halo, lower: Halo, depth: int, min_rows: int) -> int:
    """How many rows the boundary between two neighbouring strips moves down before a
    round: the lower strip hands that many of its top rows to the upper one (negative:
    the upper hands its bottom rows down).

    Both strips compute it from the same two halos (the upper one's ``down`` and the lower
    one's ``up`` of the same generation), in integers, so they agree to the row. It moves
    half of what would make both take the same time a generation (``strip_rows /
    speed``): each strip has two boundaries, and halving keeps a chain from overshooting.
    It never moves further than the rows the giving strip sent beyond ``depth``, nor takes
    more than half of what the giving strip has above ``min_rows`` (its other boundary may
    take the other half). Nothing moves before both speeds are known (a paced job sends
    none: its strips wait for the clock, not for each other), nor by less than 1/128 of
    the smaller strip (measuring noise would only make boundaries wander).
    """
    n_u, s_u, n_d, s_d = upper.strip_rows, upper.speed, lower.strip_rows, lower.speed
    if min(n_u, s_u, n_d, s_d) <= 0:
        return 0
    num = n_d * s_u - n_u * s_d
    move = abs(num) // (2 * (s_u + s_d))
    if move * 128 < min(n_u, n_d):
        return 0
    if num > 0:  # the upper strip is the quicker: it takes rows from below
        return min(move, lower.rows - depth, max(0, (n_d - min_rows) // 2))
    return -min(move, upper.rows - depth, max(0, (n_u - min_rows) // 2))


def round_depth(halo: int, pace: float, gens_left: int) -> int:
    """Generations per exchange round: the halo depth, or fewer when a slow ``pace`` would
    otherwise show the board in jumps (no more than one round per frame interval). Every
    strip of an epoch computes the same, so neighbours agree on the rows they send."""
    k = halo if pace <= 0 else max(1, min(halo, int(pace // MAX_FRAMES_PER_S)))
    return min(k, gens_left)


# -- binary payloads --------------------------------------------------------------------


def encode_binary(header: object, body: bytes) -> bytes:
    head = _schema.encode(header)
    return MAGIC + _LEN.pack(len(head)) + head + body


def decode_binary(cls: type[T], payload: bytes, *, max_body: int) -> tuple[T, bytes]:
    if len(payload) < 8 or payload[:4] != MAGIC:
        raise ProtocolError("not a PSLF payload")
    (length,) = _LEN.unpack_from(payload, 4)
    if length > _schema.MAX_JSON_BYTES or 8 + length > len(payload):
        raise ProtocolError("PSLF header length past the payload")
    header = _schema.decode(cls, payload[8 : 8 + length])
    body = payload[8 + length :]
    if len(body) > max_body:
        raise ProtocolError(f"body of {len(body)} bytes exceeds {max_body}")
    return header, body


def inflate(body: bytes, expected: int) -> bytes:
    """zlib ``body`` that must come out at exactly ``expected`` bytes (no bomb, no short)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, expected + 1)
    except zlib.error as exc:
        raise ProtocolError(f"corrupt zlib body: {exc}") from None
    if len(raw) != expected or not inflater.eof or inflater.unconsumed_tail:
        raise ProtocolError(f"the body does not inflate to the {expected} bytes promised")
    return raw


def _board_bytes(rows: int, width: int) -> int:
    return rows * words_for(width) * 8


def encode_assign(assign: StripAssign, packed: bytes) -> bytes:
    return encode_binary(assign, zlib.compress(packed, 1))


def decode_assign(payload: bytes) -> tuple[StripAssign, bytes]:
    header, body = decode_binary(StripAssign, payload, max_body=8 * 1024 * 1024)
    return header, inflate(body, _board_bytes(header.rows, header.width))


def encode_halo(halo: Halo, rows: bytes) -> bytes:
    return encode_binary(halo, rows)


def decode_halo(payload: bytes) -> tuple[Halo, bytes]:
    header, body = decode_binary(Halo, payload, max_body=MAX_HALO_ROWS * words_for(MAX_SIDE) * 8)
    if len(body) != header.rows * header.words * 8:
        raise ProtocolError(
            f"a halo of {header.rows} rows of {header.words} words has {len(body)} bytes"
        )
    return header, body


def encode_checkpoint(checkpoint: Checkpoint, packed: bytes) -> bytes:
    return encode_binary(checkpoint, zlib.compress(packed, 1))


def decode_checkpoint(
    payload: bytes, check: Callable[[Checkpoint], None] | None = None
) -> tuple[Checkpoint, bytes]:
    """The checkpoint's header and its strip's packed rows. ``check`` sees the header
    before anything is inflated (the receiver's chance to refuse a strip that is not
    the sender's, or larger than the board) and raises :class:`ProtocolError` to refuse."""
    header, body = decode_binary(Checkpoint, payload, max_body=8 * 1024 * 1024)
    if check is not None:
        check(header)
    raw = inflate(body, _board_bytes(header.rows, header.width))
    if zlib.crc32(raw) != header.crc32:
        raise ProtocolError("checkpoint CRC mismatch")
    return header, raw


def frame_bytes(frame: Frame) -> int:
    first, end = frame.pooled_rows
    return (end - first) * -(-frame.pooled_width // 8)


def encode_frame(frame: Frame, packed_bits: bytes) -> bytes:
    return encode_binary(frame, zlib.compress(packed_bits, 1))


def decode_frame(payload: bytes) -> tuple[Frame, bytes]:
    header, body = decode_binary(Frame, payload, max_body=FRAME_CELLS * FRAME_CELLS)
    if header.pooled_width > FRAME_CELLS * 2:
        raise ProtocolError(f"a frame {header.pooled_width} cells wide is too large")
    return header, inflate(body, frame_bytes(header))


def decode_request(payload: bytes) -> LifeRequest:
    return _schema.decode(LifeRequest, payload, max_bytes=MAX_REQUEST_BYTES)


def decode_want(payload: bytes) -> HaloWant:
    return _schema.decode(HaloWant, payload)


def decode_progress(payload: bytes) -> Progress:
    return _schema.decode(Progress, payload)


def decode_control(payload: bytes) -> LifeControl:
    return _schema.decode(LifeControl, payload)


def decode_status(payload: bytes) -> LifeStatus:
    return _schema.decode(LifeStatus, payload)
