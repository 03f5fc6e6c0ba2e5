"""The prime-block encoding: exact round trips, and every corruption refused cleanly."""

import itertools
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piswarm.protocol import ProtocolError
from piswarm.protocol.primes import HEADER, check_primes, decode_primes, encode_primes
from piswarm.sieve import SegmentedSieve

CODECS = ["zstd", "zlib", "none"]


@st.composite
def prime_like_lists(draw):
    """Ascending odd numbers (optionally after a 2) with gaps of any size, many above 510.

    The codec does not test primality, only structure, so odd numbers stand in for primes
    and let hypothesis reach the gaps that real primes only show above ~3e11.
    """
    start = draw(st.integers(1, 2**62)) | 1
    halves = draw(st.lists(st.one_of(st.integers(1, 255), st.integers(256, 2**31)), max_size=300))
    values = [start]
    for h in halves:
        if values[-1] + 2 * h >= 2**64:
            break
        values.append(values[-1] + 2 * h)
    if draw(st.booleans()) and values[0] > 2:
        values.insert(0, 2)
    return np.array(values, dtype=np.uint64)


@settings(max_examples=300, deadline=None)
@given(primes=prime_like_lists(), codec=st.sampled_from(CODECS))
def test_round_trip_including_gaps_above_510(primes, codec):
    data = encode_primes(primes, codec=codec)
    block = decode_primes(data)
    assert np.array_equal(block.primes, primes)
    assert (block.count, block.first, block.last) == (len(primes), int(primes[0]), int(primes[-1]))
    header = check_primes(data)  # the coordinator's quick check agrees
    assert (header.count, header.last) == (len(primes), int(primes[-1]))


@settings(max_examples=300, deadline=None)
@given(primes=prime_like_lists(), chunk=st.integers(1, 9))
def test_the_checksum_rebuilt_chunk_by_chunk_is_the_whole_arrays(primes, chunk):
    """What check_primes verifies: the CRC of the primes, rebuilt a chunk at a time with
    the escaped gaps put back, wherever the chunks and the escapes fall."""
    from piswarm.protocol.primes import _crc_of, _parse, checksum

    parsed = _parse(encode_primes(primes, codec="none"), len(primes))
    assert _crc_of(parsed, chunk) == checksum(primes)


def test_a_result_with_a_wrong_crc_is_refused_by_the_check_too():
    """The coordinator stored blocks whose CRC was wrong; export then failed on them."""
    payload = bytearray(encode_primes(SegmentedSieve().primes(10**6, 10**6 + 10**5)))
    fields = list(HEADER.unpack_from(payload))
    fields[7] ^= 1  # the CRC-32
    payload[: HEADER.size] = HEADER.pack(*fields)
    with pytest.raises(ProtocolError, match="CRC-32"):
        check_primes(bytes(payload))


@pytest.mark.parametrize("codec", CODECS)
def test_real_blocks_round_trip(codec):
    sieve = SegmentedSieve()
    for lo, hi in [(0, 10), (0, 100_000), (10**9, 10**9 + 10**6), (2**40, 2**40 + 10**5)]:
        primes = sieve.primes(lo, hi)
        assert np.array_equal(decode_primes(encode_primes(primes, codec=codec)).primes, primes)


def test_zstd_size_is_what_anchors_promise():
    primes = SegmentedSieve().primes(10**9, 10**9 + 10**7)
    assert len(encode_primes(primes, codec="zstd")) / len(primes) < 0.6  # 0.59 measured
    assert len(encode_primes(primes, codec="zlib")) / len(primes) < 0.7  # 0.64 measured


def test_empty_block():
    block = decode_primes(encode_primes(np.zeros(0, dtype=np.uint64)))
    assert block.count == 0 and block.primes.size == 0


@pytest.mark.parametrize("bad", [[4], [3, 3], [7, 5], [3, 4]])
def test_encoder_refuses_what_is_not_an_ascending_odd_list(bad):
    with pytest.raises(ValueError, match="must be"):
        encode_primes(np.array(bad, dtype=np.uint64))


@st.composite
def any_uint64_lists(draw):
    """Lists the encoder must sort out: near-misses of valid ones (an even number, a
    repeat, a step down, a gap just over 2**33) and values near 2**64, where a step down
    taken modulo 2**64 looks like a small gap."""
    values = [int(v) for v in draw(prime_like_lists())]
    small = st.integers(0, 2**64 - 1)
    for _ in range(draw(st.integers(0, 3))):
        if not values:
            break
        i = draw(st.integers(0, len(values) - 1))
        change = draw(st.sampled_from(["even", "repeat", "down", "jump", "wrap", "any"]))
        if change == "even":
            values[i] ^= 1
        elif change == "repeat":
            values.insert(i, values[i])
        elif change == "down":
            values.insert(i + 1, max(0, values[i] - 2 * draw(st.integers(1, 300))))
        elif change == "jump":
            values.insert(i + 1, min(2**64 - 1, values[i] + 2**33 + 2))
        elif change == "wrap":
            values = [(v + 2**64 - 2**32) % 2**64 for v in values]
        else:
            values[i] = draw(small)
    return values


def _valid(values: list[int]) -> bool:
    odd = values[1:] if values and values[0] == 2 else values
    return all(v % 2 for v in odd) and all(0 < b - a <= 2**33 for a, b in itertools.pairwise(odd))


@settings(max_examples=400, deadline=None)
@given(values=any_uint64_lists())
def test_encoder_takes_exactly_the_ascending_odd_lists(values):
    """The encoder's checks ride on its gap arithmetic modulo 2**64: compare them with a
    plain statement of the rule, in Python integers."""
    primes = np.array(values, dtype=np.uint64)
    if _valid(values):
        assert np.array_equal(decode_primes(encode_primes(primes, codec="none")).primes, primes)
    else:
        with pytest.raises(ValueError, match=r"must be|exceeds"):
            encode_primes(primes, codec="none")


SAMPLE = SegmentedSieve().primes(10**6, 10**6 + 20_000)


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_corruption_is_a_protocol_error_or_detected(codec, data):
    payload = bytearray(encode_primes(SAMPLE, codec=codec))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] ^= data.draw(st.integers(1, 255))
    try:
        header = check_primes(bytes(payload))
    except ProtocolError:
        header = None
    else:  # what passes the quick check has the right count and range...
        assert (header.count, header.last) == (SAMPLE.size, int(SAMPLE[-1]))
    try:
        block = decode_primes(bytes(payload))
    except ProtocolError:
        return
    # ... and whatever survives the full decode is exactly what was sent.
    assert header is not None
    assert np.array_equal(block.primes, SAMPLE)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:10], "shorter than its header"),
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b[:4] + b"\x02" + b[5:], "unsupported prime block version"),
        (lambda b: b[:5] + b"\x09" + b[6:], "unknown codec"),
        (lambda b: b[: HEADER.size] + b"garbage", "corrupt compressed body"),
        (lambda b: b[:-5], "truncated"),
    ],
)
def test_specific_corruptions_name_the_problem(mutate, reason):
    payload = encode_primes(SAMPLE, codec="zlib")
    for check in (decode_primes, check_primes):
        with pytest.raises(ProtocolError, match=reason):
            check(mutate(payload))


def test_a_wrong_count_is_caught_before_anything_is_trusted():
    payload = bytearray(encode_primes(SAMPLE, codec="zlib"))
    fields = list(HEADER.unpack_from(payload))
    fields[4] += 1  # one prime more than the body holds
    payload[: HEADER.size] = HEADER.pack(*fields)
    with pytest.raises(ProtocolError, match="holds"):
        decode_primes(bytes(payload))


def test_a_compression_bomb_is_not_inflated():
    bomb = zlib.compress(b"\x01" * 50_000_000, 9)  # 50 MB of ones in ~50 kB
    header = HEADER.pack(b"PSPB", 1, 1, 0, 1001, 3, 2003, 0, 0)
    with pytest.raises(ProtocolError, match="longer than its header"):
        decode_primes(header + bomb)


def test_header_limits():
    header = HEADER.pack(b"PSPB", 1, 0, 0, 10**12, 3, 5, 0, 0)
    with pytest.raises(ProtocolError, match="exceed the limit"):
        decode_primes(header)
    assert struct.calcsize("<4sBBBxQQQII") == HEADER.size == 40


def test_gap_sums_are_exact_past_what_a_uint32_holds():
    from piswarm.protocol.primes import _U32_SUMMABLE, _sum_bytes

    values = np.full(_U32_SUMMABLE + 10, 255, dtype=np.uint8)
    assert _sum_bytes(values) == 255 * (_U32_SUMMABLE + 10) > 2**32
    assert _sum_bytes(np.zeros(0, dtype=np.uint8)) == 0
