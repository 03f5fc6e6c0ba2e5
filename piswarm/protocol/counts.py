"""Count-only results: what a prime search reports about a block, without its primes.

A job submitted with ``keep: "counts"`` asks its nodes for a
:class:`~piswarm.protocol.summary.BlockSummary` per block instead of the encoded primes
(``primes.py``): about 200 bytes of JSON on the same result topic,
``piswarm/nodes/<node>/results/<job>/<block>``, whatever the block's size (a node with
several results ready sends them together: ``summary.py`` has the wire format). It says
how many primes the block holds, the first and last, how many twin pairs (p, p+2) lie
inside it, its largest gap between consecutive primes and the prime before it, and
the CRC-32 of the primes as little-endian uint64 (the same checksum a full block carries),
so ``piswarm job verify --recompute`` can still re-check any block, and a second node
computing the block again must agree to the bit.

The coordinator joins the blocks: a twin pair or a gap that straddles two blocks is found
from the last prime of one and the first of the next (:func:`edge`). Every block but a
job's last spans at least ``MIN_BLOCK`` numbers, more than any gap between primes below
2**64, so only the last one can be empty.

Nothing here does I/O; :func:`summarize` runs on a node, :func:`check_summary` on the head.
"""

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.jobs import MAX_PRIME_GAP
from piswarm.protocol.primes import capacity, check_block_gaps
from piswarm.protocol.summary import BlockSummary, decode_summary, is_summary


@dataclass(frozen=True)
class Edge:
    """What lies between two neighbouring blocks' primes."""

    twin: bool
    gap: int
    gap_at: int


def summarize(primes: np.ndarray) -> BlockSummary:
    """The summary of an ascending array of primes (a node's work in count-only jobs)."""
    return summarize_chunks([primes])


def summarize_chunks(chunks: Iterable[np.ndarray]) -> BlockSummary:
    """The summary of ascending primes given a piece at a time, each piece after the
    last (a block of billions of numbers is listed in pieces: the CRC runs on)."""
    count = first = last = twins = gap = gap_at = crc = 0
    for chunk in chunks:
        arr = np.ascontiguousarray(chunk, dtype="<u8")
        if arr.size == 0:
            continue
        if count:  # the pair across the seam
            between = edge((count, last), (int(arr.size), int(arr[0])))
            twins += between.twin
            gap, gap_at = larger_gap(gap, gap_at, between.gap, between.gap_at)
        else:
            first = int(arr[0])
        gaps = np.diff(arr)
        twins += int(np.count_nonzero(gaps == 2))
        if gaps.size:
            at = int(np.argmax(gaps))  # the first of the largest
            gap, gap_at = larger_gap(gap, gap_at, int(gaps[at]), int(arr[at]))
        crc = zlib.crc32(arr.data, crc)
        count += int(arr.size)
        last = int(arr[-1])
    return BlockSummary(
        count=count, first=first, last=last, twins=twins, gap=gap, gap_at=gap_at, crc32=crc
    )


def edge(before: BlockSummary | tuple[int, int], after: BlockSummary | tuple[int, int]) -> Edge:
    """The twin pair and gap between the last prime of one block and the first of the
    next; ``(count, last)`` / ``(count, first)`` pairs do as well as summaries."""
    count_b, last = (before.count, before.last) if isinstance(before, BlockSummary) else before
    count_a, first = (after.count, after.first) if isinstance(after, BlockSummary) else after
    if not count_b or not count_a:
        return Edge(twin=False, gap=0, gap_at=0)
    gap = first - last
    return Edge(twin=gap == 2, gap=gap, gap_at=last)


def larger_gap(gap: int, gap_at: int, other: int, other_at: int) -> tuple[int, int]:
    """The larger of two ``(gap, prime before it)``; of equal gaps, the first."""
    if other > gap or (other == gap and other and other_at < gap_at):
        return other, other_at
    return gap, gap_at


@dataclass
class Totals:
    """A job's answers added up from its blocks' summaries, given in block order: pairs
    and gaps across the edge of two neighbouring blocks are joined."""

    primes: int = 0
    largest: int | None = None
    twins: int = 0
    gap: int = 0
    gap_at: int = 0
    _last: tuple[int, BlockSummary] | None = None  # the block added last, and its number

    def add(self, block: int, s: BlockSummary) -> None:
        self.primes += s.count
        self.twins += s.twins
        if s.count:
            self.largest = s.last if self.largest is None else max(self.largest, s.last)
        self.gap, self.gap_at = larger_gap(self.gap, self.gap_at, s.gap, s.gap_at)
        if self._last is not None and self._last[0] == block - 1:
            between = edge(self._last[1], s)
            self.twins += between.twin
            self.gap, self.gap_at = larger_gap(self.gap, self.gap_at, between.gap, between.gap_at)
        self._last = block, s


def check_summary(summary: BlockSummary, lo: int, hi: int) -> BlockSummary:
    """Refuse a summary no block ``[lo, hi)`` can have (a ProtocolError says which rule).

    It cannot prove the count: a second node computing the block (double-checking) or
    ``job verify --recompute`` does that. It does bound everything a count can be
    wrong by: the primes lie in the block, no gap is wider than primes leave, and the
    count fits between what those gaps force and what the block can hold."""
    s = summary
    if s.count > capacity(lo, hi):
        raise ProtocolError(f"{s.count} primes cannot fit in [{lo}, {hi})")
    if s.count == 0:
        if s.first or s.last or s.twins or s.gap or s.gap_at:
            raise ProtocolError("an empty block with primes in its summary")
        if hi - lo > MAX_PRIME_GAP:
            raise ProtocolError(f"no primes in [{lo}, {hi}), and every {MAX_PRIME_GAP} hold one")
        return s
    if not lo <= s.first <= s.last < hi:
        raise ProtocolError(f"primes {s.first}..{s.last} lie outside block [{lo}, {hi})")
    if s.first - lo > MAX_PRIME_GAP or hi - 1 - s.last > MAX_PRIME_GAP:
        raise ProtocolError(f"a gap wider than primes leave in [{lo}, {hi})")
    if s.count == 1:
        if s.first != s.last or s.twins or s.gap or s.gap_at:
            raise ProtocolError("one prime, but a gap or twins in the summary")
        return s
    if s.first == s.last or s.gap == 0 or not s.first <= s.gap_at <= s.last - s.gap:
        raise ProtocolError("the largest gap lies outside the block's primes")
    if s.twins > s.count - 1 or (s.last - s.first) > s.gap * (s.count - 1):
        raise ProtocolError("the count, the twins and the largest gap do not fit together")
    return s


def check_result(payload: bytes, lo: int, hi: int) -> BlockSummary:
    """Check a result of block ``[lo, hi)`` in either form and return its summary: a
    summary (count-only jobs) by :func:`check_summary`, an encoded block by everything
    :func:`~piswarm.protocol.primes.check_block` checks."""
    if is_summary(payload):
        return check_summary(decode_summary(payload), lo, hi)
    header, gaps = check_block_gaps(payload, lo, hi)
    return BlockSummary(
        count=header.count,
        first=header.first,
        last=header.last,
        twins=gaps.twins,
        gap=gaps.gap,
        gap_at=gaps.gap_at,
        crc32=header.crc32,
    )
