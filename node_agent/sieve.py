"""Prime sieving in numpy: pure compute, no I/O (the runner puts MQTT around it).

:class:`SegmentedSieve` finds the primes in ``[lo, hi)`` with an odd-only segmented sieve
of Eratosthenes: each segment is a boolean array over the odd numbers only (half the
memory), the multiples of 3, 5, 7, 11 and 13 are cleared in one go by tiling a precomputed
pattern (they are the densest marks), and every larger base prime clears its multiples
with one strided numpy assignment. Segments are sized to stay in cache.
"""

import math
from collections.abc import Iterator

import numpy as np

_PRESIEVE = (3, 5, 7, 11, 13)
_PERIOD = math.prod(_PRESIEVE)  # the pattern repeats every 15015 odd numbers
DEFAULT_SEGMENT = 1 << 22  # odd numbers per segment: 4 MiB of booleans (measured best)


def small_primes(limit: int) -> np.ndarray:
    """All primes ``<= limit`` as uint64 (a plain odd-only sieve; for base primes)."""
    if limit < 2:
        return np.zeros(0, dtype=np.uint64)
    odd = np.ones((limit + 1) // 2, dtype=bool)  # odd[i] stands for 2*i + 1
    odd[0] = False  # 1 is not prime
    for i in range(1, (math.isqrt(limit) + 1) // 2):
        if odd[i]:
            p = 2 * i + 1
            odd[p * p // 2 :: p] = False
    return np.concatenate(
        (np.array([2], dtype=np.uint64), 2 * np.flatnonzero(odd).astype(np.uint64) + 1)
    )


def _presieve_pattern() -> np.ndarray:
    """Odd numbers 1, 3, 5, ... over one period, False where divisible by 3..13."""
    pattern = np.ones(_PERIOD, dtype=bool)
    for p in _PRESIEVE:
        pattern[(p // 2) :: p] = False  # odd number 2*i+1 divisible by p: i = p//2 + k*p
    return pattern


class SegmentedSieve:
    """Primes in any ``[lo, hi)`` with ``0 <= lo < hi <= 2**64 - 1`` (in practice ~1e15).

    Keeps its base primes between calls (they only grow), so a runner sieving block after
    block pays for them once.
    """

    def __init__(self, segment: int = DEFAULT_SEGMENT) -> None:
        if segment < _PERIOD:
            raise ValueError(f"segment of {segment} odd numbers is below {_PERIOD}")
        self.segment = segment
        self._base = small_primes(1000)
        self._base_limit = 1000
        # Two periods so that any offset into the pattern can be cut without wrapping.
        self._pattern = np.tile(_presieve_pattern(), 2)

    def _base_primes(self, hi: int) -> np.ndarray:
        need = math.isqrt(hi) + 1
        if need > self._base_limit:
            self._base_limit = max(need, 2 * self._base_limit)
            self._base = small_primes(self._base_limit)
        return self._base[self._base <= need]

    def _segment(self, lo_odd: int, count: int, base: np.ndarray) -> np.ndarray:
        """Booleans for the odd numbers ``lo_odd, lo_odd + 2, ...`` (``count`` of them)."""
        offset = (lo_odd // 2) % _PERIOD
        seg = np.empty(count, dtype=bool)
        done = 0
        while done < count:  # tile the 3..13 pattern, starting at the right phase
            take = min(count - done, _PERIOD)
            start = (offset + done) % _PERIOD
            seg[done : done + take] = self._pattern[start : start + take]
            done += take
        hi_odd = lo_odd + 2 * count
        # 2 never appears and 3..13 are in the pattern; a prime marks from its square on.
        ps = base[(base >= 17) & (base * base < hi_odd)].astype(np.int64)
        if ps.size:
            first = np.maximum(ps * ps, -(-lo_odd // ps) * ps)  # first multiple >= lo_odd
            first += ps * (first % 2 == 0)  # ... that is odd
            start = (first - lo_odd) // 2
            # A prime at least as long as the segment hits it at most once: all of those
            # in one vectorised assignment (far-out blocks have millions of them).
            once = ps >= count
            seg[start[once & (start < count)]] = False
            for p, begin in zip(ps[~once].tolist(), start[~once].tolist(), strict=True):
                seg[begin::p] = False
        # The pattern cleared the small primes themselves; put back those in range.
        for p in _PRESIEVE:
            if lo_odd <= p < hi_odd:
                seg[(p - lo_odd) // 2] = True
        if lo_odd == 1:
            seg[0] = False  # 1 is not prime
        return seg

    def primes(self, lo: int, hi: int) -> np.ndarray:
        """The primes ``p`` with ``lo <= p < hi``, ascending, as uint64."""
        _check_range(lo, hi)
        parts = [np.array([2], dtype=np.uint64)] if lo <= 2 < hi else []
        for lo_odd, seg in self._iter(lo, hi):
            index = np.flatnonzero(seg)  # int64, fresh: turned into the primes in place
            index *= 2
            index += lo_odd
            parts.append(index.view(np.uint64))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)

    def count(self, lo: int, hi: int) -> int:
        """How many primes ``p`` have ``lo <= p < hi`` (without materialising them)."""
        _check_range(lo, hi)
        total = 1 if lo <= 2 < hi else 0
        for _lo_odd, seg in self._iter(lo, hi):
            total += int(np.count_nonzero(seg))
        return total

    def _iter(self, lo: int, hi: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first odd number, booleans)`` for each segment of ``[lo, hi)``."""
        lo_odd = max(lo, 1) | 1  # the first odd number >= lo
        if lo_odd >= hi:
            return
        base = self._base_primes(hi)
        remaining = (hi - lo_odd + 1) // 2  # odd numbers in [lo_odd, hi)
        while remaining > 0:
            count = min(self.segment, remaining)
            yield lo_odd, self._segment(lo_odd, count, base)
            lo_odd += 2 * count
            remaining -= count


def _check_range(lo: int, hi: int) -> None:
    if not (isinstance(lo, int) and isinstance(hi, int)):
        raise TypeError("lo and hi must be integers")
    if lo < 0 or hi < lo or hi > 2**63:
        raise ValueError(f"range [{lo}, {hi}) must satisfy 0 <= lo <= hi <= 2**63")
