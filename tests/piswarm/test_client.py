"""piswarm.client.MqttClient against a real broker: the one client every process uses."""

import queue
import time

import pytest

from piswarm.client import Message, MqttClient, MqttError, ReadAhead, Will
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from tests.conftest import until
from tests.mqtt_helpers import Recorder


def settings_for(broker, users, name):
    user = users.get(name)
    return BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(user.name, user.password)
    )


def test_it_subscribes_again_after_the_broker_comes_back(broker, users, recorder):
    """What was subscribed, at start and since, is subscribed again at every connect,
    before the owner's on_connect runs (which here publishes, as a birth would)."""
    hooks = []
    client = MqttClient(
        settings_for(broker, users, "admin"),
        role="t",
        subscriptions=[("piswarm/t/start", 1)],
        on_connect=lambda: hooks.append(client.connected.is_set()),
    )
    client.start()  # not chained: the hook may run before an assignment of start()'s result
    admin = recorder("admin", filters=())
    try:
        assert client.connected.wait(10) and client.subscribed.wait(10)
        client.subscribe("piswarm/t/later", timeout=10)
        broker.stop()
        until(lambda: not client.connected.is_set(), "the client seeing the broker go")
        broker.start()
        assert client.connected.wait(60)
        until(client.subscribed.is_set, "the subscriptions answered again")
        admin.wait_connected()
        for leaf in ("start", "later"):
            admin.publish(f"piswarm/t/{leaf}", leaf.encode())
        got = {client.get(10).payload, client.get(10).payload}
        assert got == {b"start", b"later"}
        assert client.stats.connects == 2
        assert hooks == [False, False]  # connected is set after the owner's on_connect
    finally:
        client.stop()
    assert not client.connected.is_set() and not client.running


def test_a_full_inbox_drops_counted_and_logged(broker, users, recorder, caplog):
    client = MqttClient(
        settings_for(broker, users, "admin"), role="t", subscriptions=[("piswarm/t", 1)], inbox=3
    ).start()
    admin = recorder("admin", filters=())
    try:
        assert client.subscribed.wait(10)
        admin.wait_connected()
        for i in range(5):
            admin.publish("piswarm/t", str(i).encode())
        admin.publish("piswarm/t", b"last")
        until(lambda: client.stats.dropped == 3, "the inbox refusing three")
        assert [m.payload for m in client.drain()] == [b"0", b"1", b"2"]
        assert "t: inbox full, 1 messages dropped so far" in caplog.text
    finally:
        client.stop()


def test_a_handler_that_raises_is_counted_and_the_client_goes_on(broker, users, recorder):
    got: queue.Queue[Message] = queue.Queue()
    errors = []

    def handler(message):
        if message.payload == b"boom":
            raise RuntimeError("a bug in the handler")
        got.put(message)

    client = MqttClient(
        settings_for(broker, users, "admin"),
        role="t",
        subscriptions=[("piswarm/t", 1)],
        handler=handler,
        on_error=lambda: errors.append(1),
    ).start()
    admin = recorder("admin", filters=())
    try:
        assert client.subscribed.wait(10)
        admin.wait_connected()
        admin.publish("piswarm/t", b"boom")
        admin.publish("piswarm/t", b"fine", retain=True)
        message = got.get(timeout=10)
        assert message.payload == b"fine" and message.topic == "piswarm/t"
        assert not message.retain  # live, not from the broker's store
        assert client.stats.callback_errors == 1 and errors == [1]
        assert client.inbox.qsize() == 0  # a handler's messages never queue
    finally:
        client.stop()
        admin.publish("piswarm/t", b"", retain=True)


def test_a_publish_the_broker_refuses_is_counted_and_named(broker, users, caplog):
    client = MqttClient(settings_for(broker, users, "node-a"), role="node-a").start()
    try:
        assert client.connected.wait(10)
        client.publish(topics.node_status("node-b"), b"{}", qos=1)
        until(lambda: client.stats.publish_refused == 1, "the broker's refusal")
        assert "broker refused publish to piswarm/nodes/node-b/status" in caplog.text
    finally:
        client.stop()


def test_logins_refused_and_brokers_unreachable_are_clear_errors(broker, users):
    # (Mosquitto grants every subscription and filters by the ACL on delivery, so a
    # refused one is not tested here: the client counts and raises on one all the same.)
    with MqttClient(settings_for(broker, users, "viewer"), role="t") as client:
        client.subscribe("elsewhere/#", timeout=10)
        assert client.stats.subscribe_refused == 0
    assert not client.running
    wrong = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials("viewer", "not-it")
    )
    with pytest.raises(MqttError, match=r"cannot log in to the broker at .*Not author"):
        MqttClient(wrong, role="t").connect(10)
    unused = BrokerSettings(host="127.0.0.1", port=1)  # nobody listens on port 1
    with pytest.raises(MqttError, match=r"cannot reach the broker at 127\.0\.0\.1:1"):
        MqttClient(unused, role="t").connect(10)
    idle = MqttClient(settings_for(broker, users, "viewer"), role="t")
    with pytest.raises(MqttError, match="not connected"):
        idle.subscribe("piswarm/t", timeout=1)


def test_a_clean_stop_says_goodbye_and_a_lost_client_leaves_its_will(broker, users, recorder):
    watch = recorder()
    topic = topics.node_status("node-a")
    client = MqttClient(
        settings_for(broker, users, "node-a"),
        role="node-a",
        will=Will(topic, b'{"will":1}'),
    ).start()
    assert client.connected.wait(10)
    client.stop(goodbye=Will(topic, b'{"bye":1}'))
    watch.wait_for(lambda m: m.topic == topic and m.payload == b'{"bye":1}')
    assert not watch.first(lambda m: m.payload == b'{"will":1}', timeout=0.5)
    client.stop()  # twice is harmless


def test_a_looped_client_backs_off_on_its_own_clock_while_the_broker_is_away(broker, users):
    """A Life strip loops its client from the compute loop: no thread, no real sleeping
    decided by the wall clock, and the subscriptions come back with the broker."""
    now = [100.0]
    naps = []

    def nap(seconds):
        naps.append(seconds)
        now[0] += seconds

    client = MqttClient(
        settings_for(broker, users, "admin"),
        role="strip",
        subscriptions=[("piswarm/t", 0)],
        threaded=False,
        ticks=lambda: now[0],
        sleep=nap,
    ).start()
    admin = None
    try:
        deadline = time.monotonic() + 20
        while not client.subscribed.is_set():
            assert time.monotonic() < deadline
            client.loop(0.05)
        broker.stop()
        deadline = time.monotonic() + 20
        while client.connected.is_set():
            assert time.monotonic() < deadline
            client.loop(0.05)
        naps.clear()
        for _ in range(5):  # down: each turn waits out the back-off on the hand clock
            client.loop(0.25)
        assert naps and all(0 < n <= 0.25 for n in naps)
        broker.start()
        deadline = time.monotonic() + 60
        while not (client.connected.is_set() and client.subscribed.is_set()):
            assert time.monotonic() < deadline, "the looped client never came back"
            client.loop(0.05)
            now[0] += 1.0  # and time passes on the client's clock
        admin = Recorder(broker.port, users.get("admin"), filters=())
        admin.wait_connected()
        admin.publish("piswarm/t", b"back")
        deadline = time.monotonic() + 20
        got = None
        while got is None:
            assert time.monotonic() < deadline
            client.loop(0.05)
            got = client.get(0)
        assert got.payload == b"back" and client.stats.connects == 2
    finally:
        client.stop()
        if admin is not None:
            admin.close()


def test_messages_stop_at_the_deadline_and_publish_wait_needs_a_running_client(broker, users):
    client = MqttClient(settings_for(broker, users, "admin"), role="t")
    with pytest.raises(MqttError, match="stopped, nothing published"):
        client.publish_wait("piswarm/t", b"x", timeout=1)
    with client:
        client.subscribe("piswarm/t", timeout=10)
        client.publish_wait("piswarm/t", b"x", timeout=10)
        assert [m.payload for m in client.messages(10)][:1] == [b"x"]
        assert list(client.messages(10, until=time.monotonic() - 1)) == []


def test_a_pumped_socket_reads_ahead_and_nothing_it_holds_is_left_behind(broker, users, recorder):
    """pump() reads what the kernel holds in one call and serves paho's small reads from
    it: paho's own loop must still take every message so held (it asks the socket's
    pending(), as of an SSL socket), and a reconnect's new socket is read ahead again."""
    got: list[int] = []
    client = MqttClient(
        settings_for(broker, users, "viewer"),
        role="ahead",
        subscriptions=[("piswarm/nodes/+/telemetry", 1)],
        handler=lambda m: got.append(int(m.payload)),
        threaded=False,
        version="3.1.1",
    ).start()
    pub = recorder("node-a", filters=())
    try:
        until(lambda: client.pump(100) >= 0 and client.subscribed.is_set(), "subscribed", 20)
        assert isinstance(client._client.socket(), ReadAhead)
        pub.wait_connected()
        topic = topics.node_telemetry("node-a")
        filler = b" " * 400  # 500 messages of ~420 bytes: several read-ahead chunks
        for i in range(500):
            pub.publish(topic, str(i).encode() + filler, qos=1)
        until(lambda: client.pump(1) >= 0 and len(got) >= 1, "the first message")
        # From here only paho's loop: what the read-ahead holds must not wait for the kernel.
        deadline = time.monotonic() + 20
        while len(got) < 500 and time.monotonic() < deadline:
            client.loop(0.05)
        assert got == list(range(500))
        broker.stop()
        until(lambda: client.pump(10) >= 0 and not client.connected.is_set(), "the loss", 20)
        broker.start()
        until(
            lambda: (
                client.pump(10) >= 0 and client.connected.is_set() and client.subscribed.is_set()
            ),
            "back",
            60,
        )
        assert isinstance(client._client.socket(), ReadAhead)  # the new socket, wrapped
        pub.wait_connected()
        pub.publish(topic, b"500" + filler, qos=1)
        until(lambda: client.pump(10) >= 0 and got[-1] == 500, "a message after the restart", 20)
    finally:
        client.stop()
