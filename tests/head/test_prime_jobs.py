"""PrimeJobs driven by hand: batches of leases and results, one commit and one ack each.

MQTT is at the edge: ``publish`` is a list the test reads (the coordinator tests run the
same class against the real broker)."""

import dataclasses

import pytest

from head.coordinator.jobstore import JobStore
from head.coordinator.prime_jobs import PrimeJobs
from piswarm import protocol
from piswarm.protocol import counts, jobs, summary, topics, work
from piswarm.protocol.primes import encode_primes
from piswarm.sieve import SegmentedSieve

SIEVE = SegmentedSieve()


@pytest.fixture
def prime_jobs(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    sent: list[tuple[str, bytes]] = []
    primes = PrimeJobs(
        store=store,
        publish=lambda t, p, qos, retain=False: sent.append((t, p)),
        clock=lambda: 100.0,
        connected=lambda: True,
        lease_seconds=60.0,
        started=0.0,
        double_check=0.0,
    )
    primes.sent = sent
    yield primes
    primes.close()
    store.close()


def want(prime_jobs, node, n):
    request = work.WorkRequest(node=node, want=n, ts=1.0)
    prime_jobs.on_request(topics.node_work_request(node), protocol.encode(request))


def assigned(prime_jobs, node):
    return [
        one
        for t, p in prime_jobs.sent
        if t == topics.node_work_assign(node)
        for one in work.decode_assign(p).each()
    ]


def acks(prime_jobs, node):
    return [work.decode_ack(p) for t, p in prime_jobs.sent if t == topics.node_acks(node)]


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_the_results_of_a_batch_are_stored_in_one_commit_and_acked_in_one_message(prime_jobs, keep):
    job = prime_jobs.submit(
        jobs.PrimesRequest(start=1, end=10**6, block_size=10**5, keep=keep), 0.0, "admin"
    )
    want(prime_jobs, "node-a", 6)
    want(prime_jobs, "node-b", 4)
    prime_jobs.serve()  # both wants, one commit
    given = assigned(prime_jobs, "node-a") + assigned(prime_jobs, "node-b")
    assert sorted(a.block for a in given) == list(range(10))
    assert all(a.keep == keep for a in given)
    for a in given:
        primes = SIEVE.primes(a.lo, a.hi)
        data = (
            encode_primes(primes)
            if keep == "primes"
            else summary.encode_summary(counts.summarize(primes))
        )
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
    assert (
        by_outcome["rejected"].blocks == (1,)
        and "wider than primes" in by_outcome["rejected"].error
    )


def test_blocks_are_sized_from_the_speeds_the_nodes_report(prime_jobs):
    request = jobs.PrimesRequest(start=1, end=10**13, keep="counts")
    assert prime_jobs.block_size(request, 100.0) == jobs.DEFAULT_BLOCK  # nothing measured yet
    for node, speed in (("node-a", 1e8), ("node-b", 3e8), ("node-c", 2e8)):
        request_of = work.WorkRequest(node=node, want=1, ts=1.0, speed=speed, workers=3)
        prime_jobs.on_request(topics.node_work_request(node), protocol.encode(request_of))
    # The median worker sieves 2e8 numbers a second: blocks of two seconds.
    assert prime_jobs.block_size(request, 100.0) == 400_000_000
    # Keeping every prime: no more than a broker packet holds.
    every = jobs.PrimesRequest(start=1, end=10**13)
    assert prime_jobs.block_size(every, 100.0) == jobs.MAX_BLOCK
    # A small job: a few blocks for each of the 9 workers.
    small = jobs.PrimesRequest(start=1, end=10**9, keep="counts")
    assert prime_jobs.block_size(small, 100.0) == 28_000_000  # 1e9 / 36, to 2 digits
    # Speeds heard long ago no longer count.
    assert prime_jobs.block_size(request, 100.0 + 601) == jobs.DEFAULT_BLOCK
    # A job that says is left as it is; one that does not is sized.
    job = prime_jobs.submit(jobs.PrimesRequest(start=1, end=10**13, keep="counts"), 100.0, "admin")
    assert prime_jobs.store.info(job).block_size == 400_000_000
    job = prime_jobs.submit(
        jobs.PrimesRequest(start=1, end=10**13, block_size=10**6), 100.0, "admin"
    )
    assert prime_jobs.store.info(job).block_size == 10**6


def test_a_large_fleet_gets_longer_blocks_so_the_head_keeps_up(prime_jobs):
    for i in range(800):  # 2,400 workers
        node = f"pi-{i}"
        request_of = work.WorkRequest(node=node, want=1, ts=1.0, speed=1e7, workers=3)
        prime_jobs.on_request(topics.node_work_request(node), protocol.encode(request_of))
    request = jobs.PrimesRequest(start=1, end=10**15, keep="counts")
    # 2,400 workers / 500 results a second: 4.8 s a block
    assert prime_jobs.block_size(request, 100.0) == 48_000_000


def test_a_nodes_blocks_go_out_in_one_assignment_and_its_summaries_come_back_in_one(prime_jobs):
    job = prime_jobs.submit(
        jobs.PrimesRequest(start=1, end=10**6, block_size=10**5, keep="counts"), 0.0, "admin"
    )
    want(prime_jobs, "node-a", 6)
    prime_jobs.serve()
    sent = [p for t, p in prime_jobs.sent if t == topics.node_work_assign("node-a")]
    assert len(sent) == 1  # six blocks, one message
    given = work.decode_assign(sent[0]).each()
    assert [a.block for a in given] == list(range(6))
    assert [(a.lo, a.hi) for a in given] == [(1 + i * 10**5, 1 + (i + 1) * 10**5) for i in range(6)]
    told = {a.block: counts.summarize(SIEVE.primes(a.lo, a.hi)) for a in given}
    told[4] = dataclasses.replace(told[4], last=told[4].last + 10**6)  # outside its block
    # Blocks 0-4 together, and block 9, which node-a was never given.
    five = tuple(told[b] for b in range(5))
    batch = summary.Summaries(blocks=(0, 1, 2, 3, 4, 9), summaries=(*five, told[0]))
    prime_jobs.on_summaries(topics.node_summaries("node-a", job), summary.encode_summaries(batch))
    prime_jobs.flush(wait=True)
    by_outcome: dict[str, list[work.ResultAck]] = {}
    for ack in acks(prime_jobs, "node-a"):
        by_outcome.setdefault(ack.outcome, []).append(ack)
    (stored,) = by_outcome["stored"]  # the four good ones, in one ack
    assert sorted(stored.blocks) == [0, 1, 2, 3]
    (refused,) = by_outcome["rejected"]  # the two bad ones, in one ack: the first's reason
    assert sorted(refused.blocks) == [4, 9]
    assert "outside block" in refused.error and "and 1 more" in refused.error
    assert prime_jobs.stats.commits == 1 and prime_jobs.stats.results_stored == 4
    # Sent again (no ack came): each is a duplicate now, acknowledged in one message.
    again = summary.Summaries(blocks=(0, 1), summaries=(told[0], told[1]))
    prime_jobs.on_summaries(topics.node_summaries("node-a", job), summary.encode_summaries(again))
    prime_jobs.flush()
    assert acks(prime_jobs, "node-a")[-1].outcome == "duplicate"
    assert sorted(acks(prime_jobs, "node-a")[-1].blocks) == [0, 1]
    # The rest, one alone and five together: the job's answers are those of one block.
    prime_jobs.on_result(
        topics.node_result("node-a", job, 5),
        summary.encode_summary(counts.summarize(SIEVE.primes(given[5].lo, given[5].hi))),
    )
    want(prime_jobs, "node-a", 6)
    prime_jobs.serve()
    rest = work.decode_assign(prime_jobs.sent[-1][1]).each()
    assert [a.block for a in rest] == [6, 7, 8, 9]
    rest.insert(0, given[4])  # still leased to node-a, which sends it right this time
    batch = summary.Summaries(
        blocks=tuple(a.block for a in rest),
        summaries=tuple(counts.summarize(SIEVE.primes(a.lo, a.hi)) for a in rest),
    )
    prime_jobs.on_summaries(topics.node_summaries("node-a", job), summary.encode_summaries(batch))
    prime_jobs.flush(wait=True)
    info = prime_jobs.store.info(job)
    assert (info.state, info.primes, info.twins, info.gap) == ("done", 78_498, 8_169, 114)


def test_summaries_for_a_job_that_keeps_primes_are_refused(prime_jobs):
    job = prime_jobs.submit(jobs.PrimesRequest(start=1, end=200_000, block_size=10**5), 0.0, "a")
    want(prime_jobs, "node-a", 2)
    prime_jobs.serve()
    given = assigned(prime_jobs, "node-a")
    batch = summary.Summaries(
        blocks=tuple(a.block for a in given),
        summaries=tuple(counts.summarize(SIEVE.primes(a.lo, a.hi)) for a in given),
    )
    prime_jobs.on_summaries(topics.node_summaries("node-a", job), summary.encode_summaries(batch))
    prime_jobs.flush(wait=True)
    (refused,) = acks(prime_jobs, "node-a")
    assert (refused.outcome, sorted(refused.blocks)) == ("rejected", [0, 1])
    assert refused.error == f"job {job} keeps primes: send its primes"  # both for one reason
    assert prime_jobs.stats.results_stored == 0
