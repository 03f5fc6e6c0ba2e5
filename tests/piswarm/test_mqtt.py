"""piswarm.mqtt: settings from their sources, and callbacks that cannot kill paho."""

import logging
import queue
import threading
from pathlib import Path

import pytest

from piswarm.errors import ConfigError
from piswarm.mqtt import (
    BrokerSettings,
    Credentials,
    connect_async,
    end_loop,
    guarded,
    new_client,
    send_at_once,
)
from tests.mqtt_helpers import Recorder


def test_a_raising_callback_is_logged_and_the_client_keeps_receiving(broker, users, caplog):
    """Unguarded, the first exception would kill paho's network thread for good."""
    got: queue.Queue = queue.Queue()
    errors = []

    def on_message(_c, _u, msg):
        if msg.payload == b"boom":
            raise RuntimeError("handler bug")
        got.put(msg.payload)

    viewer = users.get("viewer")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(viewer.name, viewer.password)
    )
    client = new_client("guarded-test", settings)
    client.on_message = guarded("on_message", lambda: errors.append(1))(on_message)
    subscribed = queue.Queue()
    client.on_connect = lambda c, *_: c.subscribe("piswarm/t", qos=1)
    client.on_subscribe = lambda *_: subscribed.put(True)
    connect_async(client, settings)
    admin = Recorder(broker.port, users.get("admin"), ()).wait_connected()
    try:
        assert subscribed.get(timeout=10)
        with caplog.at_level(logging.ERROR, logger="piswarm.mqtt"):
            admin.publish("piswarm/t", b"boom")
            admin.publish("piswarm/t", b"after")
            assert got.get(timeout=10) == b"after"
        assert errors == [1]
        assert "on_message callback failed" in caplog.text and "handler bug" in caplog.text
    finally:
        admin.close()
        client.disconnect()
        end_loop(client)


def test_settings_validate_themselves():
    with pytest.raises(ConfigError, match="port 0"):
        BrokerSettings(port=0)
    with pytest.raises(ConfigError, match="keepalive 1"):
        BrokerSettings(keepalive=1)
    with pytest.raises(ConfigError, match="not valid TOML"):
        Credentials.load(__import__("pathlib").Path(__file__))  # a .py file is not TOML


def test_every_connection_of_a_client_sends_at_once(broker, users):
    # Nagle's algorithm held the second of two small publishes for the broker's delayed
    # ACK (up to 40 ms); new_client turns it off on each socket it opens, reconnects too.
    import socket as socket_module

    viewer = users.get("viewer")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(viewer.name, viewer.password)
    )
    client = new_client("test-nodelay", settings)
    try:
        for _ in range(2):
            client.connect("127.0.0.1", broker.port)
            sock = client.socket()
            assert sock.getsockopt(socket_module.IPPROTO_TCP, socket_module.TCP_NODELAY) != 0
            client.disconnect()
    finally:
        end_loop(client)
    plain = socket_module.socket(socket_module.AF_UNIX)
    with plain:
        send_at_once(client, None, plain)  # not TCP: left alone, no exception


def _open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


@pytest.mark.parametrize("threaded", [True, False], ids=["loop_start", "manual-loop"])
def test_end_loop_closes_every_socket_the_client_opened(broker, users, threaded):
    """paho keeps a loopback socket pair open after loop_stop(); a cyclic client leaked it.

    The leak surfaced in CI as a ResourceWarning (an error under -W error) in whatever test
    next ran the cycle collector.
    """
    viewer = users.get("viewer")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(viewer.name, viewer.password)
    )
    before = _open_fds()
    client = new_client("test-end-loop", settings)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    if threaded:
        connect_async(client, settings)
        assert connected.wait(10)
    else:
        client.connect(settings.host, settings.port)
        while not connected.is_set():
            client.loop(timeout=0.1)  # the manual loop blocks in select(): no busy wait
    assert _open_fds() >= before + 3  # the connection and the wake-up pair
    client.disconnect()
    end_loop(client)
    assert _open_fds() == before
