"""The coordinator's job store: blocks, leases, idempotent results, restart, export, verify."""

import itertools
import sqlite3

import numpy as np
import pytest

from head.coordinator.jobstore import JobStore
from piswarm.protocol import ProtocolError, counts, summary
from piswarm.protocol.jobs import PrimesRequest
from piswarm.protocol.primes import encode_primes
from piswarm.sieve import SegmentedSieve, small_primes

SIEVE = SegmentedSieve()


@pytest.fixture
def store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    yield store
    store.close()


def lease1(store, node, now, seconds):
    """One block leased to ``node``, or None."""
    got = store.lease(node, now, seconds)
    assert len(got) <= 1
    return got[0] if got else None


def submit(store, request, now):
    job, new = store.submit(request, now=now)
    assert new
    return job


def result_for(assignment):
    return encode_primes(SIEVE.primes(assignment.lo, assignment.hi))


def run_job(store, job, nodes=("a", "b", "c"), now=0.0):
    """Lease and complete every block, round-robin over ``nodes``."""
    i = 0
    while (lease := lease1(store, nodes[i % len(nodes)], now, 30.0)) is not None:
        assert (
            store.store_result(
                lease.job, lease.block, nodes[i % len(nodes)], result_for(lease), now
            )
            == "stored"
        )
        i += 1
    return i


def test_a_job_is_split_into_blocks_that_cover_the_range_exactly(store):
    job = submit(store, PrimesRequest(start=1, end=1_000_000, block_size=65_536), now=0.0)
    leases = []
    while (lease := lease1(store, "a", 0.0, 30.0)) is not None:
        leases.append(lease)
    assert [x.block for x in leases] == list(range(16))
    assert leases[0].lo == 1 and leases[-1].hi == 1_000_001
    assert all(a.hi == b.lo for a, b in itertools.pairwise(leases))
    assert store.progress(job).blocks_total == 16


def test_whole_job_gives_exactly_pi_and_exports_the_reference(store):
    job = submit(store, PrimesRequest(start=1, end=1_000_000, block_size=100_000), now=0.0)
    assert run_job(store, job) == 10
    progress = store.progress(job)
    assert (progress.state, progress.primes, progress.largest) == ("done", 78_498, 999_983)
    exported = np.concatenate(list(store.export(job)))
    assert np.array_equal(exported, small_primes(1_000_000))
    assert store.verify(job) == []


def test_expired_leases_are_reissued_and_late_results_are_duplicates(store):
    job = submit(store, PrimesRequest(start=1, end=200_000, block_size=100_000), now=0.0)
    frozen = lease1(store, "frozen", now=0.0, seconds=10.0)
    other = lease1(store, "b", now=1.0, seconds=10.0)
    assert (frozen.block, other.block) == (0, 1)
    assert lease1(store, "c", now=5.0, seconds=10.0) is None  # both leases still hold
    taken = lease1(store, "c", now=11.0, seconds=10.0)  # frozen's lease ran out
    assert taken.block == 0
    assert store.store_result(job, 0, "c", result_for(taken), 12.0) == "stored"
    # The frozen node wakes up and sends the same block: harmless.
    assert store.store_result(job, 0, "frozen", result_for(frozen), 13.0) == "duplicate"
    assert store.store_result(job, 1, "b", result_for(other), 14.0) == "stored"
    assert store.progress(job).primes == 17_984 and store.progress(job).state == "done"


def test_a_node_that_goes_offline_gives_its_blocks_back(store):
    submit(store, PrimesRequest(start=1, end=300_000, block_size=100_000), now=0.0)
    first, second = lease1(store, "dead", 0.0, 60.0), lease1(store, "dead", 0.0, 60.0)
    assert store.release_node("dead") == 2
    assert [lease1(store, "alive", 1.0, 60.0).block for _ in range(3)] == [
        first.block,
        second.block,
        2,
    ]


@pytest.mark.parametrize(
    ("block", "data", "reason"),
    [
        (7, encode_primes(SIEVE.primes(1, 100)), "no block 7"),
        (0, encode_primes(SIEVE.primes(100_001, 100_100)), "outside block"),
        (0, b"garbage", "shorter than its header"),
        (0, encode_primes(SIEVE.primes(1, 100_001))[:-3], "truncated|corrupt|holds"),
    ],
)
def test_wrong_results_are_rejected_and_change_nothing(store, block, data, reason):
    job = submit(store, PrimesRequest(start=1, end=200_000, block_size=100_000), now=0.0)
    lease1(store, "a", 0.0, 30.0)
    with pytest.raises(ProtocolError, match=reason):
        store.store_result(job, block, "a", data, 1.0)
    progress = store.progress(job)
    assert (progress.blocks_done, progress.primes, progress.state) == (0, 0, "running")


def test_everything_survives_a_restart(tmp_path):
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path).open()
    job = submit(store, PrimesRequest(start=1, end=300_000, block_size=100_000), now=0.0)
    lease = lease1(store, "a", 0.0, 30.0)
    store.store_result(job, lease.block, "a", result_for(lease), 1.0)
    held = lease1(store, "b", 1.0, 30.0)
    store.close()  # (a kill -9 loses nothing either: WAL + synchronous=FULL)
    again = JobStore(path).open()
    try:
        assert again.running_jobs() == [job]
        assert again.progress(job).blocks_done == 1
        assert lease1(again, "c", 2.0, 30.0).block == 2  # b's lease still holds
        assert lease1(again, "c", 40.0, 30.0).block == held.block  # ... until it runs out
    finally:
        again.close()


def test_verify_finds_tampering_and_a_wrong_total(store):
    job = submit(store, PrimesRequest(start=1, end=1_000_000, block_size=500_000), now=0.0)
    run_job(store, job)
    store.db.execute(
        "UPDATE results SET data = ? WHERE job = ? AND block = 1",
        (encode_primes(SIEVE.primes(500_001, 600_000)), job),
    )
    problems = store.verify(job)
    assert "block 1: a gap wider than primes leave in [500001, 1000001)" in problems
    assert any("pi(1000000) = 78498" in p for p in problems)


def test_cancel_stops_leasing(store):
    job = submit(store, PrimesRequest(start=1, end=300_000, block_size=100_000), now=0.0)
    lease1(store, "a", 0.0, 30.0)
    store.cancel(job, 1.0)
    assert lease1(store, "a", 2.0, 30.0) is None and store.progress(job).state == "cancelled"
    with pytest.raises(ValueError, match="not running"):
        store.cancel(job, 3.0)
    with pytest.raises(KeyError):
        store.cancel("nope", 3.0)


def test_a_resubmitted_request_id_returns_the_first_job(store):
    request = PrimesRequest(start=1, end=300_000, block_size=100_000, request_id="cli-42")
    job, new = store.submit(request, now=0.0)
    assert new
    assert store.submit(request, now=5.0) == (job, False)
    assert store.running_jobs() == [job]
    other, new = store.submit(PrimesRequest(start=1, end=300_000, block_size=100_000), 6.0)
    assert new and other != job  # no request id: every submit is a new job


def test_many_blocks_lease_in_one_go_and_expiry_is_known(store):
    job = submit(store, PrimesRequest(start=1, end=1_000_000, block_size=100_000), now=0.0)
    assert store.next_expiry() is None
    got = store.lease("a", 0.0, 30.0, count=4)
    assert [a.block for a in got] == [0, 1, 2, 3]
    store.lease("b", 10.0, 30.0, count=2)
    assert store.next_expiry() == 30.0
    assert store.leased_to("a") == [(job, 0), (job, 1), (job, 2), (job, 3)]
    assert [a.block for a in store.lease("c", 31.0, 30.0, count=20)] == [0, 1, 2, 3, 6, 7, 8, 9]
    assert store.leased_to("a") == []


def test_a_new_database_has_pages_sized_for_result_blobs(store):
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == 16384
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_request_ids_and_running_counts_are_per_submitter(store):
    request = PrimesRequest(start=1, end=10**6, block_size=10**5, request_id="same")
    mine, new = store.submit(request, 1.0, submitter="viewer")
    theirs, also_new = store.submit(request, 2.0, submitter="admin")
    assert new and also_new and mine != theirs
    assert store.submit(request, 3.0, submitter="viewer") == (mine, False)
    assert (store.running_count("viewer"), store.running_count("admin")) == (1, 1)
    store.cancel(mine, 4.0)
    assert store.running_count("viewer") == 0


def test_a_database_from_before_submitters_gains_the_column_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, request_id TEXT UNIQUE,"
        " name TEXT NOT NULL, start INTEGER NOT NULL, end_ INTEGER NOT NULL,"
        " block_size INTEGER NOT NULL, blocks INTEGER NOT NULL, state TEXT NOT NULL,"
        " created REAL NOT NULL, finished REAL);"
        "INSERT INTO jobs VALUES ('p1', 'primes', 'x', '', 1, 10, 10, 1, 'running', 1, NULL);"
    )
    old.commit()
    old.close()
    store = JobStore(path).open()
    try:
        assert store.running_jobs() == ["p1"]
        assert store.running_count("") == 1  # submitted before anyone was counted
        _job, new = store.submit(
            PrimesRequest(start=1, end=100, block_size=10**4), 2.0, submitter="viewer"
        )
        assert new and store.running_count("viewer") == 1
    finally:
        store.close()


def vm_steps(store, action):
    """SQLite virtual-machine instructions ``action`` runs: the work it does, counted
    (not timed, so a busy machine cannot change it)."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    store.db.set_progress_handler(count, 1)
    try:
        result = action()
    finally:
        store.db.set_progress_handler(None, 1)
    return steps[0], result


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_a_job_of_a_million_blocks_costs_what_a_job_of_a_thousand_does(store, keep):
    """Submitting, leasing and storing do no work that grows with the job's blocks."""
    costs = {}
    for blocks in (1_000, 1_000_000):
        request = PrimesRequest(
            start=10**12, end=10**12 + blocks * 10_000 - 1, block_size=10_000, keep=keep
        )
        assert request.blocks == blocks
        submit_steps, (job, _) = vm_steps(store, lambda r=request: store.submit(r, 0.0))
        lease_steps, leases = vm_steps(store, lambda: store.lease("a", 0.0, 60.0, count=8))
        store_steps = 0
        for a in leases:
            primes = SIEVE.primes(a.lo, a.hi)
            data = (
                encode_primes(primes)
                if keep == "primes"
                else (summary.encode_summary(counts.summarize(primes)))
            )
            steps, outcome = vm_steps(
                store, lambda j=job, a=a, d=data: store.store_result(j, a.block, "a", d, 1.0)
            )
            assert outcome == "stored"
            store_steps += steps
        costs[blocks] = (submit_steps, lease_steps, store_steps)
        store.cancel(job, 2.0)
    assert store.db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] <= 16  # leased only
    small, large = costs[1_000], costs[1_000_000]
    for what, a, b in zip(("submit", "lease", "store"), small, large, strict=True):
        assert b <= 1.2 * a + 50, (what, small, large)


def test_blocks_given_back_go_out_before_new_ones_and_late_holders_may_still_deliver(store):
    job = submit(store, PrimesRequest(start=1, end=1_000_000, block_size=100_000), now=0.0)
    first = store.lease("a", 0.0, 30.0, count=3)
    assert store.release_node("a") == 3
    again = store.lease("b", 1.0, 30.0, count=4)
    assert [x.block for x in again] == [0, 1, 2, 3]
    # a's result for block 1 arrives after all (it was on its way): stored, b's is a duplicate.
    assert store.store_result(job, 1, "a", result_for(first[1]), 2.0) == "stored"
    assert store.store_result(job, 1, "b", result_for(again[1]), 3.0) == "duplicate"
    with pytest.raises(ProtocolError, match="never given to c"):
        store.store_result(job, 2, "c", result_for(again[2]), 3.0)


def test_a_database_from_before_the_cursor_carries_on_its_jobs(tmp_path):
    """Old files had a row for every block from the start, and no totals."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, request_id TEXT UNIQUE,"
        " name TEXT NOT NULL, start INTEGER NOT NULL, end_ INTEGER NOT NULL,"
        " block_size INTEGER NOT NULL, blocks INTEGER NOT NULL, state TEXT NOT NULL,"
        " created REAL NOT NULL, finished REAL, submitter TEXT NOT NULL DEFAULT '');"
        "CREATE TABLE blocks (job TEXT NOT NULL, block INTEGER NOT NULL, lo INTEGER NOT NULL,"
        " hi INTEGER NOT NULL, state TEXT NOT NULL, node TEXT, lease_until REAL,"
        " attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job, block));"
        "CREATE TABLE results (job TEXT NOT NULL, block INTEGER NOT NULL, node TEXT NOT NULL,"
        " count INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL,"
        " crc32 INTEGER NOT NULL, data BLOB NOT NULL, stored REAL NOT NULL,"
        " PRIMARY KEY (job, block));"
        "INSERT INTO jobs VALUES ('p1', 'primes', NULL, '', 1, 300000, 100000, 3, 'running',"
        " 1, NULL, '');"
        "INSERT INTO blocks VALUES ('p1', 0, 1, 100001, 'done', 'a', NULL, 1),"
        " ('p1', 1, 100001, 200001, 'pending', NULL, NULL, 0),"
        " ('p1', 2, 200001, 300001, 'pending', NULL, NULL, 0);"
        "INSERT INTO jobs VALUES ('p2', 'primes', NULL, '', 1, 300000, 100000, 3, 'cancelled',"
        " 1, 2, '');"
        "INSERT INTO blocks VALUES ('p2', 0, 1, 100001, 'pending', NULL, NULL, 0);"
    )
    data = encode_primes(SIEVE.primes(1, 100_001))
    old.execute("INSERT INTO results VALUES ('p1', 0, 'a', 9592, 2, 99991, 0, ?, 1)", (data,))
    old.commit()
    old.close()
    store = JobStore(path).open()
    try:
        info = store.info("p1")
        assert (info.blocks_done, info.primes, info.largest, info.twins) == (1, 9592, 99_991, None)
        assert [a.block for a in store.lease("b", 5.0, 30.0, count=5)] == [1, 2]
        assert store.db.execute("SELECT COUNT(*) FROM blocks WHERE job = 'p2'").fetchone()[0] == 0
    finally:
        store.close()
