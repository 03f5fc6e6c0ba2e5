"""Authentication and ACL, tested with real clients against the real broker."""

import logging
import random

import pytest

from node_agent.agent import Agent
from node_agent.identity import Identity
from node_agent.sim import SimulatedPi
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from tests.conftest import status_is
from tests.mqtt_helpers import Recorder

NOT_AUTHORIZED = 0x87


def test_anonymous_connect_is_refused(broker):
    rec = Recorder(broker.port, None)
    try:
        assert not rec.connected.wait(2)
        assert rec.connect_reason is not None and rec.connect_reason.is_failure
    finally:
        rec.close()


def test_wrong_password_is_refused(broker, users):
    from broker.users import User

    rec = Recorder(broker.port, User("node-a", "node", "wrong"))
    try:
        assert not rec.connected.wait(2)
        assert rec.connect_reason.getName() in ("Not authorized", "Bad user name or password")
    finally:
        rec.close()


@pytest.mark.parametrize(
    "topic",
    [
        "piswarm/nodes/node-b/status",
        "piswarm/nodes/node-b/telemetry",
        "piswarm/jobs/submit",
        "piswarm/jobs/submit/node-a",
        "piswarm/jobs/submit/viewer",
        "piswarm/jobs/j1/status",
        "piswarm/health/node-b",
        "piswarm/health/coordinator",
        "elsewhere/x",
    ],
)
def test_node_cannot_publish_outside_its_subtree(broker, users, recorder, topic):
    watcher = recorder("admin", filters=("#",))
    watcher.wait_connected()
    node_a = recorder("node-a", filters=())
    node_a.wait_connected()
    reason = node_a.publish(topic, b'{"v":1}')
    assert reason.value == NOT_AUTHORIZED
    assert node_a.publish("piswarm/nodes/node-a/pong", b"ok").value == 0
    assert node_a.publish("piswarm/health/node-a", b"ok").value == 0  # its own counters
    watcher.wait_for(lambda m: m.topic == "piswarm/nodes/node-a/pong")
    assert not watcher.matching(lambda m: m.topic == topic)


@pytest.mark.parametrize("user", ["viewer", "node-a"])
def test_a_client_may_echo_a_marker_to_its_own_sync_topic_only(broker, users, recorder, user):
    """How a command knows it has every retained message (head/session.py)."""
    client = recorder(user, filters=())
    client.wait_connected()
    assert not client.publish(topics.cli_sync(client.client_id), b"sync").is_failure
    assert client.publish(topics.cli_sync("someone-else"), b"sync").value == NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("topic", "retain"),
    [
        ("piswarm/nodes/node-a/probe", True),
        ("piswarm/nodes/node-a/a/b/c/d/e", True),
        ("piswarm/nodes/node-a/results/j1", False),
        ("piswarm/nodes/node-a/acks", False),
        ("piswarm/nodes/node-a/work/assign", False),
        ("piswarm/nodes/node-a/life/j/1/0/x", False),
    ],
)
def test_a_node_writes_only_the_leaves_the_protocol_documents(broker, recorder, topic, retain):
    """A node could write anything under its subtree: 50 retained messages of 8 MiB grew the
    broker to 430 MB and its database to 400 MiB, rewritten every 5 s."""
    node_a = recorder("node-a", filters=())
    node_a.wait_connected()
    assert node_a.publish(topic, bytes(1024), retain=retain).value == NOT_AUTHORIZED
    assert not node_a.publish("piswarm/nodes/node-a/pong", b"{}").is_failure


def test_agent_logs_not_authorized_instead_of_failing_silently(
    broker, users, agents, recorder, caplog
):
    """The agent's own publish path reports the broker's v5 refusal, naming the topic."""
    rec = recorder()
    agents("node-a")
    rec.wait_for(status_is("node-a", "online"))
    creds = Credentials.load(users.credentials_path("node-b"))
    agent = Agent(
        node_id="node-b",
        settings=BrokerSettings(host="127.0.0.1", port=broker.port, credentials=creds),
        sensors=SimulatedPi(random.Random(1)),
        identity=Identity("h", None, 4, "m"),
    )
    agent.start()
    try:
        assert agent.connected.wait(10)
        with caplog.at_level(logging.WARNING, logger="node_agent.agent"):
            agent.publish("piswarm/nodes/node-a/status", b'{"v":1}', qos=1)
            agent.publish("piswarm/jobs/submit", b'{"v":1}', qos=1)
            agent.publish("piswarm/nodes/node-b/pong", b"allowed", qos=1)
            rec.wait_for(lambda m: m.topic == "piswarm/nodes/node-b/pong")
    finally:
        agent.stop()
    assert agent.mqtt.stats.publish_refused == 2
    refusals = [r.getMessage() for r in caplog.records]
    assert (
        "node-b: broker refused publish to piswarm/nodes/node-a/status: Not authorized" in refusals
    )
    assert "node-b: broker refused publish to piswarm/jobs/submit: Not authorized" in refusals
    assert not rec.matching(lambda m: m.payload == b'{"v":1}')  # node-a's status untouched


def test_viewer_reads_everything_and_publishes_only_job_requests(broker, users, recorder):
    viewer = recorder("viewer")
    viewer.wait_connected()
    admin = recorder("admin", filters=())
    node = recorder("node-c", filters=())
    admin.wait_connected()
    node.wait_connected()
    admin.publish("piswarm/jobs/j1/status", b'{"v":1}')
    node.publish("piswarm/nodes/node-c/telemetry", b'{"v":1}')
    viewer.wait_for(lambda m: m.topic == "piswarm/jobs/j1/status")
    viewer.wait_for(lambda m: m.topic == "piswarm/nodes/node-c/telemetry")
    for topic in (
        "piswarm/jobs/cancel",
        "piswarm/nodes/node-c/cmd",
        "piswarm/x",
        "piswarm/jobs/j1/status",
        "piswarm/jobs/submit",
        "piswarm/jobs/submit/admin",
        "piswarm/jobs/submit/node-c",
    ):
        assert viewer.publish(topic, b'{"v":1}').value == NOT_AUTHORIZED
    # Students start work with mosquitto_pub as the viewer: on its own submit topic, which
    # tells the coordinator who submitted (quotas) and which nobody else can write.
    assert viewer.publish("piswarm/jobs/submit/viewer", b'{"v":1}').value == 0
    viewer.wait_for(lambda m: m.topic == "piswarm/jobs/submit/viewer")
    assert not viewer.matching(lambda m: m.topic in ("piswarm/jobs/cancel", "piswarm/x"))


def test_node_cannot_read_other_nodes(broker, users, recorder):
    node_a = recorder("node-a", filters=("piswarm/nodes/node-b/#",))
    node_a.wait_connected()
    node_b = recorder("node-b", filters=())
    node_b.wait_connected()
    node_b.publish("piswarm/nodes/node-b/telemetry", b'{"v":1}')
    spy = recorder("viewer", filters=("piswarm/nodes/node-b/#",))
    spy.wait_connected()
    node_b.publish("piswarm/nodes/node-b/telemetry", b'{"v":2}')
    spy.wait_for(lambda m: m.payload == b'{"v":2}')
    assert node_a.messages == []
