"""How every piswarm process talks MQTT: settings, credentials, client, safe callbacks.

All clients are paho-mqtt 2.x with VERSION2 callbacks and MQTT v5 (so a refused publish
comes back as a reason code instead of being dropped silently). paho kills its network
thread when a callback raises, so every callback piswarm installs goes through
:func:`guarded`.
"""

import functools
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from piswarm.errors import ConfigError
from piswarm.tomlfile import config_int, read_toml

log = logging.getLogger(__name__)

P = ParamSpec("P")

DEFAULT_PORT = 1883
DEFAULT_KEEPALIVE = 30


@dataclass(frozen=True)
class Credentials:
    """A broker username and password; the password never appears in ``repr``."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> "Credentials":
        """Read a credentials file written by ``piswarm broker users``."""
        data = read_toml(path, "credentials file")
        username, password = data.get("username"), data.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ConfigError(f"credentials file {path} needs string 'username' and 'password'")
        return cls(username=username, password=password)


@dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    credentials: Credentials | None = None
    keepalive: int = DEFAULT_KEEPALIVE

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("broker host is empty")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"broker port {self.port} is not in 1-65535")
        if not 5 <= self.keepalive <= 3600:
            raise ConfigError(f"broker keepalive {self.keepalive} s is not in 5-3600")

    @classmethod
    def from_sources(
        cls,
        *,
        table: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        host: str | None = None,
        port: int | None = None,
        credentials_file: Path | None = None,
        keepalive: int | None = None,
    ) -> "BrokerSettings":
        """Merge a TOML ``[broker]`` table, then ``PISWARM_*`` environment, then flags.

        Passwords come only from a credentials file or ``PISWARM_MQTT_PASSWORD``, never
        from a flag (which ``ps`` would show).
        """
        table = table or {}
        env = os.environ if env is None else env
        merged_host = host or env.get("PISWARM_BROKER_HOST") or table.get("host") or "localhost"
        merged_port = port or config_int(env.get("PISWARM_BROKER_PORT"), "PISWARM_BROKER_PORT")
        merged_port = merged_port or config_int(table.get("port"), "[broker] port") or DEFAULT_PORT
        merged_keepalive = keepalive or config_int(table.get("keepalive"), "[broker] keepalive")
        cred_path = credentials_file or _path(env.get("PISWARM_CREDENTIALS"))
        cred_path = cred_path or _path(table.get("credentials"))
        creds: Credentials | None = None
        if cred_path is not None:
            creds = Credentials.load(cred_path)
        user, password = env.get("PISWARM_MQTT_USERNAME"), env.get("PISWARM_MQTT_PASSWORD")
        if user and password:
            creds = Credentials(username=user, password=password)
        elif user or password:
            raise ConfigError(
                "set both PISWARM_MQTT_USERNAME and PISWARM_MQTT_PASSWORD, or neither"
            )
        return cls(
            host=str(merged_host),
            port=merged_port,
            credentials=creds,
            keepalive=merged_keepalive or DEFAULT_KEEPALIVE,
        )


def _path(value: object) -> Path | None:
    return Path(str(value)).expanduser() if value else None


class Publish(Protocol):
    """How a part of a process that owns no client publishes (its owner passes one in)."""

    def __call__(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None: ...


def unique_client_id(role: str) -> str:
    """``piswarm-<role>-<16 random hex digits>``: a client id no other user can guess.

    Mosquitto lets any user connect with any client id, and a second connection with an
    id in use takes its session over: the first client is kicked off (and a node's will
    published, releasing its work). In a lab every student holds some credentials, so no
    piswarm client uses a fixed id; what the id used to identify (one agent per node,
    one display per process) piswarm checks otherwise.
    """
    return f"piswarm-{role}-{secrets.token_hex(8)}"


MqttVersion = Literal["5", "3.1.1"]


def new_client(client_id: str, settings: BrokerSettings, version: MqttVersion = "5") -> mqtt.Client:
    """A paho client with piswarm's conventions; connect it with :func:`connect_async`.

    MQTT 5 by default: the broker then says why it refuses a publish (PUBACK 0x87 Not
    authorized) where 3.1.1 drops it without a word. A client that only listens to a
    flood of messages may take 3.1.1: paho builds MQTT 5's properties for every message
    it receives, measured at 35 us a message against 20 us (5,000 telemetry messages a
    second: 17% of a core against 10%)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311,
        reconnect_on_failure=True,
    )
    if settings.credentials is not None:
        client.username_pw_set(settings.credentials.username, settings.credentials.password)
    # Capped exponential backoff: 1, 2, 4, ... 30 s between reconnect attempts.
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    # Queue QoS>0 messages while disconnected, but never without bound.
    client.max_queued_messages_set(1000)
    client.on_socket_open = send_at_once
    return client


def send_at_once(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: turn off Nagle's algorithm on each connection, before
    CONNECT goes out (paho leaves it on; every reconnect opens a new socket).

    With it on, the second of two small publishes in a row waits for the broker's ACK of
    the first, and the broker delays ACKs by up to 40 ms. Measured here: a Life strip's
    down halo, sent right after its up halo, arrived a round late every other round
    (waits of 40-90 ms against 1 ms); a prime job's first blocks went out 43 ms after the
    submit, and its done status 43 ms after the last result. A socket that is not TCP
    (a Unix socket, a test's fake) is left alone; this never raises into paho.
    """
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        log.warning("could not turn off Nagle's algorithm: %s", exc)


def connect_async(client: mqtt.Client, settings: BrokerSettings) -> None:
    """Start connecting in paho's network thread; it retries until the broker answers."""
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive)
    client.loop_start()


_CALLBACKS = (
    "on_connect",
    "on_connect_fail",
    "on_disconnect",
    "on_log",
    "on_message",
    "on_pre_connect",
    "on_publish",
    "on_socket_close",
    "on_socket_open",
    "on_socket_register_write",
    "on_socket_unregister_write",
    "on_subscribe",
    "on_unsubscribe",
)


def end_loop(client: mqtt.Client) -> None:
    """Stop paho's network thread, if any, and close every socket the client still holds.

    ``loop_start()`` (or the first manual ``loop()``) opens a loopback TCP socket pair to
    wake the loop, and paho closes it only in ``Client.__del__``. A client whose callbacks
    are its owner's bound methods sits in a reference cycle, and the cycle collector
    finalises the sockets in any order, often before the client: two descriptors held
    until some later collection, then a ResourceWarning. ``reinitialise()`` is paho's
    public call that closes them (and the connection, if still open); it also drops the
    callbacks, breaking the cycle. Call :meth:`mqtt.Client.disconnect` first for a clean
    goodbye.

    paho-mqtt 2.1.0's ``reinitialise()`` closes the sockets and then fails to start the
    client over (it passes the client id where 2.x takes the callback API version; fixed
    in 2.2.0): there the callbacks are dropped here.
    """
    client.loop_stop()
    try:
        client.reinitialise()
    except ValueError:  # paho-mqtt 2.1.0, after closing the sockets
        for name in _CALLBACKS:
            setattr(client, name, None)


def guarded(
    name: str, on_error: Callable[[], None] | None = None
) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """Wrap a paho callback so an exception is logged and counted, never raised into paho."""

    def wrap(fn: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                fn(*args, **kwargs)
            except Exception:  # boundary: an exception here would kill paho's thread
                log.exception("%s callback failed", name)
                if on_error is not None:
                    on_error()

        return inner

    return wrap


def reason_text(reason_code: Any) -> str:
    """A paho reason code (v5 ``ReasonCode`` or an int) as readable text."""
    return str(getattr(reason_code, "getName", lambda: reason_code)())
