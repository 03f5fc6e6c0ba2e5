"""The prime search end to end: real broker, real agent processes sieving in real worker
processes, the coordinator as a process, the CLI as a user types it; then the failures.

Agents use the numpy sieve here (the portable default); expected counts come from
libprimesieve when installed, else numpy. No test relies on how long a block takes: where a
failure must land mid-job, one agent's workers are frozen (``hold_workers``), so the blocks
it was given stay unfinished and the job cannot end before the test lets them go.
"""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from head.coordinator.jobstore import JobStore
from piswarm.protocol import jobs, topics, work
from piswarm.sieve import small_primes
from piswarm.sieve_backends import select_backend
from tests.conftest import job_flags, minor_faults, piswarm

FAR = 10**12  # far out, where no block is trivial
BLOCK = 10**7


def submit(broker, users, start, end, block=BLOCK, keep="primes"):
    done = piswarm(
        "job",
        "primes",
        str(start),
        str(end),
        "--block-size",
        str(block),
        "--keep",
        keep,
        *job_flags(broker, users),
        "--timeout",
        "20",
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def status_of(viewer, job, pred=lambda s: True, timeout=120):
    msg = viewer.wait_for(
        lambda m: m.topic == topics.job_status(job) and pred(jobs.decode_job_status(m.payload)),
        timeout=timeout,
    )
    return jobs.decode_job_status(msg.payload)


def finished(viewer, job, timeout=180):
    return status_of(viewer, job, lambda s: s.state == "done", timeout)


def assigned_to(node_id, job=None):
    return lambda m: (
        m.topic == topics.node_work_assign(node_id)
        and (job is None or work.decode_assign(m.payload).job == job)
    )


def online(node_id):
    return lambda m: m.topic == topics.node_status(node_id) and b'"online"' in m.payload


def held_agent(agents, viewer, node_id, **kw):
    """An agent whose workers are frozen: what it is given, it keeps unfinished."""
    agent = agents(node_id, workers=1, **kw)
    viewer.wait_for(online(node_id))
    agent.hold_workers()
    return agent


def verify(tmp_path, job):
    store = JobStore(tmp_path / "jobs.sqlite").open(readonly=True)
    try:
        return store.verify(job), store.progress(job)
    finally:
        store.close()


def expected_count(lo, hi):
    return select_backend("auto").count(lo, hi)


def test_three_agents_find_pi_of_1e7_and_the_export_is_the_reference(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    fleet = [held_agent(agents, viewer, node) for node in ("node-a", "node-b", "node-c")]
    args = ["job", "primes", "1", "1e7", "--block-size", "1e6", "--wait"]
    follow = subprocess.Popen(
        [sys.executable, "-m", "piswarm", *args, *job_flags(broker, users)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for agent in fleet:  # every node gets its share before any can take the rest
        viewer.wait_for(assigned_to(agent.node_id), timeout=60)
    for agent in fleet:
        agent.release_workers()
    out, err = follow.communicate(timeout=120)
    assert follow.returncode == 0, err.decode()
    job = out.decode().strip()
    assert "done" in err.decode() and "664,579 primes" in err.decode()
    db = ["--db", str(tmp_path / "jobs.sqlite")]
    out = tmp_path / "primes.bin"
    exported = piswarm("job", "export", job, "--format", "bin", "-o", str(out), *db)
    assert exported.returncode == 0, exported.stderr.decode()
    assert np.array_equal(np.fromfile(out, dtype="<u8"), small_primes(10**7))
    text = piswarm("job", "export", job, *db).stdout  # txt, the default
    assert text == "".join(f"{p}\n" for p in small_primes(10**7).tolist()).encode()
    checked = piswarm("job", "verify", job, *db)
    assert checked.returncode == 0 and b"as it should be" in checked.stdout
    listed = piswarm("job", "list", *job_flags(broker, users))
    assert job in listed.stdout.decode() and "done" in listed.stdout.decode()
    # Every node did a share, and the status says so.
    final = finished(viewer, job)
    assert {c.node for c in final.top} == {"node-a", "node-b", "node-c"}
    assert final.primes == 664_579 and final.largest == 9_999_991


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_an_agent_killed_mid_block_loses_nothing(
    broker, users, agents, coordinator, recorder, tmp_path, keep
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    victim = held_agent(agents, viewer, "node-a")
    lo, hi = FAR, FAR + 40 * BLOCK
    job = submit(broker, users, lo, hi - 1, keep=keep)
    viewer.wait_for(assigned_to("node-a", job), timeout=60)  # blocks it will never finish
    for node in ("node-b", "node-c"):
        agents(node, workers=1)
    status_of(viewer, job, lambda s: s.blocks_done >= 3)  # the others at work meanwhile
    its_workers = victim.held
    victim.proc.kill()  # mid-block: its worker holds its blocks, unfinished
    victim.proc.wait()
    victim.release_workers()  # ... and, running again, sees its agent gone
    _, alive = psutil.wait_procs(its_workers, timeout=10)
    assert alive == [], "sieve workers outlived their agent"
    viewer.wait_for(lambda m: m.topic == topics.node_status("node-a") and b"lost" in m.payload)
    final = finished(viewer, job)
    assert final.primes == expected_count(lo, hi)
    assert "node-a" not in {c.node for c in final.top}  # its blocks were done by others
    problems, progress = verify(tmp_path, job)
    assert problems == [] and progress.primes == final.primes


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_a_frozen_agent_loses_its_lease_and_its_late_result_counts_once(
    broker, users, agents, coordinator, recorder, tmp_path, keep
):
    coordinator(lease=2.0)
    viewer = recorder("viewer")
    viewer.wait_connected()
    # keepalive 60: the broker will not drop it while it is frozen
    frozen = held_agent(agents, viewer, "node-a", keepalive=60)
    lo, hi = FAR, FAR + 24 * BLOCK
    job = submit(broker, users, lo, hi - 1, keep=keep)
    viewer.wait_for(assigned_to("node-a", job), timeout=60)
    frozen.signal(signal.SIGSTOP)
    agents("node-b", workers=1)
    final = finished(viewer, job)  # node-b did everything, node-a's leases ran out
    assert final.primes == expected_count(lo, hi)
    frozen.signal(signal.SIGCONT)
    frozen.release_workers()  # now it computes its blocks, too late
    late = viewer.wait_for(lambda m: m.topic == topics.node_acks("node-a"), timeout=60)
    assert work.decode_ack(late.payload).outcome == "duplicate"
    problems, progress = verify(tmp_path, job)
    assert problems == [] and progress.primes == final.primes
    assert progress.blocks_done == 24


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_the_coordinator_killed_mid_job_resumes_and_finishes_exactly(
    broker, users, agents, coordinator, recorder, tmp_path, keep
):
    first = coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    slow = held_agent(agents, viewer, "node-a")  # the job cannot end while it holds blocks
    lo, hi = FAR, FAR + 40 * BLOCK
    job = submit(broker, users, lo, hi - 1, keep=keep)
    viewer.wait_for(assigned_to("node-a", job), timeout=60)
    agents("node-b", workers=1)
    status_of(viewer, job, lambda s: s.blocks_done >= 8)
    first.kill()
    viewer.wait_for(lambda m: m.topic == topics.JOBS_COORDINATOR and b"offline" in m.payload)
    coordinator()
    slow.release_workers()
    final = finished(viewer, job)
    assert final.primes == expected_count(lo, hi)
    problems, progress = verify(tmp_path, job)
    assert problems == [] and progress.blocks_done == 40
    assert "resuming job" in first.log()


@pytest.mark.parametrize("keep", ["primes", "counts"])
def test_a_broker_restart_mid_job_loses_nothing(
    broker, users, agents, coordinator, recorder, tmp_path, keep
):
    coordinator(lease=20.0)
    viewer = recorder("viewer")
    viewer.wait_connected()
    slow = held_agent(agents, viewer, "node-a")  # the job cannot end while it holds blocks
    lo, hi = FAR, FAR + 40 * BLOCK
    job = submit(broker, users, lo, hi - 1, keep=keep)
    viewer.wait_for(assigned_to("node-a", job), timeout=60)
    agents("node-b", workers=1)
    status_of(viewer, job, lambda s: s.blocks_done >= 8)
    broker.stop()
    broker.start()
    slow.release_workers()
    viewer.close()
    viewer = recorder("viewer")
    final = finished(viewer, job, timeout=240)
    assert final.primes == expected_count(lo, hi)
    problems, progress = verify(tmp_path, job)
    assert problems == [] and progress.blocks_done == 40


def test_a_count_only_job_reports_pi_twins_and_the_largest_gap_exactly(
    broker, users, agents, coordinator, recorder, tmp_path
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    for node in ("node-a", "node-b"):
        agents(node, workers=1)
    job = submit(broker, users, 1, 10**8, block=BLOCK, keep="counts")
    final = finished(viewer, job)
    # pi(1e8), twin pairs below 1e8 (A007508), the largest gap below 1e8 (A002386)
    assert (final.primes, final.twins, final.gap, final.gap_at, final.keep) == (
        5_761_455,
        440_312,
        220,
        47_326_693,
        "counts",
    )
    shown = piswarm("job", "status", job, *job_flags(broker, users))
    assert "440,312 twin pairs  largest gap 220 after 47,326,693" in shown.stdout.decode()
    db = ["--db", str(tmp_path / "jobs.sqlite")]
    checked = piswarm("job", "verify", job, "--recompute", *db)
    assert checked.returncode == 0, checked.stdout.decode()
    assert b"440,312 twin pairs" in checked.stdout
    exported = piswarm("job", "export", job, *db)
    assert exported.returncode != 0 and b"kept counts only" in exported.stderr


def test_a_job_of_a_million_blocks_is_accepted_at_once_and_worked_on(
    broker, users, agents, coordinator, recorder, tmp_path
):
    running = coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    job = submit(broker, users, FAR, FAR + 10**10 - 1, block=10**4, keep="counts")
    status = status_of(viewer, job)
    assert status.blocks_total == 1_000_000
    agents("node-a", workers=1)
    status_of(viewer, job, lambda s: s.blocks_done >= 200)
    cancelled = piswarm("job", "cancel", job, *job_flags(broker, users))
    assert cancelled.returncode == 0, cancelled.stderr.decode()
    store = JobStore(tmp_path / "jobs.sqlite").open(readonly=True)
    try:  # rows for the blocks that were leased, not for the million
        assert store.db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] < 1000
    finally:
        store.close()
    assert "error" not in running.log().lower()


def test_a_raw_mosquitto_pub_request_gets_a_reply(broker, users, coordinator, recorder):
    """What a student does: JSON by hand, an answer on the replies topic."""
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    viewer.publish(viewer.submit_topic, b'{"v":1,"kind":"primes","start":1,"end":1e3}')
    bad = viewer.wait_for(lambda m: m.topic == topics.JOBS_REPLIES, timeout=20)
    assert "'end': expected an integer" in json.loads(bad.payload)["error"]
    viewer.publish(
        viewer.submit_topic, b'{"v":1,"kind":"primes","start":1,"end":1000,"request_id":"s1"}'
    )
    good = viewer.wait_for(lambda m: m.topic == topics.JOBS_REPLIES and b'"s1"' in m.payload)
    assert json.loads(good.payload)["ok"] is True


def test_the_coordinator_and_the_agent_reuse_their_memory_result_after_result(
    broker, users, agents, coordinator, recorder
):
    """Each result (~290 KB at 1e9) passes through buffers of the same sizes: glibc gave
    them back to the kernel each time, ~380 page faults a result in the coordinator and
    ~100 in the agent's main process (10-15% of the coordinator's CPU, measured)."""
    head = coordinator()
    agent = agents("node-a", workers=1)
    viewer = recorder("viewer")
    # Warm up: imports, and SQLite's page cache filled (2 MB, a few hundred faults once).
    finished(viewer, submit(broker, users, 10**9, 10**9 + 10 * BLOCK - 1))
    before = minor_faults(head.proc.pid), minor_faults(agent.proc.pid)
    finished(viewer, submit(broker, users, 2 * 10**9, 2 * 10**9 + 30 * BLOCK - 1))
    after = minor_faults(head.proc.pid), minor_faults(agent.proc.pid)
    coordinator_faults, agent_faults = (b - a for a, b in zip(before, after, strict=True))
    assert coordinator_faults < 1_000 and agent_faults < 1_000, (coordinator_faults, agent_faults)


def test_a_broker_crash_right_after_jobs_end_leaves_their_final_status_retained(
    broker, users, agents, coordinator, recorder
):
    """mosquitto saves every few seconds, so a crash right after a job ended can bring
    back the status from before the end. The coordinator publishes the last ended jobs'
    status again whenever it (re)connects."""
    coordinator()
    agents("node-a", workers=1)
    viewer = recorder("viewer")
    viewer.wait_connected()
    primes_job = submit(broker, users, 1, 2 * BLOCK)
    request = {
        "v": 1,
        "kind": "life",
        "request_id": "crash",
        "width": 64,
        "height": 32,
        "gens": 20,
        "density": 0.3,
        "seed": 1,
    }
    viewer.publish(viewer.submit_topic, json.dumps(request).encode())
    answer = viewer.wait_for(lambda m: m.topic == topics.JOBS_REPLIES and b'"crash"' in m.payload)
    life_job = json.loads(answer.payload)["job"]
    finished(viewer, primes_job)
    viewer.wait_for(
        lambda m: m.topic == topics.job_status(life_job) and b'"done"' in m.payload, timeout=60
    )
    broker.kill()  # well within AUTOSAVE_SECONDS of the last statuses
    broker.start()
    watcher = recorder("viewer")
    for job in (primes_job, life_job):  # published again once the coordinator is back
        watcher.wait_for(
            lambda m, j=job: m.topic == topics.job_status(j) and not m.retain, timeout=30
        )
    later = recorder("viewer")  # what anyone subscribing from now on is told
    for job in (primes_job, life_job):
        status = later.wait_for(lambda m, j=job: m.topic == topics.job_status(j))
        assert status.retain and json.loads(status.payload)["state"] == "done"
    assert finished(later, primes_job).primes == 1_270_607


def test_blocks_leased_just_before_a_coordinator_crash_do_not_wait_out_their_lease(
    broker, users, agents, coordinator, recorder, tmp_path
):
    """The old coordinator committed two leases and died before the assignments went out:
    the new one gives them to the node again at its first request, not after lease_s."""
    first = coordinator(lease=120.0)
    viewer = recorder("viewer")
    viewer.wait_connected()
    job = submit(broker, users, FAR, FAR + 4 * BLOCK - 1)
    first.kill()
    store = JobStore(tmp_path / "jobs.sqlite").open()
    try:
        assert len(store.lease("node-a", time.time(), 120.0, count=2)) == 2
    finally:
        store.close()
    coordinator(lease=120.0)
    agents("node-a", workers=1)
    final = finished(viewer, job, timeout=60)
    assert final.primes == expected_count(FAR, FAR + 4 * BLOCK)
