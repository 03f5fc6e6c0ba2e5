"""Flag value types: ranges checked as the flag is read, numbers written as people read them."""

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piswarm.flags import readable, real, text, whole


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (5000, "5,000"),
        (100_000_000, "100,000,000"),
        (10**9, "1e9"),
        (2**63 - 1, "9.22e18"),
        (10**30, "1e30"),
        (0.05, "0.05"),
        (3600.0, "3,600"),
        (1e-9, "1e-9"),
        (1e11, "1e11"),
    ],
)
def test_numbers_are_written_short(value, shown):
    assert readable(value) == shown


@given(st.integers(0, 2**63 - 1))
def test_whole_reads_every_number_in_range_back(n):
    assert whole(0, 2**63 - 1)(str(n)) == n


@pytest.mark.parametrize(
    ("given_text", "error"),
    [
        ("0", "0 is not in 10,000-100,000,000"),
        ("1e40", "1e40 is not in 10,000-100,000,000"),
        ("1" + "0" * 30, "1e30 is not in"),
        ("1e999999999", "1e999999999 is not in"),
        ("5.5", "'5.5' is not a whole number"),
        ("-1", "'-1' is not a non-negative whole number"),
    ],
)
def test_whole_says_what_is_allowed(given_text, error):
    with pytest.raises(argparse.ArgumentTypeError, match=error):
        whole(10_000, 100_000_000)(given_text)


def test_whole_takes_the_ways_people_write_numbers():
    parse = whole(0, 10**10)
    assert parse("1e9") == parse("1_000_000_000") == parse("1000000000") == 10**9
    assert parse("2.5e9") == 2_500_000_000


@pytest.mark.parametrize(
    ("given_text", "error"),
    [("x", "not a number"), ("inf", "not a finite"), ("0", "0 is not in 0.05-3,600 s")],
)
def test_real_says_what_is_allowed(given_text, error):
    with pytest.raises(argparse.ArgumentTypeError, match=error):
        real(0.05, 3600, unit=" s")(given_text)


def test_text_has_a_length_limit():
    assert text(3)("abc") == "abc"
    with pytest.raises(argparse.ArgumentTypeError, match="4 characters long; at most 3"):
        text(3)("abcd")
