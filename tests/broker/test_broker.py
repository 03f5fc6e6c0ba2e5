"""The broker process: persistence across crashes, restarts under load, users on disk."""

import contextlib
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker.config import AUTOSAVE_SECONDS, BrokerConfig
from broker.errors import BrokerError, MosquittoNotFound
from broker.runner import BrokerProcess, find_mosquitto
from broker.users import UserStore, mosquitto_hash, render_acl
from piswarm.mqtt import end_loop
from tests.conftest import status_is, telemetry_of, until
from tests.mqtt_helpers import Recorder


def test_hash_matches_mosquitto_passwd_format(tmp_path):
    """Our PBKDF2 hash is what mosquitto_passwd writes (and the broker accepts: see below)."""
    import base64

    salt = base64.b64decode("R06yA4wD80UL0NaZ")
    assert mosquitto_hash("secret", salt=salt) == (
        "$7$101$R06yA4wD80UL0NaZ$OsnMc/DycUdZZLEB7LZD+BztCBh/C2xE/zDJlC+MczLQQyNFajS1ehmr34hI"
        "NCyGNfVT6Ueg5yw2MhfPgcp3Ng=="
    )


def test_users_dir_is_private_and_consistent(users):
    for path in [users.passwd_path, users.acl_path, *users.root.glob("credentials/*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (users.root, users.root / "credentials"):  # it was 0755 (parents=True)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    names = {line.split(":")[0] for line in users.passwd_path.read_text().splitlines()}
    assert names == {"admin", "viewer", "node-a", "node-b", "node-c"}
    assert all(u.password not in users.passwd_path.read_text() for u in users.users())
    acl = users.acl_path.read_text()
    assert "user node-b\ntopic readwrite piswarm/nodes/node-b/status\n" in acl
    assert "topic write piswarm/nodes/node-b/results/+/+\n" in acl
    users.remove(["node-b"])
    assert "node-b" not in users.passwd_path.read_text() and "node-b" not in render_acl(
        users.users()
    )


def test_add_keeps_passwords_unless_rotated(users):
    before = users.get("node-a").password
    assert users.add_nodes(["node-a"]) == []
    assert users.get("node-a").password == before
    users.add_nodes(["node-a"], rotate=True)
    assert users.get("node-a").password != before


def test_rotated_password_takes_effect_after_reload(broker, users):
    old = users.get("node-a")
    users.add_nodes(["node-a"], rotate=True)
    broker.reload()
    fresh = Recorder(broker.port, users.get("node-a"), ())
    stale = None
    try:
        fresh.wait_connected()
        stale = Recorder(broker.port, old, ())
        assert not stale.connected.wait(2)
    finally:
        fresh.close()
        if stale:
            stale.close()


def test_rendered_config_sets_every_deliberate_limit(tmp_path):
    text = BrokerConfig(
        port=1883,
        bind=None,
        passwd_file=tmp_path / "p",
        acl_file=tmp_path / "a",
        persistence_dir=tmp_path,
    ).render()
    for line in (
        "allow_anonymous false",
        "autosave_on_changes false",
        "autosave_interval 5",
        "set_tcp_nodelay true",
        "max_queued_messages 100000",
        "max_packet_size 8388608",
        "listener 1883",
    ):
        assert f"\n{line}\n" in text


def test_missing_mosquitto_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv("PISWARM_MOSQUITTO", raising=False)
    with pytest.raises(MosquittoNotFound) as err:
        find_mosquitto(search_path=str(tmp_path))
    assert "apt-get install mosquitto" in str(err.value) and "\n" not in str(err.value)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "piswarm",
            "broker",
            "run",
            "--port",
            "0",
            "--dir",
            str(tmp_path / "u"),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PISWARM_MOSQUITTO": str(tmp_path / "nope")},
    )
    assert done.returncode == 1
    nope = tmp_path / "nope"
    assert done.stderr.strip().splitlines() == [
        f"piswarm broker run: error: PISWARM_MOSQUITTO={nope} is not an executable file"
    ]


def test_a_broker_that_cannot_start_says_why(users, tmp_path):
    first = BrokerProcess(users=users, state_dir=tmp_path / "one").start()
    try:
        clash = BrokerProcess(users=users, state_dir=tmp_path / "two", port=first.port)
        with pytest.raises(BrokerError, match=f"port {first.port} on 127.0.0.1 is already in use"):
            clash.start()
        assert not clash.running
        # A config mosquitto rejects is reported with mosquitto's own words.
        broken = BrokerProcess(users=users, state_dir=tmp_path / "three")
        broken.users = UserStore(tmp_path / "empty")
        broken.users.passwd_path.parent.mkdir()
        broken.users.passwd_path.write_text("")  # users exist on disk but acl does not
        with pytest.raises(BrokerError, match="exited with code"):
            broken.start()
    finally:
        first.stop()


def db_inode(broker) -> int | None:
    try:
        return (broker.state_dir / "mosquitto.db").stat().st_ino
    except FileNotFoundError:
        return None


def wait_saved(broker, before: int | None) -> int | None:
    """Wait until mosquitto has renamed a new database into place (it writes .db.new)."""
    until(
        lambda: db_inode(broker) != before and not (broker.state_dir / "mosquitto.db.new").exists(),
        "mosquitto saving after a change",
        timeout=2 * AUTOSAVE_SECONDS + 2,
    )
    return db_inode(broker)


class DurableSubscriber:
    """A client with a persistent session (clean_start off, 1 h expiry) on one topic."""

    def __init__(self, port, user, topic):
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.props = Properties(PacketTypes.CONNECT)
        self.props.SessionExpiryInterval = 3600
        self.port, self.user, self.topic = port, user, topic
        self.got = queue.Queue()

    def connect(self, *, subscribe):
        subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="durable", protocol=mqtt.MQTTv5)
        client.username_pw_set(self.user.name, self.user.password)
        client.on_message = lambda _c, _u, m: self.got.put(bytes(m.payload))
        client.on_subscribe = lambda *_a: subscribed.set()
        client.connect("127.0.0.1", self.port, clean_start=False, properties=self.props)
        client.loop_start()
        if subscribe:
            client.subscribe(self.topic, qos=1)
            assert subscribed.wait(10)
        return client


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "kill-9"])
def test_retained_and_queued_messages_survive_a_restart(users, tmp_path, crash):
    """Even kill -9 keeps retained state and queued QoS 1 messages saved before it."""
    broker = BrokerProcess(users=users, state_dir=tmp_path / "b").start()
    durable = DurableSubscriber(broker.port, users.get("viewer"), "piswarm/queued")
    try:
        client = durable.connect(subscribe=True)
        client.disconnect()
        end_loop(client)
        admin = Recorder(broker.port, users.get("admin"), ()).wait_connected()
        # mosquitto saves every AUTOSAVE_SECONDS, not before the PUBACK: wait for each
        # save (with mosquitto's default it would take 30 min).
        saved = db_inode(broker)
        assert not admin.publish("piswarm/probe", b"retained", retain=True).is_failure
        saved = wait_saved(broker, saved)
        assert not admin.publish("piswarm/queued", b"while-away").is_failure
        wait_saved(broker, saved)
        admin.close()
        if crash:
            broker.kill()
        else:
            broker.stop()
        broker.start()
        rec = Recorder(broker.port, users.get("viewer"), ("piswarm/probe",))
        assert rec.wait_for(lambda m: m.payload == b"retained").retain
        rec.close()
        client = durable.connect(subscribe=False)
        assert durable.got.get(timeout=10) == b"while-away"
        client.disconnect()
        end_loop(client)
    finally:
        broker.stop()


def test_a_stream_of_qos1_messages_does_not_rewrite_the_database_for_each(users, tmp_path):
    # With autosave_on_changes and a count of 1, every QoS 1 delivery was a change: the
    # whole database written, fsynced and renamed into place, 3 times per prime block.
    broker = BrokerProcess(users=users, state_dir=tmp_path / "b").start()
    admin = Recorder(broker.port, users.get("admin"), ("piswarm/stream/#",))
    saves: set[tuple[int, int]] = set()
    try:
        admin.wait_connected()
        path = broker.state_dir / "mosquitto.db"
        for i in range(100):
            assert not admin.publish(f"piswarm/stream/{i}", b"x" * 1000, qos=1).is_failure
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                saves.add((st.st_ino, st.st_mtime_ns))
        admin.wait_for(lambda m: m.topic == "piswarm/stream/99")
    finally:
        admin.close()
        broker.stop()
    assert len(saves) <= 2, f"{len(saves)} saves for 100 messages"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_agents_reconnect_and_resume_after_broker_restart(broker, users, agents, recorder, how):
    rec = recorder()
    for node in ("node-a", "node-b"):
        agents(node)
    for node in ("node-a", "node-b"):
        rec.wait_for(telemetry_of(node, min_seq=2))
    last = {
        n: json.loads(rec.matching(telemetry_of(n))[-1].payload)["seq"]
        for n in ("node-a", "node-b")
    }
    if how == signal.SIGKILL:
        broker.kill()
    else:
        broker.stop()
    rec.close()
    broker.start()
    after = recorder()
    admin = recorder("admin", filters=())
    for node in ("node-a", "node-b"):
        # Born again (retained online), telemetry flows again, commands still reach it.
        after.wait_for(status_is(node, "online"), timeout=40)
        after.wait_for(telemetry_of(node, min_seq=last[node] + 1), timeout=40)
        admin.publish(f"piswarm/nodes/{node}/cmd", b'{"v":1,"cmd":"ping","id":"again"}')
        after.wait_for(lambda m, n=node: m.topic == f"piswarm/nodes/{n}/pong", timeout=10)
