"""A classroom probing piswarm: every student's Pi holds valid node credentials, and the
viewer login is shared. Each attack goes through the real broker with the project's
config, from a real client with valid credentials, against the real processes."""

import contextlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from node_agent.agent import Agent
from node_agent.identity import Identity
from node_agent.sim import SimulatedPi
from piswarm import protocol
from piswarm.mqtt import BrokerSettings, Credentials, end_loop
from piswarm.protocol import jobs, life, topics, work
from piswarm.protocol.primes import encode_primes
from tests.conftest import AgentProcess, status_is, until

HUGE = b"9" * 400  # an integer JSON allows and no float holds


def piswarm(*args, env=None, timeout=60):
    env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "piswarm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_a_poisoned_retained_status_stops_neither_status_nor_the_display(
    broker, users, recorder, agents, tmp_path
):
    """A node's retained birth with a 400-digit telemetry_interval stopped 'piswarm head',
    'display' and 'status' at every start (OverflowError) until an admin cleared it; a
    huge temp_c in telemetry killed a running display."""
    evil = recorder("node-b", filters=())
    evil.wait_connected()
    birth = (
        b'{"v":1,"node":"node-b","state":"online","ts":1,"host":"h","ip":null,'
        b'"version":"1","cores":4,"model":"m","telemetry_interval":' + HUGE + b',"simulated":false}'
    )
    assert not evil.publish(topics.node_status("node-b"), birth, retain=True).is_failure
    watcher = recorder()
    agents("node-a")  # an honest node beside it
    watcher.wait_for(status_is("node-a", "online"))
    hot = (
        b'{"v":1,"node":"node-b","seq":1,"ts":1,"temp_c":' + HUGE + b',"temp_source":"x",'
        b'"throttle":null,"cpu_percent":1,"load":[0,0,0],"mem_percent":1,"freq_mhz":null,'
        b'"uptime_s":1}'
    )
    flags = ["--broker-host", "127.0.0.1", "--broker-port", str(broker.port)]
    env = {"PISWARM_BROKER_DIR": str(users.root)}
    status = piswarm("status", *flags, "--wait", "2", env=env)
    assert status.returncode == 0, status.stderr
    assert "node-a" in status.stdout and "node-b" not in status.stdout
    assert "ignored malformed message on piswarm/nodes/node-b/status" in status.stderr
    shot = tmp_path / "shot.png"
    display = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "piswarm",
            "display",
            *flags,
            "--screenshot",
            str(shot),
            "--after",
            "2",
        ],
        env={**os.environ, **env, "SDL_VIDEODRIVER": "dummy"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sender = recorder("node-b", filters=())
        sender.wait_connected()
        while display.poll() is None:  # telemetry while it runs, as long as it runs
            sender.publish(topics.node_telemetry("node-b"), hot)
            with contextlib.suppress(subprocess.TimeoutExpired):
                display.wait(0.2)
        out = display.communicate(timeout=60)[0]
    finally:
        display.kill()
        display.wait()
    assert display.returncode == 0, out
    assert shot.exists()
    assert "ignored malformed message on piswarm/nodes/node-b/telemetry" in out


def test_submits_that_passed_validation_and_then_failed_are_answered(coordinator, recorder):
    """A name with an unpaired surrogate (JSON's \\ud800) passed validation and failed in
    SQLite; a 400-digit pace overflowed: neither got a reply, each was an internal error."""
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    sent = {
        "surrogate": b'{"v":1,"kind":"primes","start":1,"end":1000,"name":"\\ud800",'
        b'"request_id":"surrogate"}',
        "huge": b'{"v":1,"kind":"life","width":64,"height":64,"gens":10,"density":0.5,'
        b'"pace":' + HUGE + b',"request_id":"huge"}',
    }
    for rid, payload in sent.items():
        viewer.publish(viewer.submit_topic, payload)
        reply = viewer.wait_for(
            lambda m, r=rid: m.topic == topics.JOBS_REPLIES and f'"{r}"'.encode() in m.payload,
            timeout=20,
        )
        answer = json.loads(reply.payload)
        assert answer["ok"] is False and "field" in answer["error"], answer


def test_results_for_blocks_a_node_was_never_given_are_refused(
    broker, users, agents, coordinator, recorder
):
    """A student's Pi watching the job statuses published an empty result for every block:
    the job ended 'done, 0 primes' in 0.1 s while two honest agents ran."""
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    evil = recorder("node-c", filters=("piswarm/jobs/+/status", "piswarm/nodes/node-c/#"))
    evil.wait_connected()
    for node in ("node-a", "node-b"):
        agents(node, workers=1)
        viewer.wait_for(status_is(node, "online"))
    done = piswarm(
        "job",
        "primes",
        "1",
        "1e7",
        "--block-size",
        "1e5",
        "--broker-host",
        "127.0.0.1",
        "--broker-port",
        str(broker.port),
        "--credentials",
        str(users.credentials_path("admin")),
    )
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    evil.wait_for(lambda m: m.topic == topics.job_status(job))
    empty = encode_primes(np.zeros(0, dtype=np.uint64))
    for block in range(100):
        evil.publish(topics.node_result("node-c", job, block), empty)

    def refused():  # refusals arriving together are acknowledged together
        got = evil.matching(lambda m: m.topic == topics.node_acks("node-c"))
        return [work.decode_ack(m.payload) for m in got]

    until(lambda: sum(len(a.blocks) for a in refused()) >= 100, "every block refused", 60)
    assert sorted(b for a in refused() for b in a.blocks) == list(range(100))
    assert {a.outcome for a in refused()} == {"rejected"}
    assert all("was never given to node-c" in a.error for a in refused())
    final = viewer.wait_for(
        lambda m: m.topic == topics.job_status(job) and b'"done"' in m.payload, timeout=120
    )
    assert jobs.decode_job_status(final.payload).primes == 664_579


def test_no_client_can_be_kicked_off_by_a_student_guessing_its_client_id(
    broker, users, agents, coordinator, recorder
):
    """Mosquitto lets any user connect with any client id and kicks the client that had it:
    with the viewer's shared login a student took 'piswarm-coordinator' and 'piswarm-<node>'
    (30 takeovers in 60 s cut throughput to a third; a node's will released its work)."""
    boss = coordinator()
    watcher = recorder()
    agents("node-a")
    watcher.wait_for(status_is("node-a", "online"))
    for guess in ("piswarm-coordinator", "piswarm-node-a"):
        intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=guess, protocol=mqtt.MQTTv5)
        viewer = users.get("viewer")
        intruder.username_pw_set(viewer.name, viewer.password)
        intruder.connect("127.0.0.1", broker.port)
        intruder.loop_start()
        try:
            admin = recorder("admin", filters=())
            admin.wait_connected()  # the broker has handled the intruder's CONNECT by now
        finally:
            intruder.disconnect()
            end_loop(intruder)
    assert (
        watcher.first(
            lambda m: m.topic == topics.node_status("node-a") and b"lost" in m.payload, timeout=1
        )
        is None
    )
    assert (
        watcher.first(
            lambda m: m.topic == topics.JOBS_COORDINATOR and b"offline" in m.payload, timeout=1
        )
        is None
    )
    assert boss.proc.poll() is None


def test_a_session_taken_over_is_survived(broker, users):
    """Should anyone learn a client's id, the client reconnects (it took 0x8E as fatal)."""
    creds = Credentials.load(users.credentials_path("node-a"))
    agent = Agent(
        node_id="node-a",
        settings=BrokerSettings(host="127.0.0.1", port=broker.port, credentials=creds),
        sensors=SimulatedPi(random.Random(1)),
        identity=Identity("h", None, 4, "m"),
    )
    agent.start()
    try:
        assert agent.connected.wait(10)
        intruder = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=agent.client_id, protocol=mqtt.MQTTv5
        )
        intruder.username_pw_set(creds.username, creds.password)
        intruder.connect("127.0.0.1", broker.port)
        intruder.loop_start()
        until(lambda: agent.mqtt.stats.connects >= 2, "the agent connecting again")
        intruder.disconnect()
        end_loop(intruder)
        assert agent.fatal is None
    finally:
        agent.stop()


def test_two_machines_with_one_node_id_leave_the_newer_agent_running(
    broker, users, agents, recorder, tmp_path
):
    watcher = recorder()
    older = agents("node-a")
    first = watcher.wait_for(status_is("node-a", "online"))
    elsewhere = tmp_path / "elsewhere"  # its own pidfile lock: another machine
    elsewhere.mkdir()
    newer = AgentProcess("node-a", broker, users, elsewhere)
    newer.start()
    try:
        watcher.wait_for(lambda m: status_is("node-a", "online")(m) and m.payload != first.payload)
        assert older.wait(30) == 1
        assert "another agent runs as node 'node-a'" in older.log()
        assert "two machines share this node id" in older.log()
        assert newer.proc.poll() is None
    finally:
        newer.stop()


def test_the_shared_viewer_login_has_a_quota_and_cannot_keep_the_admins_jobs_out(
    coordinator, recorder
):
    """1,050 Life jobs from the viewer were accepted (the cap counted prime jobs only), and
    1,000 prime submits filled the cap until the admin's own jobs were refused."""
    coordinator()
    viewer, admin = recorder("viewer"), recorder("admin")
    viewer.wait_connected()
    admin.wait_connected()

    def replies(rec, rid):
        return rec.matching(
            lambda m: m.topic == topics.JOBS_REPLIES and json.loads(m.payload)["request_id"] == rid
        )

    def submit(rec, rid, kind="life"):
        """Submit and return the coordinator's answer to this very message."""
        body = (
            {"kind": "life", "width": 64, "height": 32, "gens": 100, "density": 0.3}
            if kind == "life"
            else {"kind": "primes", "start": 1, "end": 10**9}
        )
        until(
            lambda: len(replies(viewer, rid)) == len(replies(admin, rid)),
            "both saw every earlier reply",
        )  # none in flight
        seen = len(replies(rec, rid))
        rec.publish(rec.submit_topic, json.dumps({"v": 1, "request_id": rid, **body}).encode())
        until(lambda: len(replies(rec, rid)) > seen, f"a reply to {rid}", timeout=20)
        return jobs.decode_reply(replies(rec, rid)[seen].payload)

    # No node runs Life here: the viewer's Life jobs wait, and every one of them counts.
    accepted = [submit(viewer, f"v{i}") for i in range(10)]
    assert all(r.ok for r in accepted)
    refused = submit(viewer, "v-life-11")
    assert not refused.ok and "viewer has 10 jobs running, its limit is 10" in refused.error
    refused = submit(viewer, "v-primes", kind="primes")  # prime jobs count too
    assert not refused.ok and "its limit is 10" in refused.error
    # A retry of a request it made is still answered with its job.
    assert submit(viewer, "v3").job == accepted[3].job
    # The admin is not kept out, and a request id is the submitter's own: the viewer using
    # the id first does not hand the admin the viewer's job.
    mine = submit(admin, "v3", kind="primes")
    assert mine.ok and mine.job not in {r.job for r in accepted}
    # When one of the viewer's jobs ends, it may start another.
    admin.publish(topics.JOBS_CANCEL, json.dumps({"v": 1, "job": accepted[0].job}).encode())
    until(lambda: submit(viewer, "v-after").ok, "the viewer's next job accepted", timeout=20)


def test_bad_input_is_counted_where_status_health_shows_it_and_logged_rate_limited(
    broker, users, agents, coordinator, recorder
):
    """The malformed / refused / dropped / error counters were shown nowhere, and each bad
    message logged an unthrottled WARNING."""
    coord = coordinator()
    honest = agents("node-a")
    watcher = recorder(filters=(topics.HEALTH_FILTER, topics.NODE_STATUS_FILTER))
    watcher.wait_for(status_is("node-a", "online"))
    evil, admin = recorder("node-b", filters=()), recorder("admin", filters=())
    evil.wait_connected()
    admin.wait_connected()
    for i in range(300):
        evil.publish(topics.node_work_request("node-b"), b"not json %d" % i)
    for _ in range(40):
        admin.publish(topics.node_cmd("node-a"), b'{"v":1,"cmd":"format c:"}')
    evil.publish(topics.node_result("node-b", "p1-none", 0), b"PRM1")  # a block never leased

    def health(name):
        found = watcher.matching(lambda m: m.topic == topics.health(name))
        return json.loads(found[-1].payload) if found else {}

    until(lambda: health("coordinator").get("malformed") == 300, "coordinator counted 300")
    until(lambda: health("coordinator").get("refused") == 1, "coordinator counted 1 refusal")
    until(lambda: health("node-a").get("malformed") == 40, "node-a counted 40")
    flags = ["--broker-host", "127.0.0.1", "--broker-port", str(broker.port)]
    shown = piswarm("status", "--health", *flags, env={"PISWARM_BROKER_DIR": str(users.root)})
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[1]: line.split() for line in shown.stdout.splitlines()[1:]}
    assert lines["coordinator"][:6] == ["coordinator", "coordinator", "300", "1", "0", "0"]
    # (Not node-a's dropped: telemetry due before its first connect counts there, which
    # depends on how fast it connects.)
    assert [lines["node-a"][i] for i in (0, 1, 2, 3, 5)] == ["agent", "node-a", "40", "0", "0"]
    # Each kind of warning: 5 a minute, then one line saying how many were not logged.
    logged = coord.log().count("ignored malformed message on piswarm/nodes/node-b/work/request")
    assert 1 <= logged <= 15, logged
    logged = honest.log().count("node-a: ignored bad command")
    assert 1 <= logged <= 15, logged


def test_halos_forged_early_by_a_neighbours_login_never_end_in_a_wrong_board(
    broker, users, agents, coordinator, recorder, tmp_path
):
    """A well-formed halo sent early for a future generation replaced the real one, which
    was then dropped as a duplicate; the job ended "done" and only 'job verify' showed the
    mismatch. Here node-b's agent runs honestly while someone with node-b's login forges
    its halos ahead of time."""
    from tests.test_life_e2e import assert_exact, online, submit

    viewer = recorder("viewer")
    viewer.wait_connected()
    for node in ("node-a", "node-b"):
        agents(node, workers=1)
        viewer.wait_for(online(node))
    coord = coordinator()
    evil = recorder("node-b", filters=("piswarm/nodes/+/life/#",))
    evil.wait_connected()
    job, request = submit(
        viewer,
        "forged-halos",
        width=80,
        height=80,
        gens=400,
        halo=4,
        density=0.4,
        seed=7,
        pace=100.0,
        checkpoint_every=400,
    )

    def halos_of(node):
        """Headers of the halos ``node``'s strips have sent (what the forger watches)."""
        found = evil.matching(
            lambda m: (
                m.topic.startswith(f"piswarm/nodes/{node}/life/{job}/")
                and m.topic.endswith(("/up", "/down"))
            )
        )
        return [life.decode_halo(m.payload)[0] for m in found]

    until(lambda: halos_of("node-a") and halos_of("node-b"), "both strips exchange halos")
    epoch, strip = halos_of("node-b")[0].epoch, halos_of("node-b")[0].strip
    words = life.words_for(request.width)
    rng = np.random.default_rng(1)

    # Each time node-a's strip moves on, forge node-b's halos for the generations ahead of
    # it that it will take (up to two halo depths): random rows, well-formed in every way.
    def over():
        return viewer.matching(
            lambda m: (
                m.topic == topics.job_status(job) and json.loads(m.payload)["state"] != "running"
            )
        )

    while "node-b sent two different halos" not in coord.log() and not over():
        now = max(h.gen for h in halos_of("node-a") if h.epoch == epoch)
        for gen in range(now, now + 2 * request.halo + 1):
            for side in ("up", "down"):
                header = life.Halo(
                    job=job,
                    epoch=epoch,
                    strip=strip,
                    gen=gen,
                    side=side,
                    rows=request.halo,
                    words=words,
                    strip_rows=40,
                )
                rows = rng.integers(0, 2**63, size=request.halo * words, dtype=np.uint64)
                payload = life.encode_halo(header, rows.astype("<u8").tobytes())
                evil.publish(topics.life_strip("node-b", job, epoch, strip, side), payload, qos=0)
        evil.first(
            lambda m, now=now: (
                m.topic.startswith(f"piswarm/nodes/node-a/life/{job}/")
                and m.topic.endswith(("/up", "/down"))
                and life.decode_halo(m.payload)[0].gen > now
            ),
            timeout=2,
        )
    final = assert_exact(viewer, tmp_path, job, request)  # rewound, and right
    assert final.strips == 1  # without node-b
    assert "node-b sent two different halos" in coord.log()


def test_a_list_of_the_right_length_that_is_not_the_primes_is_found_by_verify_recompute(
    broker, users, coordinator, recorder, tmp_path
):
    """A result with the right count but wrong numbers (odd composites) passed every check
    'job verify' made. A node can always lie about work it was given; sieving again finds
    it, and names the node."""
    from piswarm.sieve_backends import select_backend

    coordinator()
    evil = recorder("node-c", filters=("piswarm/nodes/node-c/#",))
    evil.wait_connected()
    flags = [
        "--broker-host",
        "127.0.0.1",
        "--broker-port",
        str(broker.port),
        "--credentials",
        str(users.credentials_path("admin")),
    ]
    done = piswarm("job", "primes", "1", "2e6", "--block-size", "1e6", *flags)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    evil.publish(
        topics.node_work_request("node-c"),
        protocol.encode(work.WorkRequest(node="node-c", ts=1.0, want=2)),
    )
    assigned = evil.wait_for(lambda m: m.topic == topics.node_work_assign("node-c"))
    given = work.decode_assign(assigned.payload).each()  # both blocks, in one message
    assert len(given) == 2
    sieve = select_backend("auto")
    for block in given:
        primes = sieve.primes(block.lo, block.hi)
        if block.block == 0:  # one prime moved to the odd composite after it: same count
            k = next(
                i
                for i in range(1, primes.size - 1)
                if primes[i] + 2 < primes[i + 1] and (primes[i] + 2) % 3 == 0
            )
            primes = primes.copy()
            primes[k] += 2
        evil.publish(topics.node_result("node-c", job, block.block), encode_primes(primes))

    def is_ack(m):
        return m.topic == topics.node_acks("node-c")

    acks = [work.decode_ack(evil.wait_for(is_ack).payload)]
    if len(acks[0].blocks) < 2:  # stored in two commits (one ack names both when in one)
        acks = [work.decode_ack(m.payload) for m in evil.wait_for_all(is_ack, count=2)]
    assert sorted(b for a in acks for b in a.blocks) == [0, 1]
    assert {a.outcome for a in acks} == {"stored"}  # every cheap check passes
    db = ["--db", str(tmp_path / "jobs.sqlite")]
    plain = piswarm("job", "verify", job, *db)
    assert plain.returncode == 0, plain.stdout  # re-reading cannot tell
    again = piswarm("job", "verify", job, "--recompute", *db)
    assert again.returncode == 1
    assert f"{job}: block 0 from node-c: not the primes of [1, 1000001)" in again.stdout
    assert "block 1" not in again.stdout


def test_the_running_coordinator_sweeps_retained_junk_and_counts_it(
    broker, users, coordinator, recorder
):
    """What head/coordinator/janitor.py does (tests/head/test_janitor.py), as 'piswarm head'
    runs it."""
    evil = recorder("node-c", filters=())
    evil.wait_connected()
    junk = topics.node_telemetry("node-c")
    assert not evil.publish(junk, bytes(1 << 20), retain=True).is_failure
    watcher = recorder(filters=(junk, topics.health("coordinator")))
    watcher.wait_for(lambda m: m.topic == junk and m.retain)
    coordinator()
    watcher.wait_for(lambda m: m.topic == junk and m.payload == b"", timeout=30)  # removed
    watcher.wait_for(
        lambda m: m.topic == topics.health("coordinator") and json.loads(m.payload)["refused"] == 1,
        timeout=30,
    )
