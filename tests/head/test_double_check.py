"""Double-checking, as GIMPS does: some blocks computed again by another node and compared.

Store-level tests play the nodes by hand (which node computes what, and which one lies);
the end-to-end test runs real agents, one of them started with the agent's test-only
fault switch, through the real broker and coordinator."""

import numpy as np
import pytest

from head.coordinator.jobstore import JobStore, double_checked
from node_agent.config import FAULT_ENV
from piswarm.protocol import counts, jobs, summary, topics
from piswarm.protocol.jobs import PrimesRequest
from piswarm.protocol.primes import encode_primes
from piswarm.sieve import SegmentedSieve
from tests.conftest import job_flags, piswarm

SIEVE = SegmentedSieve()
PI_400K = 33_860  # pi(400,000)


@pytest.fixture
def store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    yield store
    store.close()


def result(a, keep="primes", lie=False):
    primes = SIEVE.primes(a.lo, a.hi)
    if lie:
        primes = np.delete(primes, primes.size // 2)  # one prime left out: every cheap check passes
    return (
        encode_primes(primes)
        if keep == "primes"
        else summary.encode_summary(counts.summarize(primes))
    )


def job_of_four(store, keep="primes", double_check=1.0):
    request = PrimesRequest(
        start=1, end=400_000, block_size=100_000, keep=keep, double_check=double_check
    )
    job, _ = store.submit(request, 0.0)
    return job


def compute(store, job, node, now, keep="primes", lie=(), count=8):
    """``node`` leases what it may and delivers it (wrong for the blocks in ``lie``)."""
    got = store.lease(node, now, 60.0, count=count)
    for a in got:
        assert (
            store.store_result(job, a.block, node, result(a, keep, a.block in lie), now) == "stored"
        )
    return got


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_a_second_node_agrees_and_the_job_ends_only_then(store, keep):
    job = job_of_four(store, keep)
    assert len(compute(store, job, "a", 1.0, keep)) == 4
    assert store.lease("a", 2.0, 60.0, count=8) == []  # never its own blocks to check
    assert store.info(job).state == "running" and store.info(job).checks_open == 4
    checks = compute(store, job, "b", 3.0, keep)
    assert [c.check for c in checks] == [True] * 4
    info = store.info(job)
    assert (info.state, info.primes, info.checked, info.mismatches, info.wrong_nodes) == (
        "done",
        PI_400K,
        4,
        0,
        (),
    )


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_a_lying_node_is_outvoted_named_and_its_result_replaced(store, keep):
    job = job_of_four(store, keep)
    compute(store, job, "liar", 1.0, keep, lie={1})
    assert store.info(job).primes == PI_400K - 1  # every check the head can make passed
    compute(store, job, "b", 2.0, keep)  # disagrees on block 1
    info = store.info(job)
    assert (info.state, info.checked, info.mismatches, info.checks_open) == ("running", 3, 1, 1)
    assert store.lease("b", 3.0, 60.0) == [] and store.lease("liar", 3.0, 60.0) == []
    (third,) = compute(store, job, "c", 4.0, keep)
    assert (third.block, third.check) == (1, True)
    info = store.info(job)
    assert (info.state, info.primes, info.checked, info.mismatches, info.wrong_nodes) == (
        "done",
        PI_400K,
        4,
        1,
        ("liar",),
    )
    assert store.verify(job) == []
    assert store.verify(job, SIEVE.primes) == []  # the stored block is the right one now


def test_a_node_that_may_not_check_a_block_does_not_keep_the_next_from_it(store):
    """Nodes are served in turn; one that computed a block cannot check it, and one
    served short used to end the round for everyone behind it: the check then waited for
    a node's next ask (30 s) or a lease to run out (60 s)."""
    job = job_of_four(store)
    compute(store, job, "a", 1.0)  # all four blocks; each now waits for a check
    served = store.lease_many([("a", 3), ("b", 3)], 2.0, 60.0)
    assert served["a"] == []  # its own blocks
    assert [(c.block, c.check) for c in served["b"]] == [(0, True), (1, True), (2, True)]
    # With nothing a node could take, the round still ends at the first served short.
    for a in served["b"]:
        assert store.store_result(job, a.block, "b", result(a), 2.5) == "stored"
    compute(store, job, "b", 3.0)  # the last check
    assert store.info(job).state == "done"
    assert store.lease_many([("a", 1), ("b", 1)], 4.0, 60.0) == {"a": []}


def test_a_checker_that_lies_is_named_and_the_stored_result_stays(store):
    job = job_of_four(store)
    compute(store, job, "a", 1.0)
    compute(store, job, "liar", 2.0, lie={2})
    compute(store, job, "c", 3.0)
    info = store.info(job)
    assert (info.state, info.primes, info.mismatches, info.wrong_nodes) == (
        "done",
        PI_400K,
        1,
        ("liar",),
    )
    assert store.db.execute(
        "SELECT node FROM results WHERE job = ? AND block = 2", (job,)
    ).fetchone() == ("a",)


def test_at_zero_nothing_is_computed_twice(store):
    job = job_of_four(store, double_check=0.0)
    compute(store, job, "a", 1.0, lie={1})
    assert store.lease("b", 2.0, 60.0, count=8) == []
    info = store.info(job)
    assert (info.state, info.checked) == ("done", 0)  # the lie stands: nobody looked
    assert store.db.execute("SELECT COUNT(*) FROM checks").fetchone() == (0,)
    assert store.db.execute("SELECT SUM(attempts) FROM blocks").fetchone() == (4,)


def test_a_room_of_one_node_gives_up_its_checks_and_ends(store):
    job = job_of_four(store)
    compute(store, job, "alone", 1.0)
    assert store.waive_checks(before=1.0, now=2.0) == []  # not yet: others may come
    assert store.waive_checks(before=1.5, now=200.0) == [job]
    info = store.info(job)
    assert (info.state, info.checked, info.checks_open) == ("done", 0, 0)


def test_the_fraction_is_a_fraction_and_the_choice_is_always_the_same():
    chosen = [b for b in range(20_000) if double_checked("p20261205-abcdef", b, 0.03)]
    assert 500 <= len(chosen) <= 700
    assert chosen == [b for b in range(20_000) if double_checked("p20261205-abcdef", b, 0.03)]
    assert not any(double_checked("p1-x", b, 0.0) for b in range(1000))
    assert all(double_checked("p1-x", b, 1.0) for b in range(1000))


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_a_node_that_returns_wrong_primes_is_caught_end_to_end(
    broker, users, agents, coordinator, recorder, tmp_path, keep
):
    coordinator(double_check=1.0)
    viewer = recorder("viewer")
    viewer.wait_connected()
    agents("node-a", workers=1, env={FAULT_ENV: "drop-prime"})
    for node in ("node-b", "node-c"):
        agents(node, workers=1)
    lo, hi = 10**12, 10**12 + 12 * 10**6
    done = piswarm(
        "job",
        "primes",
        str(lo),
        str(hi - 1),
        "--block-size",
        "1e6",
        "--keep",
        keep,
        *job_flags(broker, users),
        "--timeout",
        "20",
    )
    assert done.returncode == 0, done.stderr.decode()
    job = done.stdout.decode().strip()

    def ended(m):
        return (
            m.topic == topics.job_status(job) and jobs.decode_job_status(m.payload).state == "done"
        )

    final = jobs.decode_job_status(viewer.wait_for(ended, timeout=180).payload)
    assert final.primes == SIEVE.count(lo, hi)
    assert final.wrong == ("node-a",) and final.mismatches >= 1
    assert final.checked == 12
    shown = piswarm("job", "status", job, *job_flags(broker, users))
    assert "wrong: node-a" in shown.stdout.decode()
