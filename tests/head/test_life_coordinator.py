"""The coordinator's Life side against a real broker, with nodes played by hand: exact
control of what a strip reports (stuck strips, busy slots)."""

import json
import time
import zlib

from piswarm import protocol
from piswarm.protocol import life as wire
from piswarm.protocol import topics
from tests.conftest import until


def hand_node(recorder, node_id="node-a", strips=1, workers=0):
    """A node that announces Life slots (and sieve workers) and records what it is sent."""
    rec = recorder(node_id, filters=(f"piswarm/nodes/{node_id}/#", "piswarm/jobs/#"))
    rec.wait_connected()
    rec.node_id = node_id
    birth = protocol.NodeOnline(
        node=node_id,
        ts=time.time(),
        host="bench",
        version="0",
        cores=4,
        model="hand",
        telemetry_interval=1.0,
        life_strips=strips,
        workers=workers,
    )
    rec.publish(topics.node_status(node_id), protocol.encode(birth), retain=True)
    return rec


def submit_life(rec, request_id, **fields):
    rec.wait_connected()  # subscribed: the reply cannot come before the subscription
    body = {
        "v": 1,
        "kind": "life",
        "request_id": request_id,
        "width": 64,
        "height": 32,
        "gens": 1000,
        "density": 0.3,
        **fields,
    }
    rec.publish(rec.submit_topic, json.dumps(body).encode())
    msg = rec.wait_for(
        lambda m: (
            m.topic == topics.JOBS_REPLIES and json.loads(m.payload)["request_id"] == request_id
        )
    )
    reply = json.loads(msg.payload)
    assert reply["ok"], reply
    return reply["job"]


def assigned(node, job, epoch, timeout=15.0):
    msg = node.wait_for(
        lambda m: (
            m.topic == topics.node_life_assign(node.node_id)
            and wire.decode_assign(m.payload)[0].job == job
            and wire.decode_assign(m.payload)[0].epoch == epoch
        ),
        timeout=timeout,
    )
    return wire.decode_assign(msg.payload)[0]


def test_a_strip_that_reports_but_never_moves_on_is_a_stall(coordinator, recorder):
    node = hand_node(recorder)
    coordinator(stall_seconds=2.0)
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_life(admin, "stuck")
    first = assigned(node, job, 1)
    # The strip talks (a waiting strip sends progress with its wants) but stays at gen 0.
    progress = wire.Progress(job=job, epoch=1, strip=0, gen=first.gen, population=0, rate=0.0)
    deadline = time.monotonic() + 15
    topic = topics.life_strip("node-a", job, 1, 0, "progress")

    def replaced(m):
        return m.topic == topics.node_life_assign("node-a") and (
            wire.decode_assign(m.payload)[0].epoch == 2
        )

    while True:
        assert time.monotonic() < deadline, "the stuck strip was never replaced"
        node.publish(topic, protocol.encode(progress))
        # A strip reports about this often while it waits; stop as soon as it is replaced.
        if node.first(replaced, timeout=0.3) is not None:
            break
    assert assigned(node, job, 2).gen == 0  # from the last checkpoint: the start


def test_a_job_waits_for_strip_slots_another_job_holds_and_starts_when_it_ends(
    coordinator, recorder
):
    node = hand_node(recorder, strips=1)
    coordinator()
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    first = submit_life(admin, "first")
    assigned(node, first, 1)
    second = submit_life(admin, "second")
    waiting = node.wait_for(lambda m: m.topic == topics.job_status(second))
    assert wire.decode_status(waiting.payload).strips == 0  # the only slot is taken
    assert not node.matching(
        lambda m: (
            m.topic == topics.node_life_assign("node-a")
            and wire.decode_assign(m.payload)[0].job == second
        )
    )
    admin.publish(topics.JOBS_CANCEL, json.dumps({"v": 1, "job": first}).encode())
    assert assigned(node, second, 1).strips == 1  # after the regroup pause


def test_strips_are_sized_by_the_speed_nodes_showed_in_earlier_epochs(coordinator, recorder):
    fast, slow = hand_node(recorder, "node-a"), hand_node(recorder, "node-b")
    coordinator()
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    first = submit_life(admin, "measure", height=400)
    even = {n.node_id: assigned(n, first, 1) for n in (fast, slow)}
    assert {a.rows for a in even.values()} == {200}  # nothing known yet: even
    for node, speed in ((fast, 3e9), (slow, 1e9)):
        a = even[node.node_id]
        report = wire.Progress(
            job=first, epoch=1, strip=a.strip, gen=16, population=0, rate=10.0, cells_per_s=speed
        )
        node.publish(
            topics.life_strip(node.node_id, first, 1, a.strip, "progress"), protocol.encode(report)
        )
    admin.publish(topics.JOBS_CANCEL, json.dumps({"v": 1, "job": first}).encode())
    admin.wait_for(lambda m: m.topic == topics.job_status(first) and b"cancelled" in m.payload)
    second = submit_life(admin, "sized", height=400)
    assert assigned(fast, second, 1).rows == 300
    assert assigned(slow, second, 1).rows == 100


def test_a_checkpoint_bomb_from_a_node_not_running_the_strip_is_refused_uninflated(
    coordinator, recorder, caplog
):
    """32 KB that inflate to 32 MiB, sent by a node that does not run the strip: it was
    inflated (and its CRC checked) before the sender was; 100 of them blocked the
    coordinator for 7.9 s."""
    import zlib

    node = hand_node(recorder)
    running = coordinator()
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_life(admin, "bombed", width=16384, height=2048)
    assigned(node, job, 1)
    evil = recorder("node-b", filters=())
    evil.wait_connected()
    header = wire.Checkpoint(
        job=job, epoch=1, strip=0, row0=0, rows=2048, width=16384, gen=1, population=0, crc32=0
    )
    bomb = wire.encode_binary(header, zlib.compress(bytes(2048 * 16384 // 8), 9))
    assert len(bomb) < 64 * 1024
    evil.publish(topics.life_strip("node-b", job, 1, 0, "checkpoint"), bomb)
    # (its counter goes up just before its log line: wait for the line)
    until(lambda: "node node-b does not run strip 0" in caplog.text, "the coordinator refusing it")
    assert running.stats.malformed == 1
    assert "CRC" not in caplog.text  # refused before its body was read


def test_a_node_whose_strips_stay_silent_is_given_none_of_the_job_again(coordinator, recorder):
    """A node announcing strips it never runs was given one at every re-partition (every
    30 s) for as long as it stayed; now the stall benches it from the job."""
    silent = hand_node(recorder, "node-a")
    talker = hand_node(recorder, "node-b")
    coordinator(stall_seconds=2.0)
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_life(admin, "hostage")
    first = assigned(talker, job, 1)
    assigned(silent, job, 1)
    topic = topics.life_strip("node-b", job, 1, first.strip, "progress")
    progress = wire.Progress(
        job=job, epoch=1, strip=first.strip, gen=first.gen, population=0, rate=0.0
    )
    while (
        talker.first(
            lambda m: (
                m.topic == topics.node_life_assign("node-b")
                and wire.decode_assign(m.payload)[0].epoch == 2
            ),
            timeout=0.3,
        )
        is None
    ):
        talker.publish(topic, protocol.encode(progress))  # waiting for halos, as strips do
    second = assigned(talker, job, 2)
    assert second.strips == 1  # the whole board, on node-b alone
    assert (
        silent.first(
            lambda m: (
                m.topic == topics.node_life_assign("node-a")
                and wire.decode_assign(m.payload)[0].epoch == 2
            ),
            timeout=1,
        )
        is None
    )


def test_progress_sent_for_another_nodes_strip_keeps_no_stalled_job_alive(coordinator, recorder):
    """A node reporting progress for a frozen node's strip (on its own topic, the only one
    it may write) suppressed stall recovery for as long as it kept sending."""
    frozen = hand_node(recorder, "node-a")
    coordinator(stall_seconds=2.0)
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_life(admin, "forged")
    first = assigned(frozen, job, 1)
    evil = recorder("node-c", filters=())
    evil.wait_connected()
    topic = topics.life_strip("node-c", job, 1, first.strip, "progress")
    gen = first.gen
    while (
        frozen.first(
            lambda m: (
                m.topic == topics.node_life_assign("node-a")
                and wire.decode_assign(m.payload)[0].epoch == 2
            ),
            timeout=0.3,
        )
        is None
    ):
        gen += 1  # "moving on", as only the real strip could
        forged = wire.Progress(job=job, epoch=1, strip=first.strip, gen=gen, population=0, rate=1.0)
        evil.publish(topic, protocol.encode(forged))
        assert gen < 200, "the forged progress kept the stalled job from re-partitioning"


def two_hand_strips(recorder, coordinator, request_id, **fields):
    """Hand nodes node-a and node-b, one strip each of a new job: their first assigns."""
    nodes = [hand_node(recorder, "node-a"), hand_node(recorder, "node-b")]
    running = coordinator()
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_life(admin, request_id, **fields)
    assigns = {node.node_id: (node, assigned(node, job, 1)) for node in nodes}
    return running, admin, job, assigns


def report_conflict(node, assign, gen, sender):
    progress = wire.Progress(
        job=assign.job,
        epoch=assign.epoch,
        strip=assign.strip,
        gen=gen,
        population=0,
        rate=1.0,
        conflict_gen=gen,
        conflict_node=sender,
    )
    node.publish(
        topics.life_strip(node.node_id, assign.job, assign.epoch, assign.strip, "progress"),
        protocol.encode(progress),
    )


def test_conflicting_halos_take_their_sender_out_and_rewind_to_a_board_before_them(
    coordinator, recorder
):
    """A halo forged early for a future generation replaced the real one, which was then
    dropped as a duplicate: the job ended "done" with a wrong board."""
    running, _admin, job, assigns = two_hand_strips(recorder, coordinator, "conflict")
    node_a, first = assigns["node-a"]
    node_b, _ = assigns["node-b"]
    report_conflict(node_a, first, 40, "node-b")
    again = assigned(node_a, job, 2)
    assert (again.gen, again.strips, again.row0, again.rows) == (0, 1, 0, 32)  # all of it
    second = node_b.first(
        lambda m: (
            m.topic == topics.node_life_assign("node-b")
            and wire.decode_assign(m.payload)[0].epoch == 2
        ),
        timeout=1,
    )
    assert second is None
    assert running.coordinator.life.conflicts == 1


def test_conflicting_halos_older_than_the_last_board_fail_the_job_with_the_reason(
    coordinator, recorder
):
    running, admin, job, assigns = two_hand_strips(
        recorder, coordinator, "too-late", checkpoint_every=100
    )
    for node, assign in assigns.values():  # both pieces of generation 100: a board
        packed = bytes(assign.rows * 8)
        checkpoint = wire.Checkpoint(
            job=job,
            epoch=1,
            strip=assign.strip,
            row0=assign.row0,
            rows=assign.rows,
            width=assign.width,
            gen=100,
            population=0,
            crc32=zlib.crc32(packed),
        )
        node.publish(
            topics.life_strip(node.node_id, job, 1, assign.strip, "checkpoint"),
            wire.encode_checkpoint(checkpoint, packed),
        )
    until(lambda: running.coordinator.life.running[job].board_gen == 100, "the board of 100")
    node_a, first = assigns["node-a"]
    report_conflict(node_a, first, 60, "node-b")  # the board of 100 may be wrong
    status = admin.wait_for(
        lambda m: (
            m.topic == topics.job_status(job) and wire.decode_status(m.payload).state == "failed"
        )
    )
    error = wire.decode_status(status.payload).error
    assert "node-b sent two different halos for generation 60" in error
    assert "cannot be trusted" in error
    control = admin.wait_for(
        lambda m: (
            m.topic == topics.job_life_control(job)
            and wire.decode_control(m.payload).state == "failed"
        )
    )
    assert control is not None
