"""A classroom's worth of hostility, nightly-style: while a prime job runs, a student with
a node's login and the shared viewer login sends 10,000 malformed or forged messages to
every topic the coordinator takes in. The job ends exact, no process restarts, and the
coordinator's memory stays within its bound."""

import json
import threading

import psutil
import pytest

from piswarm.protocol import topics
from piswarm.protocol.primes import encode_primes
from tests.conftest import until
from tests.test_primes_e2e import held_agent, status_of, submit, verify

PER_TOPIC = 10_000
MEMORY_BOUND = 64 * 1024 * 1024
"""The coordinator's resident memory may grow by at most its inbox's byte bound (64 MiB)
during the flood: everything else it holds is bounded by the job, not the messages."""


def attacks(job: str, index: int) -> dict[str, tuple[str, bytes]]:
    """Message ``index`` of each kind: (topic, payload), malformed and forged in turns."""
    odd = index % 2
    huge = b"9" * 400
    block = index % 20
    lo = block * 1_000_000 + 1
    epoch_topic = topics.life_strip("node-c", job, index % 3, index % 5, "checkpoint")
    return {
        "submit": (
            topics.jobs_submit("viewer"),
            b'{"v":1,"kind":"primes","start":' + huge + b',"end":1}'
            if odd
            else b"\xff not json %d" % index,
        ),
        "status": (
            topics.node_status("node-c"),
            b'{"v":1,"node":"node-a","state":"offline","ts":1,"reason":"lost"}'
            if odd
            else b'{"v":1,"node":"node-c","state":"online","ts":' + huge + b"}",
        ),
        "request": (
            topics.node_work_request("node-c"),
            b'{"v":1,"want":' + huge + b"}" if odd else b"[]",
        ),
        # Forged: a well-formed result for a block node-c was never given.
        "result": (
            topics.node_result("node-c", job, block),
            encode_primes([lo, lo + 2]) if odd else b"PRM1" + bytes(30),
        ),
        "checkpoint": (epoch_topic, b"PSLF" + bytes(60)),
        "progress": (
            topics.life_strip("node-c", job, 1, 0, "progress"),
            json.dumps(
                {
                    "v": 1,
                    "job": job,
                    "epoch": 1,
                    "strip": 0,
                    "gen": index,
                    "population": 0,
                    "rate": 1.0,
                }
            ).encode()
            if odd
            else b"{",
        ),
    }


@pytest.mark.slow
def test_a_job_ends_exact_through_ten_thousand_bad_messages_a_topic(
    broker, users, agents, coordinator, recorder, tmp_path
):
    viewer = recorder("viewer")
    viewer.wait_connected()
    honest = [held_agent(agents, viewer, node) for node in ("node-a", "node-b")]
    coord = coordinator()
    process = psutil.Process(coord.proc.pid)
    pids = [agent.proc.pid for agent in honest]
    job = submit(broker, users, 1, 20_000_000, block=1_000_000)
    status_of(viewer, job)  # running, its blocks leased to frozen workers
    start_rss = process.memory_info().rss
    peak = [start_rss]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    evil, student = recorder("node-c", filters=()), recorder("viewer", filters=())
    evil.wait_connected()
    student.wait_connected()
    try:
        for index in range(PER_TOPIC):
            for kind, (topic, payload) in attacks(job, index).items():
                sender = student if kind == "submit" else evil
                sender.publish(topic, payload, qos=0)
        # QoS 1 from the same connections: when these are acknowledged, all the rest is
        # in the broker; the coordinator's health shows when it has taken it all in.
        evil.publish(topics.node_work_request("node-c"), b"last")
        student.publish(topics.jobs_submit("viewer"), b"last")
        health = recorder("viewer", filters=(topics.health("coordinator"),))

        def taken_in():
            seen = health.matching(lambda m: m.retain is False)
            if not seen:
                return False
            counts = json.loads(seen[-1].payload)
            return counts["malformed"] + counts["refused"] + counts["dropped"] >= 4 * PER_TOPIC

        until(taken_in, "the coordinator counting the flood", timeout=300)
        for agent in honest:
            agent.release_workers()
        final = status_of(viewer, job, lambda s: s.state == "done", timeout=300)
    finally:
        sampling.set()
        sampler.join()
    assert final.primes == 1_270_607  # pi(2e7)
    problems, progress = verify(tmp_path, job)
    assert problems == [] and progress.primes == final.primes
    # Nobody restarted: the same processes, alive, and no honest node ever seen offline.
    assert process.is_running() and coord.starts == 1
    assert [agent.proc.pid for agent in honest] == pids
    assert all(agent.proc.poll() is None for agent in honest)
    assert not viewer.matching(
        lambda m: (
            m.topic in (topics.node_status("node-a"), topics.node_status("node-b"))
            and b'"offline"' in m.payload
        )
    )
    counts = json.loads(health.matching(lambda m: True)[-1].payload)
    assert counts["errors"] == 0, counts  # every bad message refused as such, no bug hit
    grown = peak[0] - start_rss
    assert grown <= MEMORY_BOUND, f"the coordinator grew by {grown / 2**20:.0f} MiB"
