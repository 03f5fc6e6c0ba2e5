"""More than one lab: two lab brokers bridged to the head's with Mosquitto's own bridge.

Real brokers (the project's config, ``piswarm broker users bridge`` logins), real agents
on the lab brokers, the real coordinator and the display's feed on the head's. Lab A's
bridge runs through a TCP relay the test cuts and restores.
"""

import time

import pytest

from broker.config import Bridge
from broker.runner import BrokerProcess
from broker.users import UserStore
from head.display.cluster import ClusterModel, NodeState
from piswarm.mqtt import Credentials
from piswarm.protocol import topics
from tests.conftest import AgentProcess, until
from tests.head.test_display import viewer_feed
from tests.mqtt_helpers import Recorder
from tests.tcp_proxy import TcpProxy
from tests.test_primes_e2e import BLOCK, FAR, expected_count, finished, online, submit, verify

NOT_AUTHORIZED = 0x87


class Lab:
    """A lab: its own users (its nodes), its own broker, bridged to the head's."""

    def __init__(self, name, nodes, head_users, port, tmp_path):
        bridge_user = head_users.add_bridge(name)
        self.users = UserStore(tmp_path / name / "users")
        self.users.add_nodes(nodes)
        self.broker = BrokerProcess(
            users=self.users,
            state_dir=tmp_path / name / "broker",
            die_with_parent=True,
            bridge=Bridge("127.0.0.1", port, bridge_user.name, bridge_user.password),
        ).start()
        self.tmp_path = tmp_path / name

    def agent(self, node_id, **kw):
        return AgentProcess(node_id, self.broker, self.users, self.tmp_path, **kw).start()

    def recorder(self, user, filters=("piswarm/#",)):
        return Recorder(self.broker.port, self.users.get(user), filters).wait_connected()


@pytest.fixture
def labs(broker, users, tmp_path):
    relay = TcpProxy(broker.port)
    made = {
        "a": Lab("lab-a", ["a-1"], users, relay.port, tmp_path),
        "b": Lab("lab-b", ["b-1"], users, broker.port, tmp_path),
    }
    broker.reload()  # the head's broker learns the bridge logins
    yield made, relay
    relay.cut()
    for lab in made.values():
        lab.broker.stop()


def model_state(feed, model, node):
    for msg in feed.drain():
        model.apply(msg.topic, msg.payload, msg.at)
    view = model.get(node)
    return None if view is None else view.state(time.time())


def test_lab_nodes_reach_the_head_each_hop_enforces_the_acl_and_a_cut_bridge_loses_nothing(
    broker, users, labs, coordinator, recorder, tmp_path
):
    (lab_a, lab_b), relay = (labs[0]["a"], labs[0]["b"]), labs[1]
    coordinator(lease=120.0)
    viewer = recorder("viewer")
    feed = viewer_feed(broker, users)  # what the kiosk runs on
    model = ClusterModel()
    agents = []
    try:
        for lab, node in ((lab_a, "a-1"), (lab_b, "b-1")):
            agents.append(lab.agent(node, workers=1, interval=0.5))
            viewer.wait_for(online(node), timeout=30)  # through the bridge, on the head
        slow = agents[0]
        until(lambda: model_state(feed, model, "a-1") is NodeState.LIVE, "a-1 live on the kiosk")
        until(lambda: model_state(feed, model, "b-1") is NodeState.LIVE, "b-1 live on the kiosk")

        # Each hop enforces its ACL. On lab A's broker a node writes only its own topics:
        # not lab B's node's, not a job. On the head's, lab A's bridge login writes what
        # nodes write, and nothing of the head's own.
        a1 = lab_a.recorder("a-1", filters=())
        b_side = lab_b.recorder("b-1", filters=(topics.NODE_TELEMETRY_FILTER,))
        assert a1.publish(topics.node_telemetry("b-1"), b"forged").value == NOT_AUTHORIZED
        assert a1.publish(topics.jobs_submit("viewer"), b"{}").value == NOT_AUTHORIZED
        a1.close()
        bridge_login = Recorder(broker.port, users.get("lab-a"), filters=()).wait_connected()
        assert bridge_login.publish(topics.JOBS_CANCEL, b"{}").value == NOT_AUTHORIZED
        assert bridge_login.publish(topics.jobs_submit("lab-a"), b"{}").value == NOT_AUTHORIZED
        assert bridge_login.publish(topics.JOBS_COORDINATOR, b"x").value == NOT_AUTHORIZED
        bridge_login.close()
        assert not b_side.matching(lambda m: m.payload == b"forged")
        b_side.close()

        # A job over both labs: a-1 gets blocks and holds them unfinished.
        lo, hi = FAR, FAR + 12 * BLOCK
        slow.hold_workers()
        lab_a_results = lab_a.recorder("admin", filters=(topics.NODE_RESULT_FILTER,))
        job = submit(broker, users, lo, hi - 1, keep="counts")
        viewer.wait_for(
            lambda m: m.topic == topics.node_work_assign("a-1"), timeout=60
        )  # the head's lease, through the bridge to lab A
        # Cut lab A off: the kiosk sees its node go stale, lab B's stays live.
        relay.cut()
        until(lambda: model_state(feed, model, "a-1") is NodeState.STALE, "a-1 stale", 30)
        assert model_state(feed, model, "b-1") is NodeState.LIVE
        # a-1 finishes its blocks while cut off: lab A's broker keeps the results for the
        # bridge (a persistent session), the coordinator does not have them yet.
        cut_at = time.time()
        slow.release_workers()
        lab_a_results.wait_for(lambda m: m.at > cut_at, timeout=60)
        lab_a_results.close()
        relay.restore()
        until(lambda: model_state(feed, model, "a-1") is NodeState.LIVE, "a-1 back", 60)
        final = finished(viewer, job, timeout=180)
        assert final.primes == expected_count(lo, hi)
        assert "a-1" in {c.node for c in final.top}  # its results crossed the bridge late
        problems, progress = verify(tmp_path, job)
        assert problems == [] and progress.blocks_done == 12
    finally:
        for agent in agents:
            agent.stop()
        feed.stop()


def test_broker_config_writes_the_lab_side_of_the_bridge(tmp_path, users):
    from tests.conftest import piswarm

    users.add_bridge("lab-a")
    creds = users.credentials_path("lab-a")
    lab_dir = tmp_path / "lab"
    bridge = ["--bridge-to", "head.lab:1884", "--bridge-credentials", str(creds)]
    done = piswarm("broker", "config", "--standalone", "--dir", str(lab_dir), *bridge)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    password = Credentials.load(creds).password
    for line in (
        "connection piswarm-lab-a",
        "address head.lab:1884",
        "remote_username lab-a",
        f"remote_password {password}",
        "cleansession false",
        "topic piswarm/nodes/+/results/+/+ out 1",
        "topic piswarm/nodes/+/work/assign in 1",
        "topic piswarm/nodes/+/life/+/+/+/+ both 1",
    ):
        assert line in text.splitlines(), line
    assert "jobs/submit" not in text  # students submit at the head, as themselves
    # A bad flag is one line naming it.
    for flags, named in (
        (["--bridge-to", "head.lab:99999", "--bridge-credentials", str(creds)], "--bridge-to"),
        (["--bridge-to", "head.lab"], "--bridge-credentials"),
        (["--bridge-credentials", str(creds)], "--bridge-credentials"),
    ):
        bad = piswarm("broker", "config", "--dir", str(lab_dir), *flags)
        assert bad.returncode == 2 and named in bad.stderr.decode(), bad.stderr.decode()
        assert len(bad.stderr.decode().strip().splitlines()) == 1
    # The head's side: the bridge login, listed with its role.
    listed = piswarm("broker", "users", "list", "--dir", str(users.root))
    assert "lab-a" in listed.stdout.decode() and "bridge" in listed.stdout.decode()
    taken = piswarm("broker", "users", "bridge", "node-a", "--dir", str(users.root))
    assert taken.returncode != 0 and "already a node user" in taken.stderr.decode()
