"""The work runner's decisions, driven by hand: real worker processes, publishes captured.

(The whole path through a broker is in tests/test_primes_e2e.py.)"""

import json
import logging
import os
import threading
from pathlib import Path

import pytest

from node_agent.runner import MAX_WAITING, Slots, Workers, WorkRunner, compute_block
from piswarm import protocol
from piswarm.protocol import ProtocolError, summary, topics, work
from piswarm.protocol.primes import decode_primes
from piswarm.sieve import SegmentedSieve, small_primes


def test_a_block_is_its_primes_encoded():
    block = decode_primes(compute_block(1, 100_001, "numpy"))
    assert block.count == 9592 and (block.first, block.last) == (2, 99_991)
    assert list(block.primes[:5]) == list(small_primes(12))


@pytest.fixture(scope="module")
def workers():
    pool = Workers(1)
    yield pool
    pool.shutdown()


def test_workers_outlive_the_thread_that_happened_to_start_them(caplog):
    # A pool spawns its workers from whichever thread submits first; they must die with
    # the agent process, not with that thread (a worker killed mid-result hung shutdown).
    pool = Workers(1)
    done: list[bytes] = []
    tid: list[int] = []

    def first() -> None:
        tid.append(threading.get_native_id())
        done.append(pool.submit(1, 1_001, "numpy").result(timeout=60))

    try:
        thread = threading.Thread(target=first)
        thread.start()
        thread.join()
        while Path(f"/proc/self/task/{tid[0]}").exists():
            os.sched_yield()  # the kernel has not yet seen the thread go
        with caplog.at_level(logging.WARNING, logger="node_agent.runner"):
            second = pool.submit(1_001, 2_001, "numpy").result(timeout=60)
        assert decode_primes(second).count == 135
        assert "worker process died" not in caplog.text
    finally:
        pool.shutdown()


class Harness:
    def __init__(self, workers, *, slots=2, max_unacked=16, node="node-a"):
        self.sent = []
        self.woken = threading.Event()
        self.runner = WorkRunner(
            node_id=node,
            workers=workers,
            slots=Slots(slots),
            per_node=slots,
            backend="numpy",
            max_unacked=max_unacked,
            clock=lambda: self.now,
        )
        self.runner.wake = self.woken.set
        self.now = 0.0

    def publish(self, topic, payload, qos):
        self.sent.append((topic, payload))

    def tick(self):
        self.runner.tick(self.now, self.publish)

    def requests(self):
        return [work.decode_work_request(p).want for t, p in self.sent if t.endswith("/request")]

    def holding(self):
        """What the last request said the node holds."""
        last = [p for t, p in self.sent if t.endswith("/request")][-1]
        return work.decode_work_request(last).holding

    def results(self):
        return [t for t, _ in self.sent if "/results/" in t]

    def assign(self, block, lo, hi, job="p1-test"):
        msg = work.WorkAssign(job=job, block=block, lo=lo, hi=hi, lease_s=60)
        self.runner.on_message(self.runner.assign_topic, protocol.encode(msg))

    def ack(self, block, outcome="stored", job="p1-test"):
        msg = work.ResultAck(job=job, block=block, outcome=outcome)
        self.runner.on_message(self.runner.acks_topic, protocol.encode(msg))

    def settle(self, results):
        """Tick whenever woken until ``results`` results have been published."""
        while len(self.results()) < results:
            assert self.woken.wait(30), "no block finished"
            self.woken.clear()
            self.tick()


def test_asks_for_its_slots_computes_and_asks_again(workers):
    h = Harness(workers)
    h.runner.on_connect()
    h.tick()
    assert h.requests() == [2]
    h.tick()
    assert h.requests() == [2]  # nothing changed: no repeat
    assert h.holding() == ()
    h.assign(0, 1, 100_001)
    h.assign(1, 100_001, 200_001)
    h.tick()
    assert h.runner.busy == 2
    h.settle(results=2)
    assert h.results() == [
        topics.node_result("node-a", "p1-test", 0),
        topics.node_result("node-a", "p1-test", 1),
    ]
    assert h.requests()[-1] == 2 and h.runner.unacked == 2
    assert h.holding() == ("p1-test/0", "p1-test/1")  # computed, not acknowledged yet
    h.ack(0)
    h.ack(1, "duplicate")
    assert h.runner.unacked == 0 and h.runner.stats.acks == 2
    h.now += 31  # the next request (a periodic one) holds nothing
    h.tick()
    assert h.holding() == ()


def test_unacknowledged_results_are_resent_on_reconnect_and_coordinator_online(workers):
    h = Harness(workers)
    h.runner.on_connect()
    h.tick()
    h.assign(5, 1, 50_001)
    h.tick()
    h.settle(results=1)
    h.runner.on_connect()  # a reconnect: the result may have been lost
    h.tick()
    assert len(h.results()) == 2
    online = work.CoordinatorStatus(state="online", ts=1.0)
    h.runner.on_message(topics.JOBS_COORDINATOR, protocol.encode(online))
    h.tick()
    assert len(h.results()) == 3  # coordinator came online: maybe it missed it
    h.runner.on_message(topics.JOBS_COORDINATOR, protocol.encode(online))
    h.tick()
    assert len(h.results()) == 3  # still online: nothing new
    h.now += 61  # no ack for a minute
    h.tick()
    assert len(h.results()) == 4
    h.ack(5)
    h.now += 61
    h.tick()
    assert len(h.results()) == 4


def test_too_many_unacknowledged_results_stop_new_requests(workers):
    h = Harness(workers, max_unacked=1)
    h.runner.on_connect()
    h.tick()
    h.assign(0, 1, 10_001)
    h.tick()
    h.settle(results=1)
    assert h.requests()[-1] == 0  # back-pressure: no new work until acked
    h.ack(0)
    h.tick()
    assert h.requests()[-1] == 2


def test_bad_messages_are_counted_not_raised(workers):
    h = Harness(workers)
    h.runner.on_message(h.runner.assign_topic, b'{"v":1,"job":"x"}')
    h.runner.on_message(h.runner.acks_topic, b"junk")
    assert h.runner.stats.malformed == 2 and h.runner.busy == 0


def test_a_shared_pool_of_slots_makes_nodes_take_turns(workers):
    slots = Slots(1)
    a = Harness(workers, node="sim-001")
    b = Harness(workers, node="sim-002")
    for h in (a, b):
        h.runner.slots = slots
        h.runner.per_node = 1
        h.runner.on_connect()
        h.tick()
    assert (a.requests(), b.requests()) == ([1], [])  # one slot: a has it, b waits
    a.assign(0, 1, 10_001)
    a.tick()
    a.settle(results=1)
    b.tick()
    assert b.requests() == [1]  # a's finished block freed the slot


def test_a_node_tells_the_coordinator_how_fast_its_workers_sieve(workers):
    h = Harness(workers)
    h.runner.on_connect()
    h.tick()
    first = work.decode_work_request(next(p for t, p in h.sent if t.endswith("/request")))
    assert (first.speed, first.workers) == (None, 1)  # nothing sieved yet
    h.assign(0, 1, 1_000_001)
    h.tick()
    h.settle(results=1)
    last = work.decode_work_request([p for t, p in h.sent if t.endswith("/request")][-1])
    assert last.speed is not None and last.speed > 10_000 and last.workers == 1


def test_an_acknowledgement_may_name_several_blocks(workers):
    h = Harness(workers, slots=3)
    h.runner.on_connect()
    h.tick()
    for block in range(3):
        h.assign(block, 1 + block * 10_000, 1 + (block + 1) * 10_000)
    h.tick()
    h.settle(results=3)
    msg = work.ResultAck(job="p1-test", block=2, outcome="stored", more=(0, 1))
    h.runner.on_message(h.runner.acks_topic, protocol.encode(msg))
    assert h.runner.unacked == 0 and h.runner.stats.acks == 3


def test_an_assignment_of_several_blocks_is_split_and_checked_whole():
    more = (work.BlockRange(8, 20_001, 30_001), work.BlockRange(9, 30_001, 40_001))
    msg = work.WorkAssign(job="p1-test", block=7, lo=10_001, hi=20_001, lease_s=60, more=more)
    got = work.decode_assign(protocol.encode(msg)).each()
    assert [(a.block, a.lo, a.hi, a.more) for a in got] == [
        (7, 10_001, 20_001, ()),
        (8, 20_001, 30_001, ()),
        (9, 30_001, 40_001, ()),
    ]
    body = json.loads(protocol.encode(msg))
    for change, reason in [
        ({"more": [{"block": 7, "lo": 1, "hi": 2}]}, "assigned twice"),
        ({"more": [{"block": 8, "lo": 5, "hi": 5}]}, "empty or too large"),
        ({"more": [{"block": 8, "lo": 1, "hi": 10**9}]}, "empty or too large"),
        ({"more": [{"block": b, "lo": 1, "hi": 2} for b in range(10, 74)]}, "longer than 63"),
        ({"more": [{"block": 8}]}, "missing field"),
    ]:
        with pytest.raises(ProtocolError, match=reason):
            work.decode_assign(json.dumps({**body, **change}).encode())


def test_blocks_assigned_past_what_a_node_can_hold_are_counted_and_dropped(workers, caplog):
    h = Harness(workers)
    for first in range(0, 320, 64):  # 5 messages of 64 blocks: nobody asked for them
        more = tuple(
            work.BlockRange(b, 1 + b * 10_000, 1 + (b + 1) * 10_000)
            for b in range(first + 1, first + 64)
        )
        lo, hi = 1 + first * 10_000, 1 + (first + 1) * 10_000
        msg = work.WorkAssign(job="p1-test", block=first, lo=lo, hi=hi, lease_s=60, more=more)
        with caplog.at_level(logging.WARNING, logger="node_agent.runner"):
            h.runner.on_message(h.runner.assign_topic, protocol.encode(msg))
    assert h.runner.busy == MAX_WAITING == 256
    assert h.runner.stats.assigns_dropped == 64
    assert "64 blocks of p1-test assigned past 256 waiting: dropped" in caplog.text


def test_summaries_ready_together_go_in_one_message_and_are_resent_together(workers):
    h = Harness(workers, slots=3)
    h.runner.on_connect()
    h.tick()
    more = (work.BlockRange(1, 10_001, 20_001), work.BlockRange(2, 20_001, 30_001))
    msg = work.WorkAssign(
        job="p1-test", block=0, lo=1, hi=10_001, lease_s=60, keep="counts", more=more
    )
    h.runner.on_message(h.runner.assign_topic, protocol.encode(msg))
    h.tick()
    assert h.runner.busy == 3
    while h.runner.ready < 3:  # no tick until all three are done: they are ready together
        assert h.woken.wait(30), "no block finished"
        h.woken.clear()
    h.tick()
    ((topic, payload),) = [(t, p) for t, p in h.sent if "/results/" in t]
    assert topic == topics.node_summaries("node-a", "p1-test")
    batch = summary.decode_summaries(payload)
    assert batch.blocks == (0, 1, 2)
    assert [s.count for s in batch.summaries] == [1229, 1033, 983]
    assert h.runner.stats.results_sent == 3
    h.ack(1)
    h.runner.on_connect()  # the other two go again, together
    h.tick()
    topic, payload = [(t, p) for t, p in h.sent if "/results/" in t][-1]
    assert summary.decode_summaries(payload).blocks == (0, 2)
    h.ack(0)
    h.runner.on_connect()  # one left: on its block's own topic
    h.tick()
    assert h.results()[-1] == topics.node_result("node-a", "p1-test", 2)
    assert summary.decode_summary([p for t, p in h.sent if "/results/" in t][-1]).count == 983


@pytest.mark.parametrize(("lo", "hi"), [(1, 1_000_000), (10**12, 10**12 + 300_001)])
def test_a_count_only_block_listed_in_pieces_sums_up_to_the_whole(lo, hi):
    from piswarm.protocol import counts

    whole = counts.summarize(SegmentedSieve().primes(lo, hi))
    for piece in (10_000, 77_777, hi - lo):
        got = summary.decode_summary(compute_block(lo, hi, "numpy", "counts", piece=piece))
        assert got == whole, piece
