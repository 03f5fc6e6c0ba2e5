"""``piswarm demo``: a broker, a simulated fleet, the coordinator and a view, on one machine.

:class:`DemoCluster` starts everything in a temporary directory (users, broker state,
job database) that is removed at the end; the view (the kiosk display, or a text
summary) runs in the main thread while it is open. The simulated nodes do real work: a
prime search over one range after another, sieved in a shared pool of worker processes,
and beside it a Game of Life after another (a soup, the Gosper gun, the acorn, the
breeder), computed in strips by the first few nodes and paced for people to watch.
Leaving stops the job loop, the fleet (every node says ``offline``), the coordinator, the
feed, then the broker. The broker and the sieve workers are also tied to this process's
life (PDEATHSIG), so not even a crash leaves them behind.
"""

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from broker.runner import BrokerProcess
from broker.users import ADMIN_USER, VIEWER_USER, UserStore
from head.cli.jobs import describe
from head.coordinator.router import Coordinator
from head.display.cluster import ClusterModel
from head.display.feed import DEFAULT_FILTERS, DISPLAY_FILTERS, ClusterFeed
from head.display.jobs_view import JobsModel
from head.display.summary import render
from head.jobclient import JobClient
from head.patterns import read_pattern
from node_agent.agent import Agent
from node_agent.runner import Workers
from node_agent.sim_fleet import FleetSpec, SimFleet
from piswarm.errors import PiswarmError
from piswarm.fleet import sim_node_ids
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from piswarm.protocol.jobs import PrimesRequest
from piswarm.protocol.life import LifeRequest

DEMO_SPAN = 10**10  # each demo job: the primes of the next 1e10 numbers, 1000 blocks
DEMO_BLOCK = 10**7
LIFE_NODES = 3  # nodes that run a Life strip each (a process each: 3 fit on 2 cores)
LIFE_PACE = 60.0  # generations a second: fast, but gliders can still be followed


def life_showcase(n: int) -> LifeRequest:
    """The ``n``-th Life job of the demo (they take turns)."""
    match n % 4:
        case 1:
            base = LifeRequest(width=1024, height=576, gens=3600, density=0.3, seed=n)
        case 2:
            gun = read_pattern("gosper-glider-gun")[0]
            base = LifeRequest(
                width=384, height=216, gens=2400, wrap="dead", pattern=gun, x=20, y=20
            )
        case 3:
            acorn = read_pattern("acorn")[0]
            base = LifeRequest(width=1024, height=576, gens=5200, pattern=acorn)
        case _:
            breeder = read_pattern("breeder1")[0]
            base = LifeRequest(
                width=1024, height=576, gens=3000, wrap="dead", pattern=breeder, x=30, y=120
            )
    return replace(base, pace=LIFE_PACE, halo=4, name=f"demo {n}", request_id=f"demo-life-{n}")


log = logging.getLogger(__name__)


class DemoCluster:
    """Broker + simulated fleet + a viewer feed, for as long as the ``with`` block runs."""

    def __init__(
        self,
        *,
        nodes: int,
        interval: float,
        port: int | None = None,
        workers: int = 1,
        span: int = DEMO_SPAN,
        block: int = DEMO_BLOCK,
        life_nodes: int = LIFE_NODES,
        frames: bool = True,
    ) -> None:
        self.node_ids = sim_node_ids(nodes)
        self.interval = interval
        self.port = port
        self.span = span
        self.block = block
        self.life_nodes = min(life_nodes, nodes) if workers else 0
        self.frames = frames
        self.workers = Workers(workers) if workers else None
        self.coordinator: Coordinator | None = None
        self._coordinator_thread: threading.Thread | None = None
        self._jobs_thread: threading.Thread | None = None
        self._life_thread: threading.Thread | None = None
        self._life_agents: list[Agent] = []
        self.admin: BrokerSettings | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.broker: BrokerProcess | None = None
        self.feed: ClusterFeed | None = None
        self._fleet_stop = threading.Event()
        self._wake = threading.Event()
        self.fleet: SimFleet | None = None
        self._fleet: threading.Thread | None = None
        self.viewer_credentials: Path | None = None

    def __enter__(self) -> "DemoCluster":
        self._tmp = tempfile.TemporaryDirectory(prefix="piswarm-demo-")
        try:
            self._start(Path(self._tmp.name))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self, root: Path) -> None:
        store = UserStore(root / "users")
        store.add_nodes(self.node_ids)
        self.broker = BrokerProcess(
            users=store, state_dir=root / "broker", port=self.port, die_with_parent=True
        ).start()
        port = self.broker.port

        admin = Credentials.load(store.credentials_path(ADMIN_USER))
        self.admin = BrokerSettings(host="127.0.0.1", port=port, credentials=admin)
        self.coordinator = Coordinator(db_path=root / "jobs.sqlite", settings=self.admin)
        self.coordinator.start()
        self._coordinator_thread = threading.Thread(
            target=self.coordinator.run, args=(self._fleet_stop,), name="coordinator"
        )
        self._coordinator_thread.start()
        spec = FleetSpec(users_dir=store.root, host="127.0.0.1", port=port, interval=self.interval)
        self.fleet = SimFleet(
            self.node_ids,
            spec,
            workers=self.workers,
            life_nodes=self.life_nodes,
            stop=self._fleet_stop,
            wake=self._wake,
        ).start()
        self._life_agents = self.fleet.agents[: self.life_nodes]
        self._fleet = threading.Thread(target=self.fleet.run, name="sim-fleet-watch")
        self._fleet.start()
        self.viewer_credentials = store.credentials_path(VIEWER_USER)
        viewer = Credentials.load(self.viewer_credentials)
        self.feed = ClusterFeed(
            settings=BrokerSettings(host="127.0.0.1", port=port, credentials=viewer),
            role="demo-view",
            filters=DISPLAY_FILTERS if self.frames else DEFAULT_FILTERS,
        ).start()
        if self.workers is not None:
            self._jobs_thread = threading.Thread(target=self._jobs, name="demo-jobs")
            self._jobs_thread.start()
        if self.life_nodes:
            self._life_thread = threading.Thread(target=self._life_jobs, name="demo-life")
            self._life_thread.start()

    def _jobs(self) -> None:
        """One prime search after another, each over the next ``span`` numbers."""
        start, n = 1, 1
        while not self._fleet_stop.is_set():
            end = start + self.span - 1
            request = PrimesRequest(
                start=start,
                end=end,
                block_size=self.block,
                name=f"demo {n}",
                request_id=f"demo-{n}",
            )
            if self._run_job(request):
                start, n = end + 1, n + 1

    def _life_jobs(self) -> None:
        """One Life job after another, once the Life nodes are up (so all of them take part)."""
        for agent in self._life_agents:
            while not agent.connected.wait(0.5):
                if self._fleet_stop.is_set():
                    return
        if self._fleet_stop.wait(1.0):  # their births reach the coordinator
            return
        n = 1
        while not self._fleet_stop.is_set():
            if self._run_job(life_showcase(n)):
                n += 1

    def _run_job(self, request: PrimesRequest | LifeRequest) -> bool:
        """Submit ``request`` and wait until it ends (or the demo does); False on trouble."""
        assert self.admin is not None  # noqa: S101 - set before the job threads start
        try:
            with JobClient(self.admin) as client:  # one session per job, not per look
                job = client.submit(request, timeout=30).job
                while job and not self._fleet_stop.wait(2.0):
                    found = client.snapshot(topics.job_status(job))
                    if found and found[0].state != "running":
                        break
        except PiswarmError as exc:
            log.warning("demo job loop: %s", exc)
            self._fleet_stop.wait(5.0)
            return False
        return True

    def watch_hint(self) -> str:
        port = self.broker.port if self.broker else "?"
        return (
            f"broker on 127.0.0.1:{port} with {len(self.node_ids)} simulated nodes; watch the "
            f"raw messages: mosquitto_sub -p {port} -u viewer -P <password in "
            f"{self.viewer_credentials}> -v -t '{topics.ALL_FILTER}'"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fleet_stop.set()
        self._wake.set()
        for thread in (self._jobs_thread, self._life_thread, self._fleet, self._coordinator_thread):
            if thread is not None:
                thread.join()
        if self.fleet is not None:
            self.fleet.stop()
        if self.coordinator is not None:
            self.coordinator.close()
        if self.workers is not None:
            self.workers.shutdown()
        if self.feed is not None:
            self.feed.stop()
        if self.broker is not None:
            self.broker.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def text_view(
    cluster: DemoCluster,
    stop: threading.Event,
    show: Callable[[str], None],
    *,
    refresh: float = 2.0,
    duration: float | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Print the cluster summary every ``refresh`` seconds until ``stop`` or ``duration``."""
    assert cluster.feed is not None and cluster.broker is not None  # noqa: S101 - entered
    model = ClusterModel(expected=cluster.node_ids)
    jobs = JobsModel()
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        for topic, payload, at, _retained in cluster.feed.drain():
            if topic.startswith(topics.JOBS_PREFIX):
                jobs.apply(topic, payload, at)
            elif not topics.is_life_strip_topic(topic):  # frames are for the display
                model.apply(topic, payload, at)
        shown = (jobs.current(), jobs.current_life())
        job_line = "".join(f"\njob {describe(status)}" for status in shown if status)
        show(
            render(model, clock())
            + job_line
            + f"\nbroker 127.0.0.1:{cluster.broker.port} - Ctrl-C stops"
        )
        if not cluster.broker.running:
            log.error("the broker died: %s", cluster.broker.tail_log())
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        stop.wait(refresh)
