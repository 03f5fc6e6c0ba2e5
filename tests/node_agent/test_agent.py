"""The real agent, as a process, against the real broker."""

import json
import os
import signal
import time

import psutil
import pytest

from piswarm import protocol
from piswarm.protocol import life
from tests.conftest import cmdline, status_is, telemetry_of

TELEMETRY_FIELDS = {
    "v",
    "node",
    "seq",
    "ts",
    "temp_c",
    "temp_source",
    "throttle",
    "cpu_percent",
    "load",
    "mem_percent",
    "freq_mhz",
    "uptime_s",
    "busy_s",
}


def test_birth_is_retained_with_metadata(agents, recorder):
    agents("node-a")
    live = recorder()
    birth = live.wait_for(status_is("node-a", "online"))
    status = protocol.decode_status(birth.payload)
    assert isinstance(status, protocol.NodeOnline)
    assert status.version and status.cores >= 1 and status.model and status.host
    assert status.telemetry_interval == 0.5
    # A subscriber that arrives later gets it at once, as a retained message.
    late = recorder()
    assert late.wait_for(status_is("node-a", "online"), timeout=5).retain


def test_telemetry_has_every_documented_field_and_seq_increases(agents, recorder):
    rec = recorder()
    agents("node-a")
    rec.wait_for(telemetry_of("node-a", min_seq=4), timeout=10)
    msgs = rec.matching(telemetry_of("node-a"))
    bodies = [json.loads(m.payload) for m in msgs]
    for body in bodies:
        assert set(body) == TELEMETRY_FIELDS
        protocol.decode_telemetry(json.dumps(body).encode())  # every one validates
    seqs = [b["seq"] for b in bodies]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] - seqs[0] == len(seqs) - 1  # no gaps
    assert len(bodies[0]["load"]) == 3


def test_kill_9_turns_offline_by_the_will(agents, recorder):
    rec = recorder()
    agent = agents("node-a", keepalive=5)
    rec.wait_for(status_is("node-a", "online"))
    killed_at = time.time()
    agent.signal(signal.SIGKILL)
    msg = rec.wait_for(status_is("node-a", "offline", reason="lost"), timeout=1.5 * 5 + 5)
    assert msg.at - killed_at <= 1.5 * 5 + 5


def test_sigstop_frozen_agent_turns_offline_after_keepalive(agents, recorder):
    rec = recorder()
    agent = agents("node-a", keepalive=5)
    rec.wait_for(status_is("node-a", "online"))
    agent.signal(signal.SIGSTOP)
    rec.wait_for(status_is("node-a", "offline", reason="lost"), timeout=1.5 * 5 + 5)
    agent.signal(signal.SIGCONT)
    # Thawed, it notices the broker dropped it, reconnects and is born again.
    rec.wait_for(lambda m: status_is("node-a", "online")(m) and m.at > time.time() - 1, timeout=40)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_publishes_offline_at_once(agents, recorder, sig):
    rec = recorder()
    agent = agents("node-a")
    rec.wait_for(telemetry_of("node-a", min_seq=1))
    stopped_at = time.time()
    agent.signal(sig)
    msg = rec.wait_for(status_is("node-a", "offline", reason="shutdown"), timeout=5)
    assert msg.at - stopped_at < 2.0
    assert agent.wait() == 0
    retained = recorder().wait_for(lambda m: m.topic == "piswarm/nodes/node-a/status")
    assert json.loads(retained.payload)["state"] == "offline"


def test_second_agent_with_the_same_id_refuses_to_start(agents, recorder):
    rec = recorder()
    first = agents("node-a")
    rec.wait_for(status_is("node-a", "online"))
    second = agents("node-a")
    assert second.wait() == 3
    assert "already running" in second.log() and str(first.proc.pid) in second.log()
    assert first.proc.poll() is None  # the first one is untouched


def test_lock_is_free_again_after_kill_9(agents, recorder):
    rec = recorder()
    first = agents("node-a")
    rec.wait_for(status_is("node-a", "online"))
    first.signal(signal.SIGKILL)
    first.wait()
    agents("node-a")
    rec.wait_for(lambda m: status_is("node-a", "online")(m) and m.at > time.time() - 2)


def test_ping_is_answered_and_bad_commands_are_survived(agents, recorder):
    rec = recorder()
    admin = recorder("admin", filters=())
    agent = agents("node-a")
    rec.wait_for(status_is("node-a", "online"))
    for junk in (b"not json", b'{"v":1,"cmd":"format-disk"}', b'{"v":9,"cmd":"ping"}', b"\xff"):
        assert not admin.publish("piswarm/nodes/node-a/cmd", junk).is_failure
    admin.publish("piswarm/nodes/node-a/cmd", b'{"v":1,"cmd":"ping","id":"p1"}')
    pong = rec.wait_for(lambda m: m.topic == "piswarm/nodes/node-a/pong")
    assert protocol.decode_pong(pong.payload).id == "p1"
    assert agent.log().count("ignored bad command") == 4
    assert agent.proc.poll() is None


def test_telemetry_command_sends_out_of_period(agents, recorder, tmp_path):
    rec = recorder()
    admin = recorder("admin", filters=())
    agents("node-a", interval=60)  # periodic telemetry would take a minute
    rec.wait_for(telemetry_of("node-a"))  # the one sent on connect
    before = len(rec.matching(telemetry_of("node-a")))
    admin.publish("piswarm/nodes/node-a/cmd", b'{"v":1,"cmd":"telemetry"}')
    rec.wait_for(lambda m: len(rec.matching(telemetry_of("node-a"))) > before, timeout=5)


def test_missing_credentials_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "piswarm",
            "agent",
            "--node-id",
            "pi-1",
            "--lock-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "no broker credentials" in done.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stopping_the_agents_process_group_stops_it_quietly(stop, agents, coordinator, recorder):
    """Ctrl-C (SIGINT to the terminal's process group) and ``systemctl stop`` (SIGTERM to
    every process of the service) reach the sieve workers and Life strips too: they leave
    stopping to the agent, which says goodbye and leaves nothing behind, without a
    traceback."""
    viewer = recorder()
    viewer.wait_connected()
    agent = agents("node-a", workers=1, session=True)
    viewer.wait_for(status_is("node-a", "online"))
    coordinator()
    soup = {
        "v": 1,
        "kind": "life",
        "request_id": "paced",
        "width": 64,
        "height": 32,
        "gens": 10**6,
        "density": 0.3,
        "pace": 10,
        "frame_every": 0,
    }
    viewer.publish(viewer.submit_topic, json.dumps(soup).encode())
    viewer.wait_for(
        lambda m: (
            m.topic.endswith("/progress")
            and "/node-a/" in m.topic
            and life.decode_progress(m.payload).gen > 0
        ),
        timeout=30,
    )
    family = psutil.Process(agent.proc.pid).children(recursive=True)
    spawned = [p for p in family if "spawn_main" in " ".join(cmdline(p))]
    assert len(spawned) == 2, family  # the sieve worker (started with the agent) and the strip
    os.killpg(agent.proc.pid, stop)
    assert agent.wait(30) == 0, agent.log()[-3000:]
    said = agent.log()
    assert "Traceback" not in said and "KeyboardInterrupt" not in said, said[-3000:]
    assert f"received {signal.Signals(stop).name}: stopping" in said
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], alive
    viewer.wait_for(status_is("node-a", "offline", "shutdown"))
