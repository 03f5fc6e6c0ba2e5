"""The native backend (libprimesieve via ctypes) against the numpy sieve, and selection."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piswarm.errors import ConfigError
from piswarm.sieve_backends import NumpyBackend, PrimesieveBackend, select_backend

NATIVE = PrimesieveBackend.load()
needs_native = pytest.mark.skipif(
    NATIVE is None, reason="libprimesieve is not installed (apt-get install libprimesieve11)"
)
NUMPY = NumpyBackend()


@needs_native
@settings(max_examples=100, deadline=None)
@given(
    lo=st.one_of(st.integers(0, 10**6), st.integers(10**12, 10**13)), width=st.integers(0, 50_000)
)
def test_native_and_numpy_agree_on_any_window(lo, width):
    assert np.array_equal(NATIVE.primes(lo, lo + width), NUMPY.primes(lo, lo + width))
    assert NATIVE.count(lo, lo + width) == NUMPY.count(lo, lo + width)


@needs_native
@pytest.mark.parametrize(
    ("lo", "hi", "count"),
    [(0, 10**8, 5_761_455), (0, 2, 0), (2, 3, 1), (10**12, 10**12 + 10**8, 3_618_282)],
)
def test_native_counts_match_known_values(lo, hi, count):
    assert NATIVE.count(lo, hi) == count == NUMPY.count(lo, hi)


@needs_native
def test_a_long_range_listed_in_chunks_is_the_same_list():
    lo, hi = 10**9 - 3 * 10**6, 10**9 + 25 * 10**6 + 7  # three chunks and a bit
    listed = NATIVE.primes(lo, hi)
    assert np.array_equal(listed, NUMPY.primes(lo, hi))
    assert listed.size == NATIVE.count(lo, hi)


@needs_native
def test_auto_prefers_the_native_backend_and_reports_its_version():
    backend = select_backend("auto")
    assert backend.name == "primesieve" and backend.version[0].isdigit()


def test_numpy_can_always_be_chosen():
    backend = select_backend("numpy")
    assert backend.name == "numpy" and backend.count(0, 100) == 25


@pytest.mark.skipif(NATIVE is not None, reason="libprimesieve is installed here")
def test_asking_for_a_missing_native_backend_says_how_to_get_it():
    with pytest.raises(ConfigError, match="apt-get install libprimesieve11"):
        select_backend("primesieve")
