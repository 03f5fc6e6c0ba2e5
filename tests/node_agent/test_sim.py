"""``piswarm sim``: hundreds of real MQTT clients in one process, against the real broker."""

import json
import os
import signal
import subprocess
import sys
import time

from piswarm.fleet import sim_node_ids
from tests.mqtt_helpers import Recorder


def start_sim(broker, users, nodes, interval, *more):
    """``piswarm sim`` against the test's broker (``more``: further flags)."""
    env = {**os.environ, "PISWARM_BROKER_DIR": str(users.root)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "piswarm",
            "sim",
            "--nodes",
            str(nodes),
            "--interval",
            str(interval),
            "--broker-host",
            "127.0.0.1",
            "--broker-port",
            str(broker.port),
            *more,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def online_fleet(broker, users, count, interval, timeout=30):
    """``count`` simulated nodes with credentials, a viewer watching, all online."""
    ids = sim_node_ids(count)
    users.add_nodes(ids)
    broker.reload()
    rec = Recorder(broker.port, users.get("viewer")).wait_connected()
    sim = start_sim(broker, users, count, interval)
    try:
        rec.wait_for(lambda _m: nodes_in_state(rec, "online") == set(ids), timeout=timeout)
    except BaseException:
        sim.kill()
        sim.communicate()
        rec.close()
        raise
    return ids, rec, sim


def nodes_in_state(rec, state):
    marker = f'"state":"{state}"'.encode()
    return {
        m.topic.split("/")[2]
        for m in rec.matching(lambda m: m.topic.endswith("/status") and marker in m.payload)
    }


def test_sim_stops_cleanly_and_every_node_says_offline(broker, users):
    ids, rec, sim = online_fleet(broker, users, 20, 0.5)
    try:
        sim.send_signal(signal.SIGINT)
        rec.wait_for(lambda _m: nodes_in_state(rec, "offline") == set(ids), timeout=20)
        assert sim.wait(timeout=20) == 0
        bodies = [
            json.loads(m.payload) for m in rec.matching(lambda m: "offline" in m.payload.decode())
        ]
        assert {b["reason"] for b in bodies} == {"shutdown"}
    finally:
        sim.kill()
        sim.communicate()
        rec.close()


def test_sim_without_credentials_says_how_to_create_them(broker, users):
    sim = start_sim(broker, users, 5, 1.0)
    out, _ = sim.communicate(timeout=30)
    assert sim.returncode == 2
    assert "piswarm broker users add --count 5 --prefix sim" in out.decode()


def test_sim_stops_promptly_even_when_the_broker_is_gone(broker, users):
    """Each client waits in paho's reconnect back-off: they must wind down together."""
    _ids, rec, sim = online_fleet(broker, users, 40, 0.5)
    try:
        rec.close()
        broker.kill()
        started = time.monotonic()
        sim.send_signal(signal.SIGTERM)
        out, _ = sim.communicate(timeout=30)  # drains the log while waiting
        assert sim.returncode == 0, out.decode()[-2000:]
        # One after another it took 23 s for 40 nodes: now one shared 3 s goodbye wait
        # and the network threads joined together (~4 s; the bound leaves room for a
        # loaded machine, and the serial stop is still far beyond it).
        assert time.monotonic() - started < 15
    finally:
        sim.kill()
        sim.communicate()
