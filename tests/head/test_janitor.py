"""Retained messages only where the protocol keeps them: the janitor sweeps the broker and
removes the rest. Real broker with the project's ACL, real hostile clients."""

import json

from head.coordinator.janitor import Janitor
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from tests.conftest import until

MIB = 1024 * 1024


def retained_now(recorder):
    """Every retained message under piswarm/ as a fresh subscriber sees it: a map of topic
    to payload size, read up to a marker on the reader's own sync topic."""
    reader = recorder("viewer", filters=("piswarm/#",))
    reader.wait_connected()
    marker = topics.cli_sync(reader.client_id)
    reader.publish(marker, b"end")
    reader.wait_for(lambda m: m.topic == marker)
    found = {m.topic: len(m.payload) for m in reader.matching(lambda m: m.retain)}
    reader.close()
    return found


def test_retained_junk_anywhere_a_user_may_write_is_removed_and_the_protocols_kept(
    broker, users, recorder
):
    """50 x 8 MiB retained under a node's subtree grew the broker to 430 MB and its database
    to 400 MiB. The ACL cannot refuse the retain flag, and every user may write somewhere."""
    admin, evil, viewer = (
        recorder("admin", filters=()),
        recorder("node-b", filters=()),
        recorder("viewer", filters=()),
    )
    for client in (admin, evil, viewer):
        client.wait_connected()
    status = json.dumps(
        {"v": 1, "node": "node-a", "state": "offline", "ts": 1, "reason": "shutdown"}
    ).encode()
    kept = {
        topics.node_status("node-a"): status,
        topics.job_status("p1-x"): b'{"v":1}',
        topics.health("node-b"): b'{"v":1}',  # its own counters: small, where they belong
    }
    for topic, payload in kept.items():
        assert not admin.publish(topic, payload, retain=True).is_failure
    junk = {
        topics.node_telemetry("node-b"): MIB,
        topics.node_result("node-b", "p1-x", 7): 2 * MIB,
        topics.node_work_request("node-b"): 1000,
        topics.life_strip("node-b", "l1-x", 0, 0, "up"): MIB,
        topics.node_status("node-b"): 20_000,  # where a status goes, but no status is so big
        # More removals than paho keeps in flight at once (20): the sweep still ends after
        # the broker has handled every one of them.
        **{topics.node_result("node-b", "p1-y", block): 1000 for block in range(40)},
    }
    for topic, size in junk.items():
        assert not evil.publish(topic, b"x" * size, retain=True).is_failure, topic
    viewers = {topics.cli_sync(viewer.client_id): MIB, topics.jobs_submit("viewer"): 5000}
    for topic, size in viewers.items():
        assert not viewer.publish(topic, b"x" * size, retain=True).is_failure, topic
    assert set(junk) | set(viewers) <= set(retained_now(recorder))

    admin_login = users.get("admin")
    janitor = Janitor(
        BrokerSettings(
            host="127.0.0.1",
            port=broker.port,
            credentials=Credentials(admin_login.name, admin_login.password),
        ),
        every=3600,
    )
    janitor.start()
    try:
        until(lambda: janitor.sweeps == 1, "the sweep at connect")
        assert janitor.removed == len(junk) + len(viewers)
        assert janitor.removed_bytes == sum(junk.values()) + sum(viewers.values())
        left = retained_now(recorder)
        assert set(left) == set(kept), left
        # Junk retained again is gone after the next sweep; what is kept stays kept.
        evil.publish(topics.node_telemetry("node-b"), b"y" * MIB, retain=True)
        janitor.sweep_now()
        until(lambda: janitor.sweeps == 2, "a second sweep")
        assert janitor.removed == len(junk) + len(viewers) + 1
        assert set(retained_now(recorder)) == set(kept)
    finally:
        janitor.close()
    assert janitor.errors == 0
