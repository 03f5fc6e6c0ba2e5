"""Conway's Game of Life, 64 cells to a machine word: pure compute, no I/O.

A board of ``height`` x ``width`` cells is packed row by row into uint64 words: cell
``x`` of a row is bit ``x % 64`` of word ``x // 64``; bits past ``width`` in a row's last
word are always 0. One generation adds the eight neighbour bit-planes with full-adder
logic, 64 cells per operation, in about 28 passes of numpy over the words (ANCHORS.md:
~1.7 ms a generation on a 4096 x 4096 torus, 28x an ``np.roll`` version).
:func:`reference_step` is that plain uint8 version, kept for the tests.

:func:`step_strip` advances a horizontal strip given the row above and the row below it
(its neighbours' halo rows, or the wrap-around / dead rows of a whole board), which is
how the distributed Life splits a board; :func:`advance` does k generations of a strip
from k-deep halos; :func:`step` does a whole board. Nodes run it in their strips, the head
to check and show boards.
"""

from dataclasses import dataclass

import numpy as np

from piswarm.protocol.life import Wrap, words_for

WORD = 64
_ONE = np.uint64(1)
_TOP = np.uint64(63)


def pack(board: np.ndarray) -> np.ndarray:
    """A (height, width) array of 0/1 (any integer or bool type) as packed words."""
    cells = np.asarray(board).astype(bool)
    if cells.ndim != 2 or 0 in cells.shape:
        raise ValueError("a board is a non-empty 2-D array")
    height, width = cells.shape
    padded = np.zeros((height, words_for(width) * WORD), dtype=bool)
    padded[:, :width] = cells
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def unpack(words: np.ndarray, width: int) -> np.ndarray:
    """Packed words back to a (height, width) uint8 array of 0/1."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, axis=1, bitorder="little")[:, :width]


def _last_word_mask(width: int) -> np.uint64:
    used = width % WORD
    return np.uint64(0xFFFFFFFFFFFFFFFF if used == 0 else (1 << used) - 1)


# Words per chunk of rows that one pass of the kernel works on: the chunk's ten planes
# (~1 MiB) stay in a core's L2 cache, and there are few enough chunks that numpy's ~1 us a
# call stays small. Measured on 4096 x 4096 (64 words a row): 64 rows 4.8 ms a generation,
# 128 3.1, 192 2.9, 256 3.2, 512 3.4.
CHUNK_WORDS = 12_288


def chunk_rows_for(words: int) -> int:
    return max(1, CHUNK_WORDS // words)


class _Planes:
    """The kernel's scratch planes for chunks of up to ``rows`` output rows: allocated once
    per :func:`step` / :func:`advance`, so a generation allocates nothing."""

    def __init__(self, rows: int, words: int) -> None:
        n, m = (rows + 2) * words, rows * words
        self.west, self.east, self.tmp, self.sum0, self.sum1 = (
            np.empty(n, dtype=np.uint64) for _ in range(5)
        )
        self.a, self.b, self.c, self.d = (np.empty(m, dtype=np.uint64) for _ in range(4))


def _chunk(rows: np.ndarray, out: np.ndarray, width: int, torus: bool, p: _Planes) -> None:
    """One generation of ``rows[1:-1]`` into ``out``, seeing ``rows[0]`` and ``rows[-1]``
    beyond them. Both are C-contiguous (r + 2, words) and (r, words).

    The rows are handled as one flat run of words, so every operation is one contiguous
    numpy call writing into a scratch plane (``out=``, no temporaries): ~28 passes over
    the words a generation. A word's west neighbour bits come from the word before it,
    which for the first word of a row is the previous row's last: those columns are then
    set right, as are the east ones of each row's last word.
    """
    n2, words = rows.shape
    n, m = n2 * words, (n2 - 2) * words
    cells, alive = rows.reshape(-1), out.reshape(-1)
    west, east, tmp = p.west[:n], p.east[:n], p.tmp[:n]
    sum0, sum1 = p.sum0[:n], p.sum1[:n]
    # West (cell x sees x - 1) and east (x sees x + 1) neighbour planes.
    np.left_shift(cells, _ONE, out=west)
    np.right_shift(cells[:-1], _TOP, out=tmp[1:])
    np.bitwise_or(west[1:], tmp[1:], out=west[1:])
    np.right_shift(cells, _ONE, out=east)
    np.left_shift(cells[1:], _TOP, out=tmp[:-1])
    np.bitwise_or(east[:-1], tmp[:-1], out=east[:-1])
    first, last = rows[:, 0], rows[:, -1]
    west2, east2 = west.reshape(n2, words), east.reshape(n2, words)
    if torus:  # cell 0 sees cell width - 1, and cell width - 1 sees cell 0
        edge = np.uint64((width - 1) % WORD)
        west2[:, 0] = (first << _ONE) | ((last >> edge) & _ONE)
        east2[:, -1] = (last >> _ONE) | ((first & _ONE) << edge)
    else:
        west2[:, 0] = first << _ONE
        east2[:, -1] = last >> _ONE
    # Per row, west + self + east as a 2-bit number (sum0, sum1).
    np.bitwise_xor(west, cells, out=tmp)
    np.bitwise_xor(tmp, east, out=sum0)
    np.bitwise_and(tmp, east, out=tmp)
    np.bitwise_and(west, cells, out=sum1)
    np.bitwise_or(sum1, tmp, out=sum1)
    # The eight neighbours of the middle rows: the rows above and below (2-bit numbers
    # up and down) and west + east of the row itself (mid).
    up0, up1 = sum0[:m], sum1[:m]
    down0, down1 = sum0[2 * words : 2 * words + m], sum1[2 * words : 2 * words + m]
    mid_w, mid_e, centre = west[words : words + m], east[words : words + m], cells[words:-words]
    a, b, c, d = p.a[:m], p.b[:m], p.c[:m], p.d[:m]
    np.bitwise_xor(mid_w, mid_e, out=a)  # mid0
    np.bitwise_and(mid_w, mid_e, out=b)  # mid1
    # Weight 1: up0 + mid0 + down0 -> ones, and a carry of weight 2.
    np.bitwise_xor(up0, a, out=c)
    np.bitwise_and(up0, a, out=d)
    np.bitwise_xor(c, down0, out=a)  # ones
    np.bitwise_and(c, down0, out=c)
    np.bitwise_or(c, d, out=c)  # carry
    # Weight 2: up1 + mid1 + down1 + carry. Alive needs it to be exactly 1 (a count of 2
    # or 3, then 3 or 2-and-alive): the two pairs' sums differ in parity (x ^ y) and
    # neither pair is 1 + 1 (p1 | p2).
    np.bitwise_xor(up1, b, out=d)  # x
    np.bitwise_and(up1, b, out=b)  # p1
    np.bitwise_xor(down1, c, out=alive)  # y
    np.bitwise_and(down1, c, out=c)  # p2
    np.bitwise_or(b, c, out=b)
    np.bitwise_xor(d, alive, out=d)
    np.bitwise_or(a, centre, out=a)  # a count of 3, or 2 and alive
    np.bitwise_and(d, a, out=d)
    np.bitwise_not(b, out=b)
    np.bitwise_and(d, b, out=alive)
    if width % WORD:
        out[:, -1] &= _last_word_mask(width)


def _valid(rows: np.ndarray, out: np.ndarray, width: int, wrap: Wrap, p: _Planes) -> None:
    """One generation of ``rows[1:-1]`` into ``out`` (rows 0 and -1 are their neighbours),
    a chunk of rows at a time."""
    torus = wrap == "torus"
    height = out.shape[0]
    size = (p.a.size // rows.shape[1]) if rows.shape[1] else 1
    for start in range(0, height, size):
        end = min(height, start + size)
        _chunk(rows[start : end + 2], out[start:end], width, torus, p)


def step_strip(
    strip: np.ndarray, above: np.ndarray, below: np.ndarray, width: int, wrap: Wrap = "torus"
) -> np.ndarray:
    """One generation of ``strip`` (h x words), seeing ``above`` and ``below`` (rows of
    words) beyond its edges. ``wrap`` decides what lies beyond the left and right edges."""
    rows = np.concatenate((above.reshape(1, -1), strip, below.reshape(1, -1)))
    out = np.empty_like(strip)
    _valid(rows, out, width, wrap, _Planes(chunk_rows_for(strip.shape[1]), strip.shape[1]))
    return out


def edges(board: np.ndarray, wrap: Wrap) -> tuple[np.ndarray, np.ndarray]:
    """The rows beyond a whole board's top and bottom: wrapped around, or dead."""
    if wrap == "torus":
        return board[-1], board[0]
    dead = np.zeros(board.shape[1], dtype=np.uint64)
    return dead, dead


def step(
    board: np.ndarray,
    width: int,
    wrap: Wrap = "torus",
    generations: int = 1,
    *,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """``generations`` generations of a whole packed board.

    The board lives between two buffers with a row to spare above and below (the rows
    beyond its edges: wrapped around or dead), each generation written from one into the
    other: nothing is copied but those two rows.
    """
    height, words = board.shape
    planes = _Planes(chunk_rows or chunk_rows_for(words), words)
    src = np.zeros((height + 2, words), dtype=np.uint64)
    dst = np.zeros_like(src)
    src[1:-1] = board
    for _ in range(generations):
        if wrap == "torus":
            src[0], src[-1] = src[-2], src[1]
        _valid(src, dst[1:-1], width, wrap, planes)
        src, dst = dst, src
    return src[1:-1].copy()


def advance(
    strip: np.ndarray,
    above: np.ndarray | None,
    below: np.ndarray | None,
    generations: int,
    width: int,
    wrap: Wrap = "torus",
    *,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """``generations`` generations of a strip, given that many rows beyond each edge
    (its neighbours' halos) or ``None`` at a dead edge of the board.

    The halo rows are stepped too, one row fewer each generation from the outside in
    (each step needs both neighbours of a row), so after ``generations`` steps exactly
    the strip's own rows are left, and they are exact: one exchange of k rows buys k
    generations. A dead edge is a row of zeros that stays in place.
    """
    for name, halo in (("above", above), ("below", below)):
        if halo is not None and halo.shape[0] != generations:
            raise ValueError(f"{name}: {halo.shape[0]} halo rows for {generations} generations")
    words = strip.shape[1]
    dead = np.zeros((1, words), dtype=np.uint64)
    src = np.concatenate(
        (dead if above is None else above, strip, dead if below is None else below)
    )
    dst = np.zeros_like(src)
    planes = _Planes(chunk_rows or chunk_rows_for(words), words)
    lo, hi = 0, src.shape[0]  # the live rows: src[lo:hi]
    for _ in range(generations):
        _valid(src[lo:hi], dst[lo + 1 : hi - 1], width, wrap, planes)
        if above is None:
            dst[lo] = 0
        else:
            lo += 1
        if below is None:
            dst[hi - 1] = 0
        else:
            hi -= 1
        src, dst = dst, src
    top = 1 if above is None else 0
    bottom = 1 if below is None else 0
    return src[lo + top : hi - bottom].copy()


def _moved(
    n: int, above: np.ndarray | None, below: np.ndarray | None, top: int, bottom: int
) -> tuple[int, int]:
    """The rows ``[start, end)`` of an ``n``-row strip that it holds after its edges move
    by ``top`` and ``bottom``; ValueError for a move that cannot be."""
    if (above is None and top) or (below is None and bottom):
        raise ValueError("an edge with nothing beyond it cannot move")
    if n + bottom <= top:
        raise ValueError(f"moving the edges by {top} and {bottom} leaves no rows")
    return top, n + bottom


def move_boundaries(
    rows: np.ndarray,
    above: np.ndarray | None,
    below: np.ndarray | None,
    top: int,
    bottom: int,
    depth: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A strip after its top edge moved down ``top`` rows and its bottom edge ``bottom``
    rows (negative: up), with the ``depth`` rows beyond each new edge: what
    :func:`advance` needs for a round of ``depth`` generations.

    ``above`` is the upper neighbour's bottom rows and ``below`` the lower one's top rows,
    all of the same generation (``None`` at an edge that does not move and has nothing
    beyond: a dead edge of the board). An edge can move as far as the rows on hand allow
    while leaving ``depth`` beyond it.
    """
    lead = 0 if above is None else above.shape[0]
    whole = np.concatenate([part for part in (above, rows, below) if part is not None])
    start, end = (lead + edge for edge in _moved(rows.shape[0], above, below, top, bottom))
    if (above is not None and start < depth) or (
        below is not None and end + depth > whole.shape[0]
    ):
        raise ValueError(f"not {depth} rows beyond an edge moved by {top} / {bottom}")
    return (
        whole[start:end],
        None if above is None else whole[start - depth : start],
        None if below is None else whole[end : end + depth],
    )


@dataclass(frozen=True)
class Inside:
    """What :func:`inner_rows` computed while the halos travelled: the strip's rows
    ``[k, n - k)`` ``k`` generations on, and the rows next to each edge run that
    :func:`finish_round` reads on the way there.

    ``top[i]`` holds rows ``i`` and ``i + 1`` at generation ``i``, ``bottom[i]`` rows
    ``n - i - 2`` and ``n - i - 1`` (``i < k``): the inside's outermost valid rows.
    """

    rows: np.ndarray
    top: np.ndarray
    bottom: np.ndarray


def inner_rows(rows: np.ndarray, generations: int, width: int, wrap: Wrap = "torus") -> Inside:
    """Rows ``[k, n - k)`` of a strip of ``n > 2k`` rows, ``k = generations`` later: the
    part that needs nothing from the neighbours, computed while their halos travel.

    Generation ``i`` knows rows ``[i, n - i)``: a trapezoid narrowing by a row at each
    side per generation. The two outermost rows at each side are kept at each generation
    (:class:`Inside`), so the edges need only the rows outside the trapezoid.
    """
    k, n = generations, rows.shape[0]
    if n <= 2 * k:
        raise ValueError(f"a strip of {n} rows has no inside {k} rows from its edges")
    words = rows.shape[1]
    top = np.empty((k, 2, words), dtype=np.uint64)
    bottom = np.empty_like(top)
    src = np.array(rows, dtype=np.uint64, order="C")
    dst = np.empty_like(src)
    planes = _Planes(chunk_rows_for(words), words)
    for i in range(k):
        top[i], bottom[i] = src[i : i + 2], src[n - i - 2 : n - i]
        _valid(src[i : n - i], dst[i + 1 : n - i - 1], width, wrap, planes)
        src, dst = dst, src
    return Inside(src[k : n - k], top, bottom)


def finish_round(
    inside: Inside,
    rows: np.ndarray,
    above: np.ndarray | None,
    below: np.ndarray | None,
    top: int,
    bottom: int,
    generations: int,
    width: int,
    wrap: Wrap = "torus",
) -> np.ndarray:
    """The strip ``generations`` later with its edges moved as in :func:`move_boundaries`,
    from :func:`inner_rows` and the halos that arrived meanwhile. Equal to
    ``advance(*move_boundaries(...))``.

    The new strip is rows ``[top, n + bottom)`` of the old one. What the inside does not
    cover is, at generation ``j``, the rows ``[top - k + j, j)`` above it and ``[n - j,
    n + bottom + k - j)`` below it: two runs of fixed height that slide inwards a row per
    generation, each seeing the inside's two outermost rows of that generation. Both runs
    and those rows are stepped as one stack of ``a + b + 4`` rows (numpy's per-call cost
    dominates such thin runs); the rows between the runs come out wrong and are not used.
    Rows beyond a dead edge of the board are zero at every generation.
    """
    k, n = generations, rows.shape[0]
    start, end = _moved(n, above, below, top, bottom)
    if inside.rows.shape[0] != n - 2 * k:
        raise ValueError(f"{inside.rows.shape[0]} inside rows for a strip of {n} rows")
    a, b = max(0, k - start), max(0, end + k - n)  # the two runs' heights
    if (above is not None and a > above.shape[0]) or (below is not None and b > below.shape[0]):
        raise ValueError(f"not {k} rows beyond an edge moved by {top} / {bottom}")
    words = rows.shape[1]
    stack = np.zeros((a + b + 4, words), dtype=np.uint64)  # [run a | 2 | 2 | run b]
    if above is not None and a:
        stack[:a] = above[above.shape[0] - a :]
    if below is not None and b:
        stack[a + 4 :] = below[:b]
    if a or b:
        out = np.empty((a + b + 2, words), dtype=np.uint64)
        planes = _Planes(min(a + b + 2, chunk_rows_for(words)), words)
        for j in range(k):
            stack[a : a + 2], stack[a + 2 : a + 4] = inside.top[j], inside.bottom[j]
            _valid(stack, out, width, wrap, planes)
            stack[:a], stack[a + 4 :] = out[:a], out[a + 2 :]
            if above is None:  # run a is rows [j + 1 - k, j + 1) now: those < 0 are dead
                stack[: k - j - 1] = 0
            if below is None:  # run b is rows [n - j - 1, n + k - j - 1): those >= n
                stack[a + 4 + j + 1 :] = 0
    middle = inside.rows[max(0, start - k) : inside.rows.shape[0] - max(0, n - k - end)]
    return np.concatenate((stack[:a], middle, stack[a + 4 :]))


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def population(words: np.ndarray) -> int:
    """Live cells in packed rows."""
    flat = np.ascontiguousarray(words, dtype="<u8")
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return int(np.bitwise_count(flat).sum(dtype=np.int64))
    return int(_POP8[flat.view(np.uint8)].sum(dtype=np.int64))


def pool(words: np.ndarray, width: int, row0: int, scale: int) -> np.ndarray:
    """Rows ``row0 ..`` of a board pooled ``scale`` x ``scale`` (alive if any cell is),
    aligned to the board's pooled grid: row ``r`` goes to pooled row ``(row0 + r) // scale``."""
    cells = unpack(words, width)
    if scale == 1:
        return cells
    height = cells.shape[0]
    first, end = row0 // scale, -(-(row0 + height) // scale)
    pooled_width = -(-width // scale)
    padded = np.zeros(((end - first) * scale, pooled_width * scale), dtype=np.uint8)
    top = row0 - first * scale
    padded[top : top + height, :width] = cells
    grid = padded.reshape(end - first, scale, pooled_width, scale)
    pooled: np.ndarray = grid.max(axis=(1, 3))
    return pooled


def reference_step(cells: np.ndarray, wrap: Wrap = "torus") -> np.ndarray:
    """The plain version: a uint8 board of 0/1, eight ``np.roll``s (or zero padding)."""
    cells = np.asarray(cells, dtype=np.uint8)
    if wrap == "torus":
        n = sum(
            np.roll(np.roll(cells, dy, 0), dx, 1)
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)
        )
    else:
        padded = np.pad(cells, 1)
        h, w = cells.shape
        n = sum(
            padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0)
        )
    after: np.ndarray = ((n == 3) | ((cells == 1) & (n == 2))).astype(np.uint8)
    return after
