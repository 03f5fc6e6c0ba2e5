"""PrimeJobs driven by hand: batches of leases and results, one commit and one ack each.

MQTT is at the edge: ``publish`` is a list the test reads (the coordinator tests run the
same class against the real broker)."""

import pytest

from head.jobstore import JobStore
from head.prime_jobs import PrimeJobs
from node_agent.sieve import SegmentedSieve
from piswarm import protocol
from piswarm.protocol import counts, jobs, topics, work
from piswarm.protocol.primes import encode_primes

SIEVE = SegmentedSieve()


@pytest.fixture
def prime_jobs(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    sent: list[tuple[str, bytes]] = []
    primes = PrimeJobs(store=store, publish=lambda t, p, qos, retain=False: sent.append((t, p)),
                       clock=lambda: 100.0, connected=lambda: True, lease_seconds=60.0,
                       started=0.0)  # fmt: skip
    primes.sent = sent
    yield primes
    primes.close()
    store.close()


def want(prime_jobs, node, n):
    request = work.WorkRequest(node=node, want=n, ts=1.0)
    prime_jobs.on_request(topics.node_work_request(node), protocol.encode(request))


def assigned(prime_jobs, node):
    return [work.decode_assign(p) for t, p in prime_jobs.sent if t == topics.node_work_assign(node)]


def acks(prime_jobs, node):
    return [work.decode_ack(p) for t, p in prime_jobs.sent if t == topics.node_acks(node)]


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_the_results_of_a_batch_are_stored_in_one_commit_and_acked_in_one_message(prime_jobs, keep):
    job = prime_jobs.submit(jobs.PrimesRequest(start=1, end=10**6, block_size=10**5, keep=keep),
                            0.0, "admin")  # fmt: skip
    want(prime_jobs, "node-a", 6)
    want(prime_jobs, "node-b", 4)
    prime_jobs.serve()  # both wants, one commit
    given = assigned(prime_jobs, "node-a") + assigned(prime_jobs, "node-b")
    assert sorted(a.block for a in given) == list(range(10))
    assert all(a.keep == keep for a in given)
    for a in given:
        primes = SIEVE.primes(a.lo, a.hi)
        data = encode_primes(primes) if keep == "primes" else counts.encode_summary(
            counts.summarize(primes))  # fmt: skip
        node = "node-a" if a in assigned(prime_jobs, "node-a") else "node-b"
        prime_jobs.on_result(topics.node_result(node, a.job, a.block), data)
    assert prime_jobs.flush(wait=True) == 10
    assert prime_jobs.stats.commits == 1 and prime_jobs.stats.results_stored == 10
    (ack_a,) = acks(prime_jobs, "node-a")
    (ack_b,) = acks(prime_jobs, "node-b")
    to_a = [a.block for a in assigned(prime_jobs, "node-a")]
    assert (ack_a.outcome, sorted(ack_a.blocks)) == ("stored", to_a)
    assert len(ack_b.blocks) == 4
    info = prime_jobs.store.info(job)
    assert (info.state, info.primes, info.twins) == ("done", 78_498, 8_169)


def test_a_bad_result_in_a_batch_is_refused_alone(prime_jobs):
    prime_jobs.submit(jobs.PrimesRequest(start=1, end=300_000, block_size=10**5), 0.0, "admin")
    want(prime_jobs, "node-a", 3)
    prime_jobs.serve()
    given = assigned(prime_jobs, "node-a")
    for a in given:
        data = encode_primes(SIEVE.primes(a.lo, a.hi - (5000 if a.block == 1 else 0)))
        prime_jobs.on_result(topics.node_result("node-a", a.job, a.block), data)
    prime_jobs.flush(wait=True)
    by_outcome = {ack.outcome: ack for ack in acks(prime_jobs, "node-a")}
    assert sorted(by_outcome["stored"].blocks) == [0, 2]
    assert by_outcome["rejected"].blocks == (1,) and "wider than primes" in by_outcome[
        "rejected"].error  # fmt: skip
