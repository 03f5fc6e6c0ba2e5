"""Decimal lines written by numpy: exactly what Python's str() would write."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from head.coordinator.prime_text import decimal_lines
from piswarm.sieve import SegmentedSieve


def python_lines(values: list[int]) -> bytes:
    return "".join(f"{v}\n" for v in values).encode()


# Numbers of every width, and the edges between widths (9, 10, 99, 100, ...).
EDGES = st.sampled_from([10**d + delta for d in range(20) for delta in (-1, 0, 1)])
UINT64 = st.one_of(st.integers(0, 2**64 - 1), EDGES.filter(lambda v: 0 <= v < 2**64))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(UINT64, max_size=60))
def test_any_sorted_numbers_read_as_python_writes_them(values):
    values.sort()
    assert decimal_lines(np.array(values, dtype=np.uint64)) == python_lines(values)


def test_a_block_of_primes_and_the_extremes():
    primes = SegmentedSieve().primes(10**9 - 10**6, 10**9 + 10**6)  # 9 and 10 digits
    assert decimal_lines(primes) == python_lines(primes.tolist())
    extremes = [0, 1, 2**63 - 1, 2**63, 10**19, 2**64 - 1]
    assert decimal_lines(np.array(extremes, dtype=np.uint64)) == python_lines(extremes)
    assert decimal_lines(np.zeros(0, dtype=np.uint64)) == b""


@pytest.mark.parametrize("bad", [[3, 2], [[1, 2]]])
def test_unsorted_or_2d_input_is_refused(bad):
    with pytest.raises(ValueError, match=r"ascending|1-D"):
        decimal_lines(np.array(bad, dtype=np.uint64))
