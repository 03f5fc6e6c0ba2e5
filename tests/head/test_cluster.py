"""The cluster model: plain Python, fed with the exact bytes agents put on the wire."""

import itertools
import random

from head.display.cluster import ClusterModel, NodeState
from node_agent.sim import SimulatedPi
from piswarm import protocol
from piswarm.fleet import sim_node_ids
from piswarm.protocol import topics


def birth(node, ts=100.0, interval=1.0):
    msg = protocol.NodeOnline(
        node=node,
        ts=ts,
        host="h",
        version="0.1.0",
        cores=4,
        model="Pi 4",
        telemetry_interval=interval,
    )
    return topics.node_status(node), protocol.encode(msg)


def offline(node, reason="lost"):
    return topics.node_status(node), protocol.encode(
        protocol.NodeOffline(node=node, ts=1.0, reason=reason)
    )


def telemetry(node, seq, temp=50.0, throttle=0):
    msg = protocol.Telemetry(
        node=node,
        seq=seq,
        ts=100.0 + seq,
        temp_c=temp,
        temp_source="thermal",
        throttle=protocol.Throttle.from_raw(throttle),
        cpu_percent=10.0,
        load=(0.1, 0.1, 0.1),
        mem_percent=20.0,
        freq_mhz=1500.0,
        uptime_s=10.0,
    )
    return topics.node_telemetry(node), protocol.encode(msg)


def test_240_nodes_summary():
    ids = sim_node_ids(240)
    model = ClusterModel(expected=ids)
    for i, node in enumerate(ids):
        model.apply(*birth(node), received_at=0.0)
        model.apply(*telemetry(node, 0, temp=40.0 + i / 10), received_at=0.0)
    s = model.summary(now=1.0)
    assert (s.total, s.live, s.offline, s.never) == (240, 240, 0, 0)
    assert s.hottest == ("sim-240", 63.9)
    assert abs(s.average_temp - (40.0 + 23.9 / 2)) < 1e-9


def test_states_live_stale_offline_never():
    model = ClusterModel(expected=["a", "b", "c", "d"])
    for node in "abc":
        model.apply(*birth(node, interval=1.0), received_at=0.0)
        model.apply(*telemetry(node, 0), received_at=0.0)
    model.apply(*telemetry("b", 1), received_at=10.0)
    model.apply(*offline("c"), received_at=10.0)
    states = {v.node_id: v.state(now=10.5) for v in model.nodes()}
    assert states == {
        "a": NodeState.STALE,
        "b": NodeState.LIVE,
        "c": NodeState.OFFLINE,
        "d": NodeState.NEVER,
    }
    assert model.get("c").last_seen == 10.0


def test_out_of_order_and_duplicate_telemetry_is_ignored():
    model = ClusterModel()
    model.apply(*birth("a"), received_at=0.0)
    assert model.apply(*telemetry("a", 5, temp=55.0), received_at=1.0)
    assert not model.apply(*telemetry("a", 4, temp=44.0), received_at=2.0)
    assert not model.apply(*telemetry("a", 5, temp=66.0), received_at=3.0)
    assert model.get("a").temp_c == 55.0 and model.stats.out_of_order == 2
    # A restarted agent (new birth) starts seq again and is believed.
    model.apply(*birth("a", ts=200.0), received_at=4.0)
    assert model.apply(*telemetry("a", 0, temp=41.0), received_at=5.0)
    assert model.get("a").temp_c == 41.0


def test_malformed_messages_are_counted_and_change_nothing():
    model = ClusterModel()
    model.apply(*birth("a"), received_at=0.0)
    model.apply(*telemetry("a", 1, temp=50.0), received_at=0.0)
    bad = [
        ("piswarm/nodes/a/telemetry", b"garbage"),
        ("piswarm/nodes/a/telemetry", b'{"v":1}'),
        ("piswarm/nodes/a/status", b'{"v":7,"state":"online"}'),
        ("piswarm/nodes/Bad_Id/status", birth("a")[1]),
        ("piswarm/nodes/b/telemetry", telemetry("a", 9)[1]),  # names another node
    ]
    for topic, payload in bad:
        assert not model.apply(topic, payload, received_at=1.0)
    assert model.stats.malformed == len(bad)
    assert [v.node_id for v in model.nodes()] == ["a"]
    assert model.get("a").telemetry.seq == 1


def test_nodes_beyond_capacity_are_counted_not_stored():
    model = ClusterModel(max_nodes=10)
    for node in sim_node_ids(15):
        model.apply(*birth(node), received_at=0.0)
    assert len(model.nodes()) == 10 and model.stats.over_capacity == 5


def test_throttled_nodes_are_counted():
    model = ClusterModel()
    for node, raw in (("a", 0x4), ("b", 0x40000), ("c", 0x1)):
        model.apply(*birth(node), received_at=0.0)
        model.apply(*telemetry(node, 0, throttle=raw), received_at=0.0)
    assert model.summary(0.5).throttled == 2  # b throttled only in the past


def test_simulated_pi_is_plausible():
    clock = iter(range(0, 3600 * 4, 5))
    pi = SimulatedPi(random.Random(7), clock=lambda: float(next(clock)))
    temps = [pi.read().temp_c for _ in range(2000)]
    assert min(temps) >= 30 and max(temps) <= 90
    steps = [abs(a - b) for a, b in itertools.pairwise(temps)]
    assert max(steps) < 5  # drifts, never jumps


def test_changed_since_names_exactly_the_nodes_that_moved():
    from head.display.cluster import CHANGE_LOG

    model = ClusterModel()
    for node in ("a", "b", "c"):
        model.apply(*birth(node), received_at=0.0)
    mark = model.version
    assert model.changed_since(mark) == set()
    model.apply(*telemetry("b", 1), received_at=1.0)
    model.apply(*telemetry("b", 2), received_at=2.0)
    model.apply(*telemetry("c", 1), received_at=2.0)
    assert model.changed_since(mark) == {"b", "c"}
    assert model.changed_since(0) == {"a", "b", "c"}
    for seq in range(3, CHANGE_LOG + 10):  # more changes than the log keeps
        model.apply(*telemetry("a", seq), received_at=3.0)
    assert model.changed_since(mark) is None  # too long ago: the view must look at all
