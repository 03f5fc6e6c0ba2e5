"""A small real cluster for the end-to-end benchmarks: a broker, the coordinator and
agent processes (one worker each), in a temporary directory removed afterwards."""

import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from broker.runner import BrokerProcess
from broker.users import ADMIN_USER, UserStore
from piswarm.children import die_with_parent
from piswarm.mqtt import BrokerSettings, Credentials


@dataclass(frozen=True)
class Cluster:
    root: Path
    broker: BrokerProcess
    nodes: list[str]
    procs: list[subprocess.Popen[bytes]]  # the coordinator, then the agents
    admin: BrokerSettings
    users: UserStore
    extra: list[str]  # node logins with no agent (for clients the benchmark runs itself)

    def node_settings(self, node: str) -> BrokerSettings:
        credentials = Credentials.load(self.users.credentials_path(node))
        return BrokerSettings(host="127.0.0.1", port=self.broker.port, credentials=credentials)

    @property
    def db(self) -> Path:
        return self.root / "jobs.sqlite"


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m piswarm ARGS`` with its output added to ``log``; it dies with this
    process."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "piswarm", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            env=env,
        )


@contextmanager
def bench_cluster(
    agents: int, agent_args: Sequence[str] = (), *, extra: int = 0
) -> Iterator[Cluster]:
    """Broker, coordinator and ``agents`` agents named bench-1, bench-2, ...; and
    ``extra`` more node logins, replay-1, replay-2, ..., with no agent."""
    with tempfile.TemporaryDirectory(prefix="piswarm-bench-") as tmp:
        root = Path(tmp)
        users = UserStore(root / "users")
        nodes = [f"bench-{i}" for i in range(1, agents + 1)]
        more = [f"replay-{i}" for i in range(1, extra + 1)]
        users.add_nodes(nodes + more)
        broker = BrokerProcess(users=users, state_dir=root / "broker", die_with_parent=True)
        broker.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            common = ["--broker-host", "127.0.0.1", "--broker-port", str(broker.port)]
            procs.append(
                spawn(
                    [
                        "head",
                        "--no-display",
                        "--db",
                        str(root / "jobs.sqlite"),
                        *common,
                        "--credentials",
                        str(users.credentials_path(ADMIN_USER)),
                    ],
                    root / "coordinator.log",
                )
            )
            for node in nodes:
                procs.append(
                    spawn(
                        [
                            "agent",
                            "--node-id",
                            node,
                            "--workers",
                            "1",
                            *agent_args,
                            "--lock-dir",
                            str(root / "locks"),
                            "--credentials",
                            str(users.credentials_path(node)),
                            *common,
                        ],
                        root / f"{node}.log",
                    )
                )
            admin = Credentials.load(users.credentials_path(ADMIN_USER))
            settings = BrokerSettings(host="127.0.0.1", port=broker.port, credentials=admin)
            yield Cluster(root, broker, nodes, procs, settings, users, more)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
            broker.stop()
