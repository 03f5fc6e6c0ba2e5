"""Agent configuration: a TOML file, then ``PISWARM_*`` environment, then flags.

Example ``~/.config/piswarm/agent.toml`` (``piswarm deploy`` writes one per node)::

    [agent]
    node_id = "pi-04-1"          # default: this host's name
    telemetry_interval = 5.0     # seconds
    workers = 3                  # sieve processes (default: cores - 1, at least 1; 0: no work)
    backend = "auto"             # auto | numpy | primesieve (libprimesieve11 when installed)
    lock_dir = "/run/piswarm"    # default: ~/.local/state/piswarm

    [broker]
    host = "head.lab"
    port = 1883
    keepalive = 30
    credentials = "~/.config/piswarm/credentials.toml"   # written by 'piswarm broker users'

Environment: ``PISWARM_CONFIG`` (the file), ``PISWARM_NODE_ID``,
``PISWARM_TELEMETRY_INTERVAL``, ``PISWARM_WORKERS``, ``PISWARM_BACKEND``,
``PISWARM_BROKER_HOST``, ``PISWARM_BROKER_PORT``, ``PISWARM_CREDENTIALS``,
``PISWARM_MQTT_USERNAME`` + ``PISWARM_MQTT_PASSWORD``.
"""

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, get_args

from piswarm import paths
from piswarm.errors import ConfigError
from piswarm.fleet import MAX_WORKERS
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, topics
from piswarm.sieve_backends import BackendName
from piswarm.tomlfile import config_float, config_int, read_toml


def default_workers() -> int:
    """One core for the agent and the system, the rest sieve: cores - 1, at least 1."""
    return max(1, (os.cpu_count() or 1) - 1)


def default_node_id() -> str:
    """This host's name, lower-cased, without its domain."""
    return socket.gethostname().split(".")[0].lower()


@dataclass(frozen=True)
class AgentConfig:
    node_id: str
    broker: BrokerSettings
    telemetry_interval: float = 5.0
    lock_dir: Path = field(default_factory=paths.state_home)
    thermal_root: Path = Path("/sys/class/thermal")
    vcgencmd: str = "vcgencmd"
    workers: int = field(default_factory=default_workers)
    backend: BackendName = "auto"
    build: str = ""  # set by 'piswarm deploy': the code's content hash, part of the version
    fault: str = ""  # tests only: PISWARM_TEST_FAULT (see node_agent.runner.FAULTS)

    def __post_init__(self) -> None:
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ConfigError(
                f"workers {self.workers} is not in 0-{MAX_WORKERS} (0: telemetry only)"
            )
        if len(self.build) > 16 or (not self.build.replace("-", "").isalnum() and self.build):
            raise ConfigError(f"build {self.build!r}: up to 16 letters and digits")
        if self.backend not in get_args(BackendName):
            raise ConfigError(
                f"backend {self.backend!r} is not one of {', '.join(get_args(BackendName))}"
            )
        try:
            topics.validate_node_id(self.node_id)
        except ProtocolError as exc:
            raise ConfigError(f"{exc} (set node_id in the config or PISWARM_NODE_ID)") from None
        if not 0.05 <= self.telemetry_interval <= 3600:
            raise ConfigError(f"telemetry_interval {self.telemetry_interval} s is not in 0.05-3600")


def _table(data: Mapping[str, Any], name: str, path: Path | None) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def load_agent_config(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    node_id: str | None = None,
    telemetry_interval: float | None = None,
    lock_dir: Path | None = None,
    broker_host: str | None = None,
    broker_port: int | None = None,
    credentials_file: Path | None = None,
    workers: int | None = None,
    backend: str | None = None,
) -> AgentConfig:
    """Merge file < environment < flags (the keyword arguments) into an AgentConfig."""
    env = os.environ if env is None else env
    path = config_file or (Path(env["PISWARM_CONFIG"]) if env.get("PISWARM_CONFIG") else None)
    if path is None and (paths.config_home(env) / "agent.toml").is_file():
        path = paths.config_home(env) / "agent.toml"
    data = read_toml(path) if path else {}
    agent = _table(data, "agent", path)
    broker = BrokerSettings.from_sources(
        table=_table(data, "broker", path),
        env=env,
        host=broker_host,
        port=broker_port,
        credentials_file=credentials_file,
    )
    interval = telemetry_interval or config_float(
        env.get("PISWARM_TELEMETRY_INTERVAL"), "PISWARM_TELEMETRY_INTERVAL"
    )
    interval = interval or config_float(
        agent.get("telemetry_interval"), "[agent] telemetry_interval"
    )
    if workers is None:
        workers = config_int(env.get("PISWARM_WORKERS"), "PISWARM_WORKERS")
    if workers is None:
        workers = config_int(agent.get("workers"), "[agent] workers")
    backend = backend or env.get("PISWARM_BACKEND") or agent.get("backend") or "auto"
    lock = lock_dir or (Path(agent["lock_dir"]).expanduser() if agent.get("lock_dir") else None)
    return AgentConfig(
        node_id=node_id or env.get("PISWARM_NODE_ID") or agent.get("node_id") or default_node_id(),
        broker=broker,
        telemetry_interval=interval or 5.0,
        lock_dir=lock or paths.state_home(env),
        thermal_root=Path(agent.get("thermal_root", "/sys/class/thermal")),
        vcgencmd=str(agent.get("vcgencmd", "vcgencmd")),
        workers=default_workers() if workers is None else workers,
        backend=cast(BackendName, str(backend)),
        build=str(agent.get("build", "")),
        fault=_fault(env.get(FAULT_ENV, "")),
    )


FAULT_ENV = "PISWARM_TEST_FAULT"
"""A switch for tests only, read from the agent's environment alone (no file, no flag, and
nothing on MQTT can set it): ``drop-prime`` leaves one prime out of every block the node
computes, a node that lies, which double-checking must catch."""
FAULTS = frozenset({"", "drop-prime"})


def _fault(value: str) -> str:
    if value not in FAULTS:
        raise ConfigError(f"{FAULT_ENV}={value!r}: unknown (known: drop-prime)")
    return value
