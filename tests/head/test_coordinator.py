"""The coordinator against a real broker, with nodes played by hand (exact control of
what a node sends: requests, results right and wrong, duplicates, goodbyes)."""

import json
import logging
import sqlite3
import threading

import numpy as np
import pytest

from piswarm import protocol
from piswarm.protocol import counts, jobs, summary, topics, work
from piswarm.protocol.primes import encode_primes
from piswarm.sieve import SegmentedSieve
from tests.conftest import until

SIEVE = SegmentedSieve()


def submit(rec, **fields):
    rec.wait_connected()  # subscribed: the reply cannot come before the subscription
    body = {"v": 1, "kind": "primes", **fields}
    rec.publish(rec.submit_topic, json.dumps(body).encode())
    rid = fields.get("request_id", "")
    msg = rec.wait_for(
        lambda m: m.topic == topics.JOBS_REPLIES and json.loads(m.payload)["request_id"] == rid
    )
    return jobs.decode_reply(msg.payload)


def ask(node, want):
    request = work.WorkRequest(node=node.node_id, want=want, ts=1.0)
    node.publish(topics.node_work_request(node.node_id), protocol.encode(request))


def assigns(node):
    return [
        one
        for m in node.matching(lambda m: m.topic == topics.node_work_assign(node.node_id))
        for one in work.decode_assign(m.payload).each()
    ]


def deliver(node, assign, data=None):
    data = data if data is not None else encode_primes(SIEVE.primes(assign.lo, assign.hi))
    node.publish(topics.node_result(node.node_id, assign.job, assign.block), data)
    msg = node.wait_for(
        lambda m: (
            m.topic == topics.node_acks(node.node_id)
            and work.decode_ack(m.payload).block == assign.block
            and m not in node.seen_acks
        )
    )
    node.seen_acks.append(msg)
    return work.decode_ack(msg.payload)


@pytest.fixture
def node(recorder):
    def make(node_id="node-a"):
        rec = recorder(node_id, filters=(f"piswarm/nodes/{node_id}/#", "piswarm/jobs/#"))
        rec.wait_connected()
        rec.node_id = node_id
        rec.seen_acks = []
        return rec

    return make


def last_status(rec, job):
    msgs = rec.matching(lambda m: m.topic == topics.job_status(job))
    return jobs.decode_job_status(msgs[-1].payload)


def test_a_job_is_split_leased_stored_and_finished(coordinator, node, recorder):
    coordinator(status_interval=0.2)
    viewer = recorder("viewer")
    viewer.wait_connected()
    a, b = node("node-a"), node("node-b")
    reply = submit(viewer, start=1, end=1_000_000, block_size=100_000, request_id="t-1")
    assert reply.ok and reply.action == "submit"
    job = reply.job
    ask(a, 3)
    ask(b, 2)
    a.wait_for(lambda m: len(assigns(a)) == 3)
    b.wait_for(lambda m: len(assigns(b)) == 2)
    given = assigns(a) + assigns(b)
    assert sorted(x.block for x in given) == [0, 1, 2, 3, 4]
    for x in assigns(a):
        assert deliver(a, x).outcome == "stored"
    ask(a, 5)  # the rest
    a.wait_for(lambda m: len(assigns(a)) == 8)
    for x in assigns(a)[3:] + assigns(b):
        owner = a if x in assigns(a) else b
        assert deliver(owner, x).outcome == "stored"
    done = viewer.wait_for(
        lambda m: (
            m.topic == topics.job_status(job) and jobs.decode_job_status(m.payload).state == "done"
        )
    )
    status = jobs.decode_job_status(done.payload)
    assert (status.primes, status.largest, status.blocks_done) == (78_498, 999_983, 10)
    assert {c.node: c.blocks for c in status.top} == {"node-a": 8, "node-b": 2}
    job_map = jobs.decode_job_map(
        viewer.wait_for(
            lambda m: m.topic == topics.job_map(job) and min(json.loads(m.payload)["done"]) == 100
        ).payload
    )
    assert job_map.done == (100,) * 10 and set(job_map.nodes) == {"node-a", "node-b"}
    # A retry of the same request id is the same job, not a second one.
    again = submit(viewer, start=1, end=1_000_000, block_size=100_000, request_id="t-1")
    assert again.ok and again.job == job
    assert coordinator is not None


def test_a_want_is_remembered_until_work_exists(coordinator, node, recorder):
    coordinator()
    admin = recorder("admin")
    a = node("node-a")
    ask(a, 2)
    # No job yet: nothing to give. A job arrives: the remembered want is served.
    job = submit(admin, start=1, end=300_000, block_size=100_000).job
    a.wait_for(lambda m: len(assigns(a)) == 2)
    assert [x.job for x in assigns(a)] == [job, job]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not json", "not JSON"),
        (b'{"v":1,"kind":"primes","start":10,"end":1}', "start 10 is greater than end 1"),
        (b'{"v":1,"kind":"primes","start":-5,"end":10}', "'start': -5 is below 0"),
        (b'{"v":1,"kind":"primes","start":1.5,"end":10}', "'start': expected an integer"),
        (
            b'{"v":1,"kind":"primes","start":1,"end":10000000000000,"block_size":100}',
            "'block_size': 100 is below 10000",
        ),
        (
            b'{"v":1,"kind":"primes","start":1,"end":100,"keep":"everything"}',
            "'keep': 'everything' is not one of",
        ),
        (b'{"v":1,"kind":"fft","start":1,"end":10}', "unknown job kind 'fft'"),
        (b'{"v":2,"kind":"primes","start":1,"end":10}', "unsupported schema version"),
    ],
)
def test_bad_requests_get_a_reason_and_store_nothing(
    coordinator, recorder, tmp_path, payload, error, caplog
):
    running = coordinator()
    admin = recorder("admin")
    admin.wait_connected()
    with caplog.at_level(logging.WARNING, logger="head.coordinator.router"):
        admin.publish(admin.submit_topic, payload)
        msg = admin.wait_for(lambda m: m.topic == topics.JOBS_REPLIES)
    reply = jobs.decode_reply(msg.payload)
    assert not reply.ok and error in reply.error
    assert running.stats.requests_rejected == 1
    assert any(error in r.getMessage() for r in caplog.records)
    db = sqlite3.connect(tmp_path / "jobs.sqlite")
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_bad_results_are_rejected_with_the_reason_and_change_nothing(coordinator, node, recorder):
    running = coordinator()
    admin = recorder("admin")
    a = node("node-a")
    job = submit(admin, start=1, end=200_000, block_size=100_000).job
    ask(a, 2)
    a.wait_for(lambda m: len(assigns(a)) == 2)
    block, wrong_block = sorted(assigns(a), key=lambda x: x.block)
    good = encode_primes(SIEVE.primes(block.lo, block.hi))
    corrupt = bytearray(good)
    corrupt[60] ^= 0xFF
    count_lies = bytearray(good)
    count_lies[8] += 1  # the header's count no longer matches the body
    empty = encode_primes(np.zeros(0, dtype=np.uint64))
    cases = [
        (wrong_block, good, "outside block"),  # block 0's primes sent as block 1
        (block, empty, "no primes in"),  # every 1550 numbers hold one
        (block, encode_primes(SIEVE.primes(block.lo, block.hi - 5000)), "wider than primes"),
        (block, bytes(corrupt), "corrupt|CRC|gap|holds"),
        (block, bytes(count_lies), "holds|header"),
        (block, b"PSPB" + bytes(100), "version|header"),
        (work.WorkAssign(job=job, block=7, lo=1, hi=2, lease_s=60), good, "no block 7"),
        (work.WorkAssign(job="p0-nope", block=0, lo=1, hi=2, lease_s=60), good, "no block 0"),
    ]
    for assign, data, reason in cases:
        ack = deliver(a, assign, data)
        assert ack.outcome == "rejected", reason
        assert any(part in ack.error for part in reason.split("|")), (reason, ack.error)
    assert running.prime_stats.results_rejected == len(cases)
    status = last_status(admin, job)
    assert (status.blocks_done, status.primes) == (0, 0)
    assert deliver(a, block).outcome == "stored"
    assert deliver(a, block).outcome == "duplicate"  # a resend: harmless


def test_summaries_ride_together_through_the_broker_and_are_acked_together(
    coordinator, node, recorder
):
    running = coordinator(status_interval=0.2)
    admin = recorder("admin")
    a, b = node("node-a"), node("node-b")
    job = submit(admin, start=1, end=600_000, block_size=100_000, keep="counts").job
    ask(a, 6)
    a.wait_for(lambda m: len(assigns(a)) == 6)
    assert len(a.matching(lambda m: m.topic == topics.node_work_assign("node-a"))) == 1
    given = assigns(a)

    def batch(blocks):
        told = [counts.summarize(SIEVE.primes(x.lo, x.hi)) for x in blocks]
        return summary.encode_summaries(
            summary.Summaries(blocks=tuple(x.block for x in blocks), summaries=tuple(told))
        )

    # Garbage on the summaries topic is counted and answered by nothing.
    a.publish(topics.node_summaries("node-a", job), b'{"v":1,"blocks":[0],"summaries":[]}')
    until(lambda: running.stats.malformed == 1, "the bad list counted")
    # node-b, never given these blocks, cannot deliver them.
    b.publish(topics.node_summaries("node-b", job), batch(given[:2]))
    refused = b.wait_for(
        lambda m: (
            m.topic == topics.node_acks("node-b")
            and work.decode_ack(m.payload).outcome == "rejected"
        )
    )
    assert "never given" in (work.decode_ack(refused.payload).error or "")
    a.publish(topics.node_summaries("node-a", job), batch(given))
    ack = work.decode_ack(a.wait_for(lambda m: m.topic == topics.node_acks("node-a")).payload)
    assert (ack.outcome, sorted(ack.blocks)) == ("stored", list(range(6)))
    status = admin.wait_for(
        lambda m: (
            m.topic == topics.job_status(job) and jobs.decode_job_status(m.payload).state == "done"
        )
    )
    done = jobs.decode_job_status(status.payload)
    assert (done.primes, done.twins, done.gap) == (49_098, 5_331, 114)
    assert running.prime_stats.results_stored == 6


def test_oversize_results_never_reach_the_coordinator(coordinator, node):
    """The broker's packet limit (8 MiB) drops the sender instead of passing them on."""
    running = coordinator()
    a = node("node-a")
    gone = threading.Event()
    a.client.on_disconnect = lambda *args: gone.set()
    a.client.publish(topics.node_result("node-a", "p1-x", 0), bytes(9 * 1024 * 1024), qos=1)
    assert gone.wait(10)
    assert running.prime_stats.results_rejected == running.prime_stats.results_stored == 0


def test_a_node_going_offline_gives_its_blocks_back(coordinator, node, recorder):
    running = coordinator()
    admin = recorder("admin")
    a, b = node("node-a"), node("node-b")
    submit(admin, start=1, end=300_000, block_size=100_000)
    ask(a, 2)
    a.wait_for(lambda m: len(assigns(a)) == 2)
    lost = protocol.NodeOffline(node="node-a", ts=1.0, reason="lost")
    a.publish(topics.node_status("node-a"), protocol.encode(lost), retain=True)
    ask(b, 3)
    b.wait_for(lambda m: len(assigns(b)) == 3)
    assert sorted(x.block for x in assigns(b)) == [0, 1, 2]
    assert running.prime_stats.leases_released == 2


def test_an_expired_lease_is_reissued_and_the_late_result_is_a_duplicate(
    coordinator, node, recorder
):
    coordinator(lease_seconds=1.0)
    admin = recorder("admin")
    frozen, other = node("node-a"), node("node-b")
    job = submit(admin, start=1, end=100_000, block_size=100_000).job
    ask(frozen, 1)
    frozen.wait_for(lambda m: len(assigns(frozen)) == 1)
    ask(other, 1)  # nothing open now; remembered, served when the lease runs out
    other.wait_for(lambda m: len(assigns(other)) == 1, timeout=10)
    assert deliver(other, assigns(other)[0]).outcome == "stored"
    assert deliver(frozen, assigns(frozen)[0]).outcome == "duplicate"
    status = admin.wait_for(
        lambda m: (
            m.topic == topics.job_status(job) and jobs.decode_job_status(m.payload).state == "done"
        )
    )
    assert jobs.decode_job_status(status.payload).primes == 9592


def test_cancel_stops_a_job_and_late_results_are_rejected(coordinator, node, recorder):
    coordinator()
    admin = recorder("admin")
    a = node("node-a")
    job = submit(admin, start=1, end=300_000, block_size=100_000).job
    ask(a, 1)
    a.wait_for(lambda m: len(assigns(a)) == 1)
    admin.publish(topics.JOBS_CANCEL, protocol.encode(jobs.CancelRequest(job=job, request_id="c")))
    reply = jobs.decode_reply(
        admin.wait_for(
            lambda m: m.topic == topics.JOBS_REPLIES and b'"cancel"' in m.payload
        ).payload
    )
    assert reply.ok and reply.job == job
    assert deliver(a, assigns(a)[0]).outcome == "rejected"
    assert last_status(admin, job).state == "cancelled"
    admin.publish(topics.JOBS_CANCEL, protocol.encode(jobs.CancelRequest(job=job, request_id="d")))
    again = admin.wait_for(lambda m: m.topic == topics.JOBS_REPLIES and b'"d"' in m.payload)
    assert "not running" in jobs.decode_reply(again.payload).error


def test_a_restarted_coordinator_resumes_and_says_so(
    coordinator, node, recorder, broker, users, tmp_path
):
    first = coordinator()
    admin = recorder("admin")
    a = node("node-a")
    job = submit(admin, start=1, end=300_000, block_size=100_000).job
    ask(a, 1)
    a.wait_for(lambda m: len(assigns(a)) == 1)
    assert deliver(a, assigns(a)[0]).outcome == "stored"
    first.close()
    a.wait_for(lambda m: m.topic == topics.JOBS_COORDINATOR and b"offline" in m.payload)
    coordinator()

    def onlines():
        return a.matching(lambda m: m.topic == topics.JOBS_COORDINATOR and b"online" in m.payload)

    a.wait_for(lambda m: len(onlines()) == 2)
    ask(a, 2)
    a.wait_for(lambda m: len(assigns(a)) == 3)
    for x in assigns(a)[1:]:
        assert deliver(a, x).outcome == "stored"
    done = admin.wait_for(
        lambda m: (
            m.topic == topics.job_status(job) and jobs.decode_job_status(m.payload).state == "done"
        )
    )
    assert jobs.decode_job_status(done.payload).primes == 25_997


def test_a_nodes_last_results_are_stored_before_its_goodbye_frees_its_blocks(
    coordinator, node, recorder
):
    """node-a's result and then its will (it died right after sending) arrive together with
    node-b's request: the block node-a finished must not go to node-b to compute again."""
    running = coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    a, b = node("node-a"), node("node-b")
    job = submit(viewer, start=1, end=300_000, block_size=100_000, request_id="t-last").job
    ask(a, 1)
    a.wait_for(lambda m: len(assigns(a)) == 1)
    (done_by_a,) = assigns(a)
    running.pause()
    data = encode_primes(SIEVE.primes(done_by_a.lo, done_by_a.hi))
    a.publish(topics.node_result("node-a", job, done_by_a.block), data)
    lost = protocol.NodeOffline(node="node-a", ts=1.0, reason="lost")
    a.publish(topics.node_status("node-a"), protocol.encode(lost))
    ask(b, 3)
    # all three wait for the loop, together
    until(lambda: running.coordinator.inbox.qsize() >= 3, "the broker delivering all three")
    running.resume()
    b.wait_for(lambda m: len(assigns(b)) == 2)
    ack = a.wait_for(lambda m: m.topic == topics.node_acks("node-a"))
    assert work.decode_ack(ack.payload).outcome == "stored"
    assert done_by_a.block not in {x.block for x in assigns(b)}
    for x in assigns(b):
        assert deliver(b, x).outcome == "stored"
    final = viewer.wait_for(lambda m: m.topic == topics.job_status(job) and b'"done"' in m.payload)
    assert jobs.decode_job_status(final.payload).primes == 25_997  # pi(300,000)


def test_no_block_is_leased_while_the_broker_is_away(coordinator, node, recorder, broker):
    """A lease that ran out while the broker was down went to a node that wanted work: the
    assignment could not go out, and the block sat leased to a node that never heard of
    it (on this hand clock, for ever; in a lab, for a whole lease)."""
    now = [1000.0]
    running = coordinator(clock=lambda: now[0], lease_seconds=10.0)
    viewer = recorder("viewer")
    viewer.wait_connected()
    a, b = node("node-a"), node("node-b")
    job = submit(viewer, start=1, end=100_000, block_size=100_000, request_id="t-away").job
    ask(a, 1)
    a.wait_for(lambda m: len(assigns(a)) == 1)
    ask(b, 1)  # nothing left to give: its want is remembered ...
    submit(viewer, start=1, end=10, block_size=1, request_id="t-marker")  # ... once answered
    broker.stop()
    until(lambda: not running.coordinator.connected.is_set(), "the coordinator seeing it go")
    now[0] += 11  # node-a's lease runs out
    until(lambda: running.prime_stats.serves_held > 0, "the coordinator looking for work to give")
    broker.start()
    assert running.coordinator.connected.wait(30)
    back = node("node-b")  # node-b, connected again
    ask(back, 1)  # a node asks again when it is back
    back.wait_for(lambda m: m.topic == topics.node_work_assign("node-b"), timeout=30)
    assert [(x.job, x.block) for x in assigns(back)] == [(job, 0)]


def test_a_flood_of_large_messages_holds_no_more_than_the_inbox_bound(coordinator, node):
    """A node's 8 MiB messages (the broker's limit) once held 6.9 GB in the coordinator's
    inbox, bounded only in messages. Dropped ones are counted (results are sent again)."""
    running = coordinator(inbox_bytes=16 * 1024 * 1024)
    running.pause()  # nothing is taken out meanwhile
    evil = node("node-b")
    for block in range(12):
        evil.client.publish(topics.node_result("node-b", "p1-x", block), bytes(4 * 1024**2), qos=0)
    until(lambda: running.coordinator.mqtt.stats.dropped >= 8, "the inbox refusing the flood")
    assert running.coordinator.inbox.bytes <= 16 * 1024 * 1024
    running.resume()  # and the coordinator goes on with the four it kept
    until(lambda: running.prime_stats.results_rejected == 4, "the coordinator answering the four")


def test_only_the_latest_ended_jobs_stay_retained_on_the_broker(coordinator, recorder):
    """A day of jobs once left every job's status and map retained: the broker grew with
    them. Only the ``keep_ended`` that ended last stay; the database keeps them all."""
    running = coordinator(keep_ended=2, retire_every=0.2)
    admin = recorder("admin")
    ended = []
    for n in range(4):
        job = submit(admin, start=1, end=300_000, block_size=100_000, request_id=f"k{n}").job
        cancel = jobs.CancelRequest(job=job, request_id=f"c{n}")
        admin.publish(topics.JOBS_CANCEL, protocol.encode(cancel))
        admin.wait_for(
            lambda m, n=n: m.topic == topics.JOBS_REPLIES and f'"c{n}"'.encode() in m.payload
        )
        ended.append(job)

    def retained_statuses():
        late = recorder("admin", filters=(topics.JOB_STATUS_FILTER, topics.JOB_MAP_FILTER))
        late.wait_connected()
        marker = topics.cli_sync(late.client_id)
        late.client.subscribe(marker, qos=1)
        late.publish(marker, b"sync")
        late.wait_for(lambda m: m.topic == marker)
        found = {m.topic for m in late.matching(lambda m: m.retain and m.payload)}
        late.close()
        return found

    def kept(jobs_kept):
        want = {topics.job_status(j) for j in jobs_kept} | {topics.job_map(j) for j in jobs_kept}
        return retained_statuses() == want

    until(lambda: kept(ended[2:]), "the two oldest ended jobs leaving the broker")
    from head.coordinator.jobstore import JobStore

    store = JobStore(running.coordinator.db_path).open(readonly=True)
    try:
        assert store.ended_jobs(10) == ended[::-1]  # the database keeps them all
    finally:
        store.close()
