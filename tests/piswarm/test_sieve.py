"""The numpy sieve against known counts and against a reference that is obviously right."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piswarm.sieve import SegmentedSieve, count_bound, small_primes


def reference_primes(lo: int, hi: int) -> list[int]:
    """Trial division: slow, but correct beyond doubt."""

    def is_prime(n: int) -> bool:
        if n < 2:
            return False
        if n % 2 == 0:
            return n == 2
        f = 3
        while f * f <= n:
            if n % f == 0:
                return False
            f += 2
        return True

    return [n for n in range(lo, hi) if is_prime(n)]


def miller_rabin(n: int) -> bool:
    """Deterministic for n < 3.3e24 with these bases (a second, independent reference)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    if n in bases:
        return True
    if any(n % b == 0 for b in bases):
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize(
    ("hi", "count"),
    [(2, 0), (3, 1), (10, 4), (100, 25), (10**6, 78_498), (10**7, 664_579), (10**8, 5_761_455)],
)
def test_known_counts(hi, count):
    assert SegmentedSieve().count(0, hi) == count


def test_primes_equal_count_and_the_plain_sieve():
    sieve = SegmentedSieve(segment=1 << 12)  # many segments, every boundary case exercised
    primes = sieve.primes(0, 2_000_000)
    assert primes.dtype == np.uint64 and len(primes) == sieve.count(0, 2_000_000)
    assert np.array_equal(primes, small_primes(1_999_999))


@settings(max_examples=200, deadline=None)
@given(
    lo=st.integers(0, 10**6),
    width=st.integers(0, 3000),
    segment=st.sampled_from([1, 7, 100, 4099, 1 << 16]),
)
def test_any_window_matches_trial_division(lo, width, segment):
    sieve = SegmentedSieve(segment=segment)
    assert sieve.primes(lo, lo + width).tolist() == reference_primes(lo, lo + width)


@settings(max_examples=30, deadline=None)
@given(lo=st.integers(10**12, 10**15), width=st.integers(1, 2000))
def test_windows_far_out_match_miller_rabin(lo, width):
    expected = [n for n in range(lo, lo + width) if miller_rabin(n)]
    assert FAR_OUT.primes(lo, lo + width).tolist() == expected


FAR_OUT = SegmentedSieve(segment=700)  # shared: its base primes are built once


def test_blocks_add_up_to_the_whole():
    sieve = SegmentedSieve()
    edges = [0, 1, 2, 3, 17, 1000, 65_536, 999_983, 999_984, 5_000_000]
    parts = [sieve.count(a, b) for a, b in itertools.pairwise(edges)]
    assert sum(parts) == sieve.count(0, 5_000_000) == 348_513


def test_primes_in_a_trillion_range_from_anchors():
    # ANCHORS.md: primes in [1e12, 1e12 + 1e8) = 3,618,282
    assert SegmentedSieve().count(10**12, 10**12 + 10**8) == 3_618_282


def test_blocks_far_out_use_every_way_of_crossing_off():
    # 1e7 blocks near 1e12, as workers sieve them: 333,334 rows a residue, so the sieving
    # primes (up to 1e6) are crossed off by strided slices, by the vectorised runs of a
    # few hits and, above 333,334, by the single hits. Their sum is the anchor's count.
    sieve, start = SegmentedSieve(), 10**12
    assert sum(sieve.count(lo, lo + 10**7) for lo in range(start, start + 10**8, 10**7)) == (
        3_618_282
    )


def test_a_segment_spanning_more_than_one_pattern_period_is_exact():
    # 323,323 rows per period of the 7-to-19 pattern: this segment copies it twice over.
    sieve, small = SegmentedSieve(segment=700_000), SegmentedSieve(segment=5_000)
    assert sieve.count(10**9, 10**9 + 30 * 700_000) == small.count(10**9, 10**9 + 30 * 700_000)
    assert np.array_equal(sieve.primes(3 * 10**7, 5 * 10**7), small.primes(3 * 10**7, 5 * 10**7))


@pytest.mark.parametrize(("lo", "hi"), [(-1, 10), (10, 5), (0, 2**64)])
def test_bad_ranges_are_refused(lo, hi):
    with pytest.raises(ValueError, match="must satisfy"):
        SegmentedSieve().count(lo, hi)


REFERENCE = small_primes(3_000_000)


@given(lo=st.integers(0, 2_900_000), width=st.integers(0, 100_000))
def test_the_count_bound_that_sizes_a_listing_is_never_too_small(lo, width):
    found = np.searchsorted(REFERENCE, lo + width) - np.searchsorted(REFERENCE, lo)
    assert count_bound(lo, lo + width) >= found
