"""Jobs on a chosen part of the room: the placement on the wire and in the job store."""

import json
import logging
import time
from contextlib import closing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from head.coordinator.jobstore import Assignment, JobStore
from head.coordinator.placing import RoomLimits
from piswarm import protocol
from piswarm.protocol import ProtocolError, jobs, topics, work
from piswarm.protocol import life as wire
from piswarm.protocol.jobs import PrimesRequest, decode_any_status
from piswarm.protocol.life import LifeRequest
from piswarm.protocol.placement import Placement
from tests.conftest import job_flags, piswarm, status_is, until
from tests.head.test_jobstore import result_for
from tests.head.test_life_coordinator import assigned, hand_node, submit_life

NODES = [f"pi-{desk:02d}-{seat}" for desk in range(1, 11) for seat in "abc"]


@pytest.fixture
def store(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite").open()
    yield store
    store.close()


def placed(placement: Placement, *, end: int = 10_000_000, block: int = 10_000) -> PrimesRequest:
    return PrimesRequest(start=1, end=end, block_size=block, placement=placement)


# -- the wire -----------------------------------------------------------------------------


def test_globs_name_nodes_as_a_shell_would():
    p = Placement(nodes=("pi-0[4-9]-*", "pi-10-?", "pi-01-[!b]"))
    assert [n for n in NODES if p.admits(n)] == [
        "pi-01-a",
        "pi-01-c",
        *[f"pi-{d:02d}-{s}" for d in range(4, 10) for s in "abc"],
        "pi-10-a",
        "pi-10-b",
        "pi-10-c",
    ]
    assert Placement().admits("anything") and not Placement().limited
    assert Placement(count=4, per_node=2).describe() == "any 4; 2 per node"
    assert p.describe().startswith("pi-0[4-9]-*, pi-10-?")


@pytest.mark.parametrize(
    ("placement", "words"),
    [
        ({"nodes": ["PI-01"]}, "field 'nodes': 'PI-01'"),
        ({"nodes": ["pi-[01"]}, "unclosed '['"),
        ({"nodes": ["a", "a"]}, "listed twice"),
        ({"nodes": ["x"] * 65}, "field 'nodes'"),
        ({"count": 0}, "field 'count'"),
        ({"per_node": 0}, "field 'per_node'"),
        ({"per_node": 2.5}, "field 'per_node'"),
        ("pi-01", "field 'placement'"),
    ],
)
def test_a_bad_placement_is_refused_naming_the_field(placement, words):
    payload = protocol.encode(PrimesRequest(start=1, end=100)).replace(
        b"}", b',"placement":' + _json(placement) + b"}"
    )
    with pytest.raises(ProtocolError, match=words.replace("[", r"\[")):
        jobs.decode_request(payload)


def _json(value) -> bytes:
    return json.dumps(value).encode()


def test_a_placement_round_trips_in_both_kinds_of_request():
    p = Placement(nodes=("pi-0[4-9]-*",), count=3, per_node=2)
    for request in (placed(p), LifeRequest(width=64, height=64, gens=5, density=0.3, placement=p)):
        assert jobs.decode_request(jobs.encode_request(request)) == request


# -- leasing ------------------------------------------------------------------------------


def test_a_job_for_named_nodes_leases_to_them_only_and_others_take_the_rest(store):
    mine, _ = store.submit(placed(Placement(nodes=("pi-0[4-5]-*",))), now=0.0)
    anyone, _ = store.submit(PrimesRequest(start=1, end=1_000_000, block_size=10_000), now=1.0)
    served = store.lease_many([("pi-01-a", 3), ("pi-04-b", 3)], 2.0, 60.0)
    assert {a.job for a in served["pi-01-a"]} == {anyone}
    assert {a.job for a in served["pi-04-b"]} == {mine}
    # An outsider is never handed the placed job's blocks, not even those given back.
    store.release_node("pi-04-b")
    again = store.lease_many([("pi-01-a", 8), ("pi-05-c", 2)], 3.0, 60.0)
    assert {a.job for a in again["pi-01-a"]} == {anyone}
    assert [a.block for a in again["pi-05-c"]] == [0, 1]  # the blocks pi-04-b gave back


def test_a_node_the_job_does_not_name_does_not_stop_the_round(store):
    store.submit(placed(Placement(nodes=("pi-02-a",))), now=0.0)
    served = store.lease_many([("pi-01-a", 2), ("pi-01-b", 2), ("pi-02-a", 2)], 1.0, 60.0)
    assert served == {"pi-01-a": [], "pi-01-b": [], "pi-02-a": served["pi-02-a"]}
    assert len(served["pi-02-a"]) == 2


def test_workers_per_node_caps_the_blocks_a_node_holds_and_the_rest_comes_from_others(store):
    two, _ = store.submit(placed(Placement(per_node=2)), now=0.0)
    assert len(store.lease("pi-01-a", 1.0, 60.0, count=5)) == 2
    assert store.lease("pi-01-a", 1.0, 60.0, count=5) == []
    other, _ = store.submit(PrimesRequest(start=1, end=1_000_000, block_size=10_000), now=2.0)
    got = store.lease("pi-01-a", 3.0, 60.0, count=5)
    assert [a.job for a in got] == [other] * 5
    # A result stored frees a worker: one more block of the capped job.
    held = [(j, b) for j, b in store.leased_to("pi-01-a") if j == two]
    assert (
        store.store_result(
            two, held[0][1], "pi-01-a", result_for(store_lease(store, two, held[0][1])), 4.0
        )
        == "stored"
    )
    assert [a.job for a in store.lease("pi-01-a", 4.0, 60.0, count=5)] == [two] + [other] * 4
    # A lease run out is not held: the node may take as many again.
    assert len([a for a in store.lease("pi-01-a", 100.0, 60.0, count=9) if a.job == two]) == 2


def store_lease(store, job, block):
    """The assignment of a block already leased (to rebuild its result)."""
    lo, hi = store.info(job).block_range(block)
    return Assignment(job, block, lo, hi, 0.0)


def test_any_n_takes_the_first_n_nodes_and_another_when_one_leaves(store):
    job, _ = store.submit(placed(Placement(nodes=("pi-0*",), count=2)), now=0.0)
    served = store.lease_many(
        [(n, 1) for n in ("pi-01-a", "pi-11-a", "pi-02-a", "pi-03-a")], 1.0, 60.0
    )
    assert [n for n, got in served.items() if got] == ["pi-01-a", "pi-02-a"]
    assert store.members(job) == ["pi-01-a", "pi-02-a"]
    assert store.lease("pi-03-a", 2.0, 60.0) == []
    store.release_node("pi-01-a")
    assert store.members(job) == ["pi-02-a"]
    assert [a.block for a in store.lease("pi-03-a", 3.0, 60.0)] == [0]  # pi-01-a's, given back
    assert store.lease("pi-01-a", 4.0, 60.0) == []  # back, but the job has its two
    assert store.members(job) == ["pi-02-a", "pi-03-a"]


def test_a_placement_survives_a_restart(tmp_path):
    path = tmp_path / "jobs.sqlite"
    with closing(JobStore(path).open()) as store:
        job, _ = store.submit(placed(Placement(nodes=("pi-04-*",), count=1, per_node=1)), 0.0)
        assert len(store.lease("pi-04-a", 1.0, 60.0, count=3)) == 1
    with closing(JobStore(path).open()) as store:
        assert store.info(job).placement == Placement(nodes=("pi-04-*",), count=1, per_node=1)
        assert store.lease("pi-04-b", 2.0, 60.0) == []  # pi-04-a is its one node
        assert store.lease("pi-04-a", 2.0, 60.0) == []  # ...and holds its one block
        assert store.lease("pi-01-a", 2.0, 60.0) == []


def test_a_whole_room_placement_is_stored_as_none(store):
    job, _ = store.submit(placed(Placement()), now=0.0)
    assert store.info(job).placement is None


# -- whatever happens, a placed job's leases stay inside its placement --------------------

placements = st.builds(
    Placement,
    nodes=st.sampled_from([(), ("pi-0[1-3]-*",), ("pi-0?-a", "pi-10-*"), ("pi-05-b",)]),
    count=st.none() | st.integers(1, 4),
    per_node=st.none() | st.integers(1, 3),
)
steps = st.lists(
    st.tuples(st.sampled_from(["want", "offline", "result", "expire"]), st.sampled_from(NODES)),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(first=placements, second=placements, steps=steps)
def test_leases_never_leave_a_placement(tmp_path_factory, first, second, steps):
    path = tmp_path_factory.mktemp("placed") / "jobs.sqlite"
    with closing(JobStore(path).open()) as store:
        jobs_ = {}
        for i, p in enumerate((first, second)):
            job, _ = store.submit(placed(p, end=400_000), now=float(i))
            jobs_[job] = p
        now = 10.0
        for action, node in steps:
            now += 1.0
            if action == "want":
                store.lease(node, now, 30.0, count=3)
            elif action == "offline":
                store.release_node(node)
            elif action == "expire":
                now += 31.0
            else:
                for job, block in store.leased_to(node)[:1]:
                    store.store_result(
                        job, block, node, result_for(store_lease(store, job, block)), now
                    )
            for job, p in jobs_.items():
                holders = store.db.execute(
                    "SELECT node, COUNT(*) FROM blocks WHERE job = ? AND state = 'leased' "
                    "AND lease_until >= ? GROUP BY node",
                    (job, now),
                ).fetchall()
                assert all(p.admits(n) for n, _count in holders), (p, holders)
                if p.per_node is not None:
                    assert all(count <= p.per_node for _n, count in holders), (p, holders)
                if p.count is not None:
                    assert len(store.members(job)) <= p.count
                    assert {n for n, _c in holders} <= set(store.members(job))


def test_room_limits_close_jobs_a_node_may_not_join():
    room = RoomLimits(
        {
            "j1": Placement(nodes=("pi-01-*",)),
            "j2": Placement(count=1),
            "j3": Placement(per_node=2),
        },
        {"j2": ["pi-09-a"]},
        {("pi-01-a", "j3"): 2, ("pi-01-b", "j3"): 1},
        unplaced=False,
    )
    a, b, c = room.for_node("pi-01-a"), room.for_node("pi-01-b"), room.for_node("pi-02-a")
    assert (a.closed, dict(a.caps)) == (("j2", "j3"), {})
    assert (b.closed, dict(b.caps)) == (("j2",), {"j3": 1})
    assert (c.closed, dict(c.caps)) == (("j1", "j2"), {"j3": 2})
    assert room.shuts_out(a) is False and room.for_node("pi-09-a").closed == ("j1",)
    assert room.took("pi-02-a", ["j3", "j3"]) == []
    assert room.shuts_out(room.for_node("pi-02-a"))


# -- the coordinator, with nodes played by hand ---------------------------------------------


def hand_prime_node(recorder, node_id, workers=1):
    """A node born with sieve workers, that asks for blocks when told to."""
    return hand_node(recorder, node_id, strips=0, workers=workers)


def ask(node, want):
    request = work.WorkRequest(node=node.node_id, want=want, ts=time.time(), speed=1e8, workers=1)
    node.publish(topics.node_work_request(node.node_id), protocol.encode(request))


def assigns(node, job):
    return [
        work.decode_assign(m.payload)
        for m in node.matching(lambda m: m.topic == topics.node_work_assign(node.node_id))
        if work.decode_assign(m.payload).job == job
    ]


def status_of(rec, job, pred, timeout=15.0):
    def match(m):
        return (
            m.topic == topics.job_status(job) and m.payload and pred(decode_any_status(m.payload))
        )

    return decode_any_status(rec.wait_for(match, timeout=timeout).payload)


def test_a_prime_job_for_a_node_not_online_waits_saying_so_and_starts_when_it_comes(
    broker, users, coordinator, recorder, caplog
):
    caplog.set_level(logging.INFO)
    outsider = hand_prime_node(recorder, "node-a")
    coordinator()
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_primes(admin, "placed", {"nodes": ["node-[b-c]"], "per_node": 2})
    ask(outsider, 4)
    waiting = status_of(admin, job, lambda s: s.waiting is not None)
    ask(outsider, 4)
    later = status_of(admin, job, lambda s: s.ts > waiting.ts)  # a second later: still waiting
    assert later.waiting == waiting.waiting
    # Waiting is a state, not an error: nothing was logged as one while it lasted.
    assert any(f"job {job} from admin" in r.getMessage() for r in caplog.records)  # heard
    noisy = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert waiting.waiting == "waiting: no node online with workers matches node-[b-c]; 2 per node"
    assert waiting.placement == Placement(nodes=("node-[b-c]",), per_node=2)
    shown = piswarm("job", "status", job, *job_flags(broker, users)).stdout.decode()
    assert "waiting: no node online" in shown and "placed on: node-[b-c]; 2 per node" in shown
    node_b = hand_prime_node(recorder, "node-b")
    status_of(admin, job, lambda s: s.waiting is None)
    ask(node_b, 4)
    until(lambda: blocks_of(node_b, job) == 2, "node-b's two blocks")
    # Both still want more (the outsider 4, node-b 2): a job anyone may run, submitted
    # after, is served to them. Had the placed job been open to them, its blocks (the
    # older job's) would have gone first.
    anyone = submit_primes(admin, "anyone", None)
    until(lambda: blocks_of(outsider, anyone) == 4, "the outsider's four blocks")
    until(lambda: blocks_of(node_b, anyone) == 2, "node-b's two more blocks")
    assert blocks_of(outsider, job) == 0 and blocks_of(node_b, job) == 2


def blocks_of(node, job):
    return sum(1 + len(a.more) for a in assigns(node, job))


def submit_primes(rec, request_id, placement, end=1_000_000):
    rec.wait_connected()
    body = {"v": 1, "kind": "primes", "request_id": request_id, "start": 1, "end": end}
    body.update(block_size=100_000, placement=placement)
    rec.publish(rec.submit_topic, json.dumps(body).encode())
    msg = rec.wait_for(
        lambda m: (
            m.topic == topics.JOBS_REPLIES and json.loads(m.payload)["request_id"] == request_id
        )
    )
    reply = json.loads(msg.payload)
    assert reply["ok"], reply
    return reply["job"]


def test_life_strips_run_only_where_the_placement_says(broker, users, coordinator, recorder):
    users.add_nodes(["node-e"])
    broker.reload()
    a, b, c = (hand_node(recorder, n, strips=2) for n in ("node-a", "node-b", "node-c"))
    coordinator()
    admin = recorder("admin", filters=("piswarm/jobs/#",))
    job = submit_life(admin, "two", placement={"nodes": ["node-[ab]"], "per_node": 1})
    first = assigned(a, job, 1)
    assert first.strips == 2 and assigned(b, job, 1).strips == 2
    one = submit_life(admin, "one", placement={"count": 1})
    assert assigned(c, one, 1).strips == 2  # c's two slots (a and b each have one left)
    nowhere = submit_life(admin, "z", placement={"nodes": ["node-e"]})
    waiting = status_of(admin, nowhere, lambda s: s.waiting is not None)
    assert waiting.waiting == "waiting: no node online that runs strips matches node-e"
    assert waiting.strips == 0
    for node in (a, b, c):
        assert not node.matching(
            lambda m, node=node: (
                m.topic == topics.node_life_assign(node.node_id)
                and wire.decode_assign(m.payload)[0].job == nowhere
            )
        )
    z = hand_node(recorder, "node-e", strips=1)
    assert assigned(z, nowhere, 1).strips == 1
    assert status_of(admin, nowhere, lambda s: s.strips == 1).waiting is None


def test_real_agents_a_placed_job_never_reaches_another_node_even_when_its_own_leaves(
    broker, users, agents, coordinator, recorder
):
    coordinator()
    viewer = recorder("viewer")
    viewer.wait_connected()
    agents("node-a", workers=1)
    node_b = agents("node-b", workers=1)
    viewer.wait_for(status_is("node-b", "online"), timeout=30)
    viewer.wait_for(status_is("node-a", "online"), timeout=30)
    node_b.hold_workers()  # its blocks stay unfinished until it is gone
    flags = ["--block-size", "1e5", "--nodes", "node-b", *job_flags(broker, users)]
    submitted = piswarm("job", "primes", "1", "2e6", *flags)
    assert submitted.returncode == 0, submitted.stderr.decode()
    job = submitted.stdout.decode().strip()
    viewer.wait_for(lambda m: m.topic == topics.node_work_assign("node-b"), timeout=30)
    node_b.stop()  # killed: its will gives its leases back
    waiting = status_of(viewer, job, lambda s: s.waiting is not None, timeout=30)
    assert waiting.state == "running" and "matches node-b" in waiting.waiting
    node_b.start()  # back: the job carries on there, and only there
    final = status_of(viewer, job, lambda s: s.state == "done", timeout=120)
    assert final.primes == 148_933  # pi(2e6)
    assert [c.node for c in final.top] == ["node-b"]
    to_a = viewer.matching(lambda m: m.topic == topics.node_work_assign("node-a"))
    assert [work.decode_assign(m.payload) for m in to_a] == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--nodes", "PI-01"], "argument --nodes: 'PI-01' is not a node id or glob"),
        (["--nodes", "pi-[01"], "argument --nodes: 'pi-[01' has an unclosed '['"),
        (["--nodes", ","], "argument --nodes: name a node id"),
        (["--any", "0"], "argument --any: 0 is not in 1-1,000,000"),
        (["--per-node", "x"], "argument --per-node: 'x' is not a non-negative whole number"),
    ],
)
@pytest.mark.parametrize("kind", [["primes", "1", "100"], ["life", "--random", "0.3"]])
def test_a_bad_placement_flag_is_one_line_naming_it(kind, flags, words):
    done = piswarm("job", *kind, *flags, "--broker-port", "1")
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 2 and words in lines[-1], lines
