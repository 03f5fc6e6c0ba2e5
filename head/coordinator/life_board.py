"""A Life job's board as the coordinator sees it: the start, strips, the hash. Pure."""

import hashlib
import zlib
from collections.abc import Sequence

import numpy as np

from piswarm import life
from piswarm.protocol import ProtocolError
from piswarm.protocol.life import LifeRequest, words_for
from piswarm.rle import RleError, parse_rle


def initial_board(request: LifeRequest) -> np.ndarray:
    """The packed board at generation 0: the pattern placed, or the seeded soup."""
    width, height = request.width, request.height
    if request.density is not None:
        rng = np.random.default_rng(request.seed)
        return life.pack(rng.random((height, width)) < request.density)
    try:
        pattern = parse_rle(request.pattern, "pattern")
    except RleError as exc:
        raise ProtocolError(str(exc)) from None
    x = (width - pattern.width) // 2 if request.x is None else request.x
    y = (height - pattern.height) // 2 if request.y is None else request.y
    if x < 0 or y < 0 or x + pattern.width > width or y + pattern.height > height:
        raise ProtocolError(
            f"the {pattern.width} x {pattern.height} pattern does not fit a {width} x "
            f"{height} board" + ("" if request.x is None else f" at {x},{y}")
        )
    cells = np.zeros((height, width), dtype=np.uint8)
    cells[y : y + pattern.height, x : x + pattern.width] = pattern.cells
    return life.pack(cells)


def board_hash(packed: np.ndarray) -> str:
    """The first 16 hex digits of the SHA-256 of the packed board (little-endian words)."""
    return hashlib.sha256(np.ascontiguousarray(packed, dtype="<u8").tobytes()).hexdigest()[:16]


def to_blob(packed: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(packed, dtype="<u8").tobytes(), 1)


def from_blob(blob: bytes, height: int, width: int) -> np.ndarray:
    raw = zlib.decompress(blob)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(height, words_for(width))


def split_rows(height: int, weights: Sequence[float], min_rows: int = 1) -> list[tuple[int, int]]:
    """Runs of rows covering ``height``, one per weight, sized in proportion to the
    weights (a node's speed), each at least ``min_rows``: ``(row0, rows)`` top down.
    Equal weights give runs as even as can be."""
    count = len(weights)
    if count == 0 or count * min_rows > height or min(weights) <= 0:
        raise ValueError(f"cannot cut {height} rows into {count} runs of {min_rows}+")
    total = sum(weights)
    ideal = [height * w / total for w in weights]
    rows = [max(min_rows, int(x)) for x in ideal]
    # Hand out what is left by the largest shortfall (ties: top first), or take back what
    # the minimum added from the runs furthest above their share.
    while sum(rows) < height:
        i = max(range(count), key=lambda j: (ideal[j] - rows[j], -j))
        rows[i] += 1
    while sum(rows) > height:
        i = max(
            (j for j in range(count) if rows[j] > min_rows), key=lambda j: (rows[j] - ideal[j], j)
        )
        rows[i] -= 1
    out, row = [], 0
    for n in rows:
        out.append((row, n))
        row += n
    return out
