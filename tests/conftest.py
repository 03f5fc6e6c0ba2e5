"""Fixtures: a real mosquitto with the project's own config, and real agent processes."""

import contextlib
import gc
import json
import os

# Display tests render real frames without a screen; the agent's children inherit these.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from broker.runner import BrokerProcess
from broker.users import UserStore
from piswarm.children import die_with_parent
from piswarm.protocol import topics
from tests.mqtt_helpers import Recorder

NODE_IDS = ["node-a", "node-b", "node-c"]


@pytest.fixture(autouse=True)
def _collect_garbage():
    yield
    gc.collect()


@pytest.fixture
def users(tmp_path) -> UserStore:
    store = UserStore(tmp_path / "users")
    store.add_nodes(NODE_IDS)
    return store


@pytest.fixture
def broker(users, tmp_path):
    """A running mosquitto on a free port; terminated (then killed) afterwards."""
    # Tied to this process: a crashed test run must not leave brokers behind.
    proc = BrokerProcess(users=users, state_dir=tmp_path / "broker", die_with_parent=True)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def recorder(broker, users):
    """A viewer subscribed to piswarm/#, recording everything."""
    made = []

    def make(user="viewer", filters=("piswarm/#",)):
        rec = Recorder(broker.port, users.get(user) if user else None, filters)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.close()


class AgentProcess:
    """``python -m piswarm agent`` as a real child process."""

    def __init__(
        self,
        node_id,
        broker,
        users,
        tmp_path,
        *,
        interval=0.5,
        keepalive=5,
        workers=0,
        backend="numpy",
        cpus=None,
        nice=0,
        session=False,
        env=None,
    ):
        self.node_id = node_id
        self.cpus, self.nice = cpus, nice  # for it, its strips and its sieve workers
        self.session = session  # a process group of its own, to be signalled as a terminal does
        self.env = env
        self.config = tmp_path / f"agent-{node_id}.toml"
        self.config.write_text(
            "[agent]\n"
            f'node_id = "{node_id}"\n'
            f"telemetry_interval = {interval}\n"
            f'lock_dir = "{tmp_path / "locks"}"\n'
            f"workers = {workers}\n"
            f'backend = "{backend}"\n'
            "[broker]\n"
            'host = "127.0.0.1"\n'
            f"port = {broker.port}\n"
            f"keepalive = {keepalive}\n"
            f'credentials = "{users.credentials_path(node_id)}"\n'
        )
        self.log_path = tmp_path / f"agent-{node_id}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen | None = None
        self.workers = workers
        self.held: list[psutil.Process] = []

    def start(self):
        self.proc = spawn(
            ["agent", "--config", str(self.config)],
            self.log_path,
            cpus=self.cpus,
            nice=self.nice,
            session=self.session,
            env=self.env,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=15.0) -> int:
        return self.proc.wait(timeout)

    def hold_workers(self) -> list[psutil.Process]:
        """Freeze the agent's sieve workers (SIGSTOP): every block it is given from now on
        stays unfinished, however fast the sieve, until :meth:`release_workers`. The agent
        starts its workers before it says it is online: call this after that."""
        family = psutil.Process(self.proc.pid).children()
        self.held = [p for p in family if "spawn_main" in " ".join(cmdline(p))]
        assert len(self.held) == self.workers, family
        for worker in self.held:
            worker.suspend()
        return self.held

    def release_workers(self):
        """Let held workers go on (if the agent is dead, they follow it)."""
        for worker in self.held:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.resume()
        self.held = []

    def stop(self):
        self.release_workers()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def until(condition, what, timeout=30.0):
    """Wait for ``condition()`` where nothing signals it (a queue's size, an Event being
    cleared, a counter in another thread): a failure names ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.01)


def cmdline(process: psutil.Process) -> list[str]:
    """A child's command line; empty for one that is gone or a zombie (a short-lived helper:
    ctypes.util.find_library runs ldconfig when the agent looks for libprimesieve)."""
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def minor_faults(pid: int) -> int:
    """The page faults process ``pid`` has taken that needed no disk (fresh memory)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[7])  # field 10, minflt


def spawn(args, log_path, cpus=None, nice=0, session=False, env=None):
    """``python -m piswarm ARGS`` as a child that dies with the test run (on ``cpus``, at
    ``nice``; with ``session``, leading a process group of its own; ``env`` added to
    the environment, from which the test run's own PISWARM_ variables are left out)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PISWARM_")}, **(env or {})}

    def prepare():
        die_with_parent()  # a crashed test run leaves no process behind
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        os.nice(nice)

    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "piswarm", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=prepare,
            start_new_session=session,
        )


@pytest.fixture
def agents(broker, users, tmp_path):
    made = []

    def make(node_id="node-a", **kw) -> AgentProcess:
        agent = AgentProcess(node_id, broker, users, tmp_path, **kw)
        made.append(agent)
        return agent.start()

    yield make
    for agent in made:
        agent.stop()


def status_is(node_id, state, reason=None):
    """Predicate: a status message of ``node_id`` in ``state`` (and ``reason``)."""

    def pred(msg):
        if msg.topic != f"piswarm/nodes/{node_id}/status":
            return False
        body = json.loads(msg.payload)
        return body["state"] == state and (reason is None or body.get("reason") == reason)

    return pred


def telemetry_of(node_id, min_seq=0):
    def pred(msg):
        return (
            msg.topic == f"piswarm/nodes/{node_id}/telemetry"
            and json.loads(msg.payload)["seq"] >= min_seq
        )

    return pred


class CoordinatorProcess:
    def __init__(self, broker, users, tmp_path, recorder, lease=60.0, double_check=0.0):
        """``double_check`` 0 by default: tests that fail a node on purpose must not wait
        for a second node to check a block (the double-checking tests set it)."""
        self.recorder = recorder
        self.args = [
            "head",
            "--no-display",
            "--db",
            str(tmp_path / "jobs.sqlite"),
            "--lease",
            str(lease),
            "--double-check",
            str(double_check),
            "--broker-host",
            "127.0.0.1",
            "--broker-port",
            str(broker.port),
            "--credentials",
            str(users.credentials_path("admin")),
        ]
        self.tmp_path = tmp_path
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.proc = spawn(self.args, self.tmp_path / f"coordinator-{self.starts}.log")
        watcher = self.recorder("admin", filters=(topics.JOBS_COORDINATOR,))
        watcher.wait_for(lambda m: b'"online"' in m.payload, timeout=30)
        watcher.close()
        return self

    def log(self):
        return "".join(p.read_text() for p in sorted(self.tmp_path.glob("coordinator-*.log")))

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def coordinator(broker, users, tmp_path, recorder):
    made = []

    def make(**kw):
        proc = CoordinatorProcess(broker, users, tmp_path, recorder, **kw).start()
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


def piswarm(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "piswarm", *args], capture_output=True, timeout=timeout, check=False
    )


def job_flags(broker, users):
    return [
        "--broker-host",
        "127.0.0.1",
        "--broker-port",
        str(broker.port),
        "--credentials",
        str(users.credentials_path("admin")),
    ]
