"""Count-only results: summaries of blocks, their checks, and totals joined across blocks."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from head.coordinator.jobstore import JobStore
from piswarm.protocol import ProtocolError, counts, summary
from piswarm.protocol.jobs import PrimesRequest
from piswarm.protocol.primes import encode_primes
from piswarm.protocol.summary import BlockSummary
from piswarm.sieve import SegmentedSieve, small_primes
from piswarm.sieve_backends import select_backend

SIEVE = SegmentedSieve()
PRIMES_TO_1E6 = small_primes(10**6)


def naive(primes):
    """Twins and the first largest gap, the slow and obvious way."""
    p = [int(x) for x in primes]
    twins = sum(1 for a, b in itertools.pairwise(p) if b - a == 2)
    gap, at = 0, 0
    for a, b in itertools.pairwise(p):
        if b - a > gap:
            gap, at = b - a, a
    return twins, gap, at


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (0, 2),
        (1, 3),
        (1, 4),
        (2, 6),
        (1, 1000),
        (1, 10**5),
        (10**9, 10**9 + 10**5),
        (10**12, 10**12 + 10**5),
    ],
)
def test_a_summary_says_what_the_primes_say_and_both_forms_agree(lo, hi):
    primes = SIEVE.primes(lo, hi)
    told = counts.summarize(primes)
    twins, gap, at = naive(primes)
    assert (told.count, told.twins, told.gap, told.gap_at) == (primes.size, twins, gap, at)
    # The head reads the same numbers from the encoded block, and from the summary.
    assert counts.check_result(encode_primes(primes), lo, hi) == told
    assert counts.check_result(summary.encode_summary(told), lo, hi) == told


def test_gaps_kept_as_escapes_are_found_where_they_are():
    # Odd numbers with two gaps too wide for a byte (as far out as 3e11 primes have them).
    odd = np.cumsum([1_000_001, 2, 600, 4, 2, 1000, 6, 2], dtype=np.uint64)
    header_gaps = counts.check_result(encode_primes(odd), 1_000_000, 1_002_000)
    assert (header_gaps.twins, header_gaps.gap, header_gaps.gap_at) == (3, 1000, 1_000_609)
    assert header_gaps == counts.summarize(odd)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"count": 10**6}, "cannot fit"),
        ({"first": 5}, "outside block"),
        ({"last": 2_000_000}, "outside block"),
        ({"first": 99_001}, "wider than primes leave|outside"),
        ({"gap_at": 50}, "largest gap lies outside"),
        ({"twins": 10**5}, "do not fit together"),
        ({"count": 5}, "do not fit together"),
        ({"gap": 0}, "largest gap"),
    ],
)
def test_a_summary_no_block_can_have_is_refused(change, reason):
    lo, hi = 100_000, 200_000
    real = counts.summarize(SIEVE.primes(lo, hi))
    forged = BlockSummary(**{**real.__dict__, **change})
    with pytest.raises(ProtocolError, match=reason):
        counts.check_summary(forged, lo, hi)


def test_an_empty_summary_is_refused_for_a_block_that_must_hold_primes():
    empty = counts.summarize(np.zeros(0, dtype=np.uint64))
    assert counts.check_summary(empty, 24, 28) == empty  # [24, 28) holds none
    with pytest.raises(ProtocolError, match="every 1550 hold one"):
        counts.check_summary(empty, 10**6, 10**6 + 10**4)


def test_summaries_travel_together_and_a_bad_list_is_refused_whole():
    parts = [counts.summarize(SIEVE.primes(lo, lo + 10_000)) for lo in range(1, 40_001, 10_000)]
    batch = summary.Summaries(blocks=(3, 0, 2, 1), summaries=tuple(parts))
    data = summary.encode_summaries(batch)
    assert summary.decode_summaries(data) == batch
    assert len(data) < 200 * len(parts)
    body = json.loads(data)
    for change, reason in [
        ({"blocks": [3, 0, 2]}, "one block number each"),
        ({"blocks": [], "summaries": []}, "at least one"),
        ({"blocks": [3, 0, 2, 3]}, "listed twice"),
        ({"blocks": [3, 0, 2, -1]}, "below 0"),
        ({"blocks": list(range(65)), "summaries": body["summaries"] * 17}, "longer than 64"),
        ({"summaries": [*body["summaries"][:3], {"count": 1}]}, "missing field"),
        ({"summaries": [*body["summaries"][:3], 7]}, "expected an object"),
    ]:
        with pytest.raises(ProtocolError, match=reason):
            summary.decode_summaries(json.dumps({**body, **change}).encode())
    with pytest.raises(ProtocolError, match="exceeds"):
        summary.decode_summaries(data[:-1] + b" " * summary.MAX_SUMMARIES_BYTES + b"}")


def run_counts(store, request, node="a", primes_of=SIEVE.primes, order=None):
    """Submit, lease every block to ``node`` and store each block's summary (in
    ``order`` of block indices, default in turn): the job's final info."""
    job, _ = store.submit(request, 0.0)
    leases = store.lease(node, 0.0, 60.0, count=request.blocks)
    assert len(leases) == request.blocks
    for i in order or range(len(leases)):
        a = leases[i]
        data = summary.encode_summary(counts.summarize(primes_of(a.lo, a.hi)))
        assert store.store_result(job, a.block, node, data, 1.0) == "stored"
    return store.info(job)


@settings(max_examples=25, deadline=None)
@given(
    start=st.integers(0, 10**5),
    length=st.integers(1, 3 * 10**5),
    block=st.integers(10_000, 120_000),
    reverse=st.booleans(),
)
def test_any_block_size_gives_the_answers_of_one_block(
    tmp_path_factory, start, length, block, reverse
):
    """Twin pairs and gaps that straddle block edges are joined, in any order of arrival."""
    end = start + length
    store = JobStore(tmp_path_factory.mktemp("db") / "jobs.sqlite").open()
    try:
        request = PrimesRequest(start=start, end=end, block_size=block, keep="counts")
        order = list(range(request.blocks))[:: -1 if reverse else 1]
        info = run_counts(store, request, order=order)
        inside = (start <= PRIMES_TO_1E6) & (end >= PRIMES_TO_1E6)
        primes = PRIMES_TO_1E6[inside]
        whole = counts.summarize(primes)
        assert (info.state, info.primes, info.twins, info.gap, info.gap_at) == (
            "done",
            whole.count,
            whole.twins,
            whole.gap,
            whole.gap_at,
        )
        assert store.verify(info.job) == []
    finally:
        store.close()


def test_count_only_results_below_1e9_are_exact(tmp_path):
    """pi(1e9) = 50,847,534; 3,424,506 twin pairs; the largest gap is 282, after
    436,273,009 (A007508, A002386)."""
    backend = select_backend("auto")
    store = JobStore(tmp_path / "jobs.sqlite").open()
    try:
        request = PrimesRequest(start=1, end=10**9, block_size=10**8, keep="counts")
        info = run_counts(store, request, primes_of=backend.primes)
        assert (info.primes, info.twins, info.gap, info.gap_at) == (
            50_847_534,
            3_424_506,
            282,
            436_273_009,
        )
        assert store.verify(info.job) == []
        assert store.db.execute("SELECT MAX(LENGTH(data)) FROM results").fetchone()[0] < 300
        with pytest.raises(ValueError, match="kept counts only"):
            next(store.export(info.job))
    finally:
        store.close()


def test_count_only_results_near_1e12_agree_with_the_sieve(tmp_path):
    backend = select_backend("auto")
    lo = 10**12
    store = JobStore(tmp_path / "jobs.sqlite").open()
    try:
        request = PrimesRequest(start=lo, end=lo + 10**9, block_size=10**8, keep="counts")
        info = run_counts(store, request, primes_of=backend.primes)
        assert info.primes == backend.count(lo, lo + 10**9 + 1)
    finally:
        store.close()


def test_verify_recompute_names_the_node_of_a_made_up_summary(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    try:
        request = PrimesRequest(start=1, end=300_000, block_size=100_000, keep="counts")
        job, _ = store.submit(request, 0.0)
        for a in store.lease("liar", 0.0, 60.0, count=3):
            real = counts.summarize(SIEVE.primes(a.lo, a.hi))
            # Block 1: one prime too many, still inside every bound the head can check.
            told = BlockSummary(**{**real.__dict__, "count": real.count + (a.block == 1)})
            store.store_result(job, a.block, "liar", summary.encode_summary(told), 1.0)
        assert store.verify(job) == []  # every check the head can make passes
        problems = store.verify(job, SIEVE.primes)
        assert (
            "block 1 from liar: not the primes of [100001, 200001) (recomputed here: "
            "8,392 primes)" in problems
        )
    finally:
        store.close()


def test_a_job_keeping_counts_refuses_primes_and_the_other_way_round(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    try:
        for keep, wrong in (
            ("counts", encode_primes),
            ("primes", lambda p: summary.encode_summary(counts.summarize(p))),
        ):
            job, _ = store.submit(PrimesRequest(start=1, end=100_000, keep=keep), 0.0)
            (a,) = store.lease("a", 0.0, 60.0)
            with pytest.raises(ProtocolError, match=f"keeps {keep}"):
                store.store_result(job, a.block, "a", wrong(SIEVE.primes(a.lo, a.hi)), 1.0)
    finally:
        store.close()
