"""A Life job's board as the coordinator sees it: the start, strips, the hash. Pure."""

import hashlib
import zlib

import numpy as np

from node_agent import life
from piswarm.protocol import ProtocolError
from piswarm.protocol.life import LifeRequest
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
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(height, life.words_for(width))


def split_rows(height: int, strips: int) -> list[tuple[int, int]]:
    """``strips`` runs of rows covering ``height``, as even as can be: ``(row0, rows)``."""
    base, extra = divmod(height, strips)
    out, row = [], 0
    for i in range(strips):
        rows = base + (1 if i < extra else 0)
        out.append((row, rows))
        row += rows
    return out
