"""``piswarm deploy`` against REAL sshd hosts: fake Pis in network namespaces (see
fakepis.py), a real broker on their bridge, the CLI as the teacher types it."""

import contextlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from broker.runner import BrokerProcess
from broker.users import UserStore
from tests.deploy import fakepis
from tests.deploy.fakepis import FakePiFleet
from tests.mqtt_helpers import Recorder

pytestmark = pytest.mark.skipif(
    fakepis.available() is not None, reason=f"fake Pis: {fakepis.available()}"
)


class Lab:
    """Fake Pis, their broker, their users, an inventory and the teacher's files."""

    def __init__(self, tmp_path, fleet, broker, users):
        self.tmp = tmp_path
        self.fleet = fleet
        self.broker = broker
        self.users = users
        self.known_hosts = tmp_path / "known_hosts"
        self.inventory = tmp_path / "pi_list.txt"
        self.write_inventory([pi.address for pi in fleet.pis])

    def write_inventory(self, addresses, path=None):
        path = path or self.inventory
        path.write_text("".join(f"pi@{a}\n" for a in addresses))
        return path

    def node_id(self, pi):
        return "pi-" + "-".join(pi.address.split(".")[2:])

    def deploy(self, verb, *args, inventory=None, accept_new=True):
        command = [
            sys.executable,
            "-m",
            "piswarm",
            "deploy",
            verb,
            str(inventory or self.inventory),
            "--identity",
            str(self.fleet.client_key),
            "--known-hosts",
            str(self.known_hosts),
            "--json",
            *args,
        ]
        if accept_new:
            command.append("--accept-new")
        if verb == "push":
            command += [
                "--broker-host",
                self.fleet.bridge_address,
                "--broker-port",
                str(self.broker.port),
                "--users-dir",
                str(self.users.root),
                "--workers",
                "1",
                "--wait",
                "60",
            ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "XDG_CACHE_HOME": str(CACHE)},
        )
        try:
            report = json.loads(done.stdout)
        except ValueError:
            raise AssertionError(f"no JSON report: {done.stdout}\n{done.stderr}") from None
        return done.returncode, {h["host"]: h for h in report["hosts"]}, done.stderr

    def agents(self, pi):
        return [p for p in self.fleet.processes(pi) if "node_agent agent" in p]

    def agent_pids(self, pi):
        """The agent's process ids (not helpers that come and go: sshd sessions, ldconfig)."""
        found = set()
        for pid in self.fleet.pids(pi):
            with contextlib.suppress(OSError):
                if b"node_agent\0agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found


CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


@pytest.fixture
def lab(tmp_path):
    # sshd reads authorized_keys as the user 'pi': pytest's tmp (0700, root's) would hide it.
    pis = Path(tempfile.mkdtemp(prefix="piswarm-pis-"))
    pis.chmod(0o755)

    def make(count, system_packages=False):
        fleet = FakePiFleet(
            pis, count, client_key=tmp_path / "id_ed25519", system_packages=system_packages
        )
        stack.append(fleet.__enter__())
        users = UserStore(tmp_path / "users")
        users.add_nodes(["pi-" + "-".join(pi.address.split(".")[2:]) for pi in fleet.pis])
        broker = BrokerProcess(
            users=users,
            state_dir=tmp_path / "broker",
            bind=fleet.bridge_address,
            die_with_parent=True,
        ).start()
        stack.append(broker)
        return Lab(tmp_path, fleet, broker, users)

    stack = []
    yield make
    for item in reversed(stack):
        if isinstance(item, BrokerProcess):
            item.stop()
        else:
            item.__exit__()
    shutil.rmtree(pis, ignore_errors=True)


def test_push_to_ten_pis_runs_every_agent_and_a_second_push_does_nothing(lab):
    lab = lab(10)
    code, hosts, stderr = lab.deploy("push")
    assert code == 0, (hosts, stderr)
    assert {h["outcome"] for h in hosts.values()} == {"deployed"}, hosts
    for pi in lab.fleet.pis:
        assert len(lab.agents(pi)) == 1  # exactly one, outliving the SSH session that started it
        assert (pi.home / ".piswarm" / "credentials.toml").stat().st_mode & 0o777 == 0o600
    pids = {pi.address: lab.agent_pids(pi) for pi in lab.fleet.pis}
    assert all(len(found) == 1 for found in pids.values()), pids
    code, hosts, stderr = lab.deploy("push")
    assert code == 0, (hosts, stderr)
    assert {h["outcome"] for h in hosts.values()} == {"unchanged"}, hosts
    assert {h["detail"] for h in hosts.values()} == {"nothing to do"}
    assert {pi.address: lab.agent_pids(pi) for pi in lab.fleet.pis} == pids  # not restarted


@pytest.mark.skipif(fakepis.system_numpy() is not None, reason=f"{fakepis.system_numpy()}")
def test_pis_with_numpy_of_their_own_get_only_the_wheels_they_lack(lab):
    """Raspberry Pi OS with desktop has numpy 1.24 and psutil in /usr/lib/python3: the
    agent's venv uses them, and only paho-mqtt (Debian's is 1.x) travels."""
    lab = lab(2, system_packages=True)
    code, hosts, stderr = lab.deploy("push")
    assert code == 0, (hosts, stderr)
    for pi in lab.fleet.pis:
        host = hosts[f"pi@{pi.address}"]
        assert host["outcome"] == "deployed" and "venv (system numpy, psutil)" in host["detail"]
        wheels = sorted(p.name for p in (pi.home / ".piswarm" / "wheelhouse").glob("*.whl"))
        assert [w.split("-")[0] for w in wheels] == ["paho_mqtt"]
        venv_python = pi.home / ".piswarm" / "venv" / "bin" / "python"
        where = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                pi.netns,
                "nsenter",
                "--target",
                str(lab.fleet.pids(pi)[0]),
                "--mount",
                str(venv_python),
                "-c",
                "import numpy, psutil, paho.mqtt;"
                "print(numpy.__file__, psutil.__file__, paho.mqtt.__file__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert where[0].startswith(fakepis.DIST_PACKAGES) and where[1].startswith(
            fakepis.DIST_PACKAGES
        )
        assert "/.piswarm/venv" in where[2]  # the wheel pushed into the venv
    code, hosts, stderr = lab.deploy("push")
    assert code == 0 and {h["outcome"] for h in hosts.values()} == {"unchanged"}, stderr


def test_broken_hosts_fail_alone_with_reasons_and_the_failed_list_reruns(lab):
    lab = lab(4)
    stopped, rekeyed = lab.fleet.pis[1], lab.fleet.pis[2]
    code, _hosts, _ = lab.deploy(
        "push", inventory=lab.write_inventory([rekeyed.address], lab.tmp / "first.txt")
    )
    assert code == 0  # rekeyed's key is now known
    lab.fleet.stop_pi(stopped)  # sshd down
    lab.fleet.new_host_key(rekeyed)
    lab.fleet.restart_sshd(rekeyed)
    addresses = [pi.address for pi in lab.fleet.pis] + [lab.fleet.unreachable_address]
    lab.users.add_nodes(["pi-" + "-".join(lab.fleet.unreachable_address.split(".")[2:])])
    lab.write_inventory(addresses)
    code, hosts, stderr = lab.deploy("push", "--timeout", "3")
    assert code == 4, stderr  # partial failure
    outcome = {a: hosts[f"pi@{a}"]["outcome"] for a in addresses}
    assert outcome == {
        lab.fleet.pis[0].address: "deployed",
        stopped.address: "failed",
        rekeyed.address: "failed",
        lab.fleet.pis[3].address: "deployed",
        lab.fleet.unreachable_address: "failed",
    }
    assert "connection refused" in hosts[f"pi@{stopped.address}"]["detail"]
    assert "host key CHANGED" in hosts[f"pi@{rekeyed.address}"]["detail"]
    assert f"piswarm deploy forget {rekeyed.address}" in hosts[f"pi@{rekeyed.address}"]["detail"]
    assert "no route to host" in hosts[f"pi@{lab.fleet.unreachable_address}"]["detail"]
    failed = lab.tmp / "pi_list.txt.failed"
    listed = [x for x in failed.read_text().splitlines() if not x.startswith("#")]
    expected = [
        f"pi@{a}" for a in (stopped.address, rekeyed.address, lab.fleet.unreachable_address)
    ]
    assert sorted(listed) == sorted(expected)
    # Fix them: sshd back, the old key forgotten, the unreachable one dropped; rerun.
    lab.fleet.start_sshd(stopped)
    lab.fleet.wait_listening(stopped)
    forget = subprocess.run(
        [
            sys.executable,
            "-m",
            "piswarm",
            "deploy",
            "forget",
            rekeyed.address,
            "--known-hosts",
            str(lab.known_hosts),
        ],
        capture_output=True,
        text=True,
    )
    assert "1 keys forgotten" in forget.stdout
    retry = lab.write_inventory([stopped.address, rekeyed.address], lab.tmp / "retry.txt")
    code, hosts, stderr = lab.deploy("push", inventory=retry)
    assert code == 0, (hosts, stderr)
    assert {h["outcome"] for h in hosts.values()} == {"deployed"}


def test_an_unknown_host_key_is_refused_unless_accepted(lab):
    lab = lab(1)
    code, hosts, _ = lab.deploy("status", accept_new=False)
    assert code == 5
    (host,) = hosts.values()
    assert "unknown host key" in host["detail"] and "--accept-new" in host["detail"]
    assert not lab.known_hosts.exists()
    code, hosts, stderr = lab.deploy("status")
    assert code == 0, (hosts, stderr)
    (line,) = lab.known_hosts.read_text().splitlines()
    assert line.startswith(f"{lab.fleet.pis[0].address} ssh-ed25519 ")


def test_stop_stops_exactly_the_selected_agent(lab):
    lab = lab(2)
    code, _hosts, stderr = lab.deploy("push")
    assert code == 0, stderr
    one, other = lab.fleet.pis
    assert lab.agents(one) and lab.agents(other)
    code, hosts, _ = lab.deploy(
        "stop", inventory=lab.write_inventory([one.address], lab.tmp / "one.txt")
    )
    assert code == 0 and "stopped True" in hosts[f"pi@{one.address}"]["detail"]
    assert lab.agents(one) == [] and len(lab.agents(other)) == 1
    code, hosts, _ = lab.deploy("status")
    assert "running None" in hosts[f"pi@{one.address}"]["detail"]
    code, hosts, _ = lab.deploy("logs")
    assert all("lines" in h for h in hosts.values())
    assert any("agent" in line for line in hosts[f"pi@{other.address}"]["lines"])
    before = lab.agents(other)
    code, hosts, _ = lab.deploy("restart")
    assert code == 0 and len(lab.agents(one)) == 1 and len(lab.agents(other)) == 1
    assert lab.agents(other) != before or "started True" in hosts[f"pi@{other.address}"]["detail"]
    code, hosts, _ = lab.deploy("uninstall", inventory=lab.tmp / "one.txt")
    assert code == 0 and lab.agents(one) == [] and not (one.home / ".piswarm").exists()
    assert len(lab.agents(other)) == 1


def test_deploy_broker_sets_up_mosquitto_on_the_head_node(lab):
    lab = lab(1)
    head = lab.fleet.pis[0]
    command = [
        sys.executable,
        "-m",
        "piswarm",
        "deploy",
        "broker",
        f"root@{head.address}",
        "--identity",
        str(lab.fleet.client_key),
        "--known-hosts",
        str(lab.known_hosts),
        "--accept-new",
        "--users-dir",
        str(lab.users.root),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "passwd, acl, config, restarted" in done.stdout and "the admin logs in" in done.stdout
    # The head's broker enforces the piswarm ACL: a node writes only its own subtree.
    node = lab.node_id(head)
    rec = Recorder(1883, lab.users.get(node), filters=(), host=head.address)
    try:
        rec.wait_connected()
        assert not rec.publish(f"piswarm/nodes/{node}/telemetry", b"{}").is_failure
        assert rec.publish("piswarm/jobs/submit/viewer", b"{}").value == 0x87  # not authorized
    finally:
        rec.close()
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr
    assert (head.root / "piswarm-etc" / "broker" / "passwd").stat().st_mode & 0o777 == 0o640


def test_push_shows_progress_on_a_terminal(lab):
    lab = lab(2)
    command = [
        sys.executable,
        "-m",
        "piswarm",
        "deploy",
        "push",
        str(lab.inventory),
        "--identity",
        str(lab.fleet.client_key),
        "--known-hosts",
        str(lab.known_hosts),
        "--accept-new",
        "--broker-host",
        lab.fleet.bridge_address,
        "--broker-port",
        str(lab.broker.port),
        "--users-dir",
        str(lab.users.root),
        "--workers",
        "0",
        "--log-level",
        "WARNING",
    ]
    controller, terminal = pty.openpty()  # stderr is a terminal, as for a teacher
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
        timeout=300,
        env={**os.environ, "XDG_CACHE_HOME": str(CACHE)},
    )
    os.close(terminal)
    shown = b""
    while select.select([controller], [], [], 0.1)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert done.returncode == 0, shown.decode(errors="replace")
    assert b"] 1/2 (0 failed)" in shown and b"] 2/2 (0 failed)" in shown
    assert "2 deployed of 2 hosts" in done.stdout
