"""The sharded simulated fleet: nodes in child processes, each still its own MQTT session."""

import json
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest

from node_agent.sim_fleet import FleetSpec, SimFleet, shards
from piswarm.fleet import sim_node_ids
from tests.conftest import until
from tests.mqtt_helpers import Recorder


def test_shards_are_consecutive_and_as_even_as_they_go():
    ids = [str(i) for i in range(5000)]
    parts = shards(ids)
    assert [len(p) for p in parts] == [250] * 20
    assert [n for p in parts for n in p] == ids
    assert [len(p) for p in shards(ids[:260])] == [130, 130]
    assert [len(p) for p in shards(ids[:7], 3)] == [3, 2, 2]
    assert shards([], 10) == [[]]
    with pytest.raises(ValueError):
        shards(ids, 0)


class Statuses:
    """Each node's latest status, as the head sees it."""

    def __init__(self, rec):
        self.rec = rec

    def states(self):
        latest = {}
        for m in self.rec.matching(lambda m: m.topic.endswith("/status") and m.payload):
            body = json.loads(m.payload)
            latest[body["node"]] = (body["state"], body.get("reason"), body.get("instance"))
        return latest

    def all_in(self, ids, state, reason=None):
        found = self.states()
        return all(
            n in found and found[n][0] == state and (reason is None or found[n][1] == reason)
            for n in ids
        )


@pytest.fixture
def fleet_of(broker, users):
    made = []

    def make(count, shard_nodes):
        ids = sim_node_ids(count)
        users.add_nodes(ids)
        broker.reload()
        spec = FleetSpec(users_dir=users.root, host="127.0.0.1", port=broker.port, interval=0.5)
        fleet = SimFleet(ids, spec, shard_nodes=shard_nodes)
        made.append(fleet)
        return ids, fleet

    yield make
    for fleet in made:
        fleet.stop()


def test_a_sharded_fleet_comes_up_restarts_a_dead_shard_and_stops_with_every_goodbye(
    broker, users, fleet_of
):
    rec = Recorder(broker.port, users.get("viewer")).wait_connected()
    seen = Statuses(rec)
    ids, fleet = fleet_of(30, shard_nodes=10)
    fleet.start()
    watcher = threading.Thread(target=fleet.run, kwargs={"every": 0.1})
    watcher.start()
    try:
        assert fleet.processes == 3 and len(fleet.agents) == 10
        until(lambda: seen.all_in(ids, "online"), "30 nodes online")
        # A shard that dies: its nodes' wills say so, and it is started again.
        first = {n: seen.states()[n][2] for n in ids}
        victim = fleet.child_pids()[0]
        os.kill(victim, signal.SIGKILL)
        until(lambda: seen.all_in(ids[10:20], "offline", "lost"), "the dead shard's wills")
        until(lambda: fleet.restarts == 1, "the shard started again")
        until(lambda: seen.all_in(ids, "online"), "every node online again")
        again = seen.states()
        assert all(again[n][2] != first[n] for n in ids[10:20])  # new agents
        assert all(again[n][2] == first[n] for n in ids[:10] + ids[20:])  # the rest stayed
    finally:
        fleet.stop_event.set()
        watcher.join()
    stats = fleet.stop()
    until(lambda: seen.all_in(ids, "offline", "shutdown"), "every goodbye")
    rec.close()
    assert stats.nodes == 30 and stats.telemetry_sent > 0 and stats.fatal is None
    assert fleet.child_pids() == []


def test_a_killed_sim_takes_its_shards_with_it(broker, users):
    """``kill -9`` of ``piswarm sim``: no shard outlives it, and every node's will fires."""
    ids = sim_node_ids(300)  # two processes
    users.add_nodes(ids)
    broker.reload()
    rec = Recorder(broker.port, users.get("viewer")).wait_connected()
    seen = Statuses(rec)
    flags = ["--workers", "0", "--broker-host", "127.0.0.1", "--broker-port", str(broker.port)]
    sim = subprocess.Popen(
        [sys.executable, "-m", "piswarm", "sim", "--nodes", "300", *flags],
        env={**os.environ, "PISWARM_BROKER_DIR": str(users.root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until(lambda: seen.all_in(ids, "online"), "300 nodes online")
        children = psutil.Process(sim.pid).children()
        sim.kill()
        sim.wait()
        until(lambda: seen.all_in(ids, "offline", "lost"), "every will")
        until(lambda: not any(c.is_running() for c in children), "the shards died")
    finally:
        sim.kill()
        sim.wait()
        rec.close()
