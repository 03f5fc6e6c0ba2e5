"""``piswarm demo``: a broker, a simulated fleet, the coordinator and a view, on one machine.

:class:`DemoCluster` starts everything in a temporary directory (users, broker state,
job database) that is removed at the end; the view (the kiosk display, or a text
summary) runs in the main thread while it is open. The simulated nodes do real work: a
prime search over one range after another, sieved in a shared pool of worker processes.
Leaving stops the job loop, the fleet (every node says ``offline``), the coordinator, the
feed, then the broker. The broker and the sieve workers are also tied to this process's
life (PDEATHSIG), so not even a crash leaves them behind.
"""

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from broker.runner import BrokerProcess
from broker.users import ADMIN_USER, VIEWER_USER, UserStore
from head.cluster import ClusterModel
from head.coordinator import Coordinator
from head.feed import ClusterFeed
from head.job_cli import describe
from head.jobclient import JobClient
from head.jobs_view import JobsModel
from head.summary import render
from node_agent.runner import Workers
from node_agent.sim import build_fleet, run_fleet, sim_node_ids
from piswarm.errors import PiswarmError
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from piswarm.protocol.jobs import PrimesRequest

DEMO_SPAN = 10**10  # each demo job: the primes of the next 1e10 numbers, 1000 blocks
DEMO_BLOCK = 10**7

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
    ) -> None:
        self.node_ids = sim_node_ids(nodes)
        self.interval = interval
        self.port = port
        self.span = span
        self.block = block
        self.workers = Workers(workers) if workers else None
        self.coordinator: Coordinator | None = None
        self._coordinator_thread: threading.Thread | None = None
        self._jobs_thread: threading.Thread | None = None
        self.admin: BrokerSettings | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.broker: BrokerProcess | None = None
        self.feed: ClusterFeed | None = None
        self._fleet_stop = threading.Event()
        self._wake = threading.Event()
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

        def settings_for(node_id: str) -> BrokerSettings:
            creds = Credentials.load(store.credentials_path(node_id))
            return BrokerSettings(host="127.0.0.1", port=port, credentials=creds)

        admin = Credentials.load(store.credentials_path(ADMIN_USER))
        self.admin = BrokerSettings(host="127.0.0.1", port=port, credentials=admin)
        self.coordinator = Coordinator(db_path=root / "jobs.sqlite", settings=self.admin)
        self.coordinator.start()
        self._coordinator_thread = threading.Thread(
            target=self.coordinator.run, args=(self._fleet_stop,), name="coordinator"
        )
        self._coordinator_thread.start()
        agents = build_fleet(self.node_ids, settings_for, interval=self.interval,
                             wake=self._wake.set, workers=self.workers)  # fmt: skip
        self._fleet = threading.Thread(
            target=run_fleet, args=(agents, self._fleet_stop, self._wake), name="sim-fleet"
        )
        self._fleet.start()
        self.viewer_credentials = store.credentials_path(VIEWER_USER)
        viewer = Credentials.load(self.viewer_credentials)
        self.feed = ClusterFeed(
            settings=BrokerSettings(host="127.0.0.1", port=port, credentials=viewer),
            client_id="piswarm-demo-view",
        ).start()
        if self.workers is not None:
            self._jobs_thread = threading.Thread(target=self._jobs, name="demo-jobs")
            self._jobs_thread.start()

    def _jobs(self) -> None:
        """One prime search after another, each over the next ``span`` numbers."""
        assert self.admin is not None  # noqa: S101 - set before this thread starts
        start, n = 1, 1
        while not self._fleet_stop.is_set():
            end = start + self.span - 1
            request = PrimesRequest(start=start, end=end, block_size=self.block,
                                    name=f"demo {n}", request_id=f"demo-{n}")  # fmt: skip
            try:
                with JobClient(self.admin) as client:  # one session per job, not per look
                    job = client.request(topics.JOBS_SUBMIT, request, timeout=30).job
                    while job and not self._fleet_stop.wait(2.0):
                        found = client.snapshot(topics.job_status(job))
                        if found and found[0].state != "running":
                            break
            except PiswarmError as exc:
                log.warning("demo job loop: %s", exc)
                self._fleet_stop.wait(5.0)
                continue
            start, n = end + 1, n + 1

    def watch_hint(self) -> str:
        port = self.broker.port if self.broker else "?"
        return (
            f"broker on 127.0.0.1:{port} with {len(self.node_ids)} simulated nodes; watch the "
            f"raw messages: mosquitto_sub -p {port} -u viewer -P <password in "
            f"{self.viewer_credentials}> -v -t 'piswarm/#'"
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._fleet_stop.set()
        self._wake.set()
        for thread in (self._jobs_thread, self._fleet, self._coordinator_thread):
            if thread is not None:
                thread.join()
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
        for topic, payload, at in cluster.feed.drain():
            if topic.startswith(topics.JOBS_PREFIX):
                jobs.apply(topic, payload, at)
            else:
                model.apply(topic, payload, at)
        current = jobs.current()
        job_line = f"\njob {describe(current)}" if current else ""
        show(render(model, clock()) + job_line
             + f"\nbroker 127.0.0.1:{cluster.broker.port} - Ctrl-C stops")  # fmt: skip
        if not cluster.broker.running:
            log.error("the broker died: %s", cluster.broker.tail_log())
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        stop.wait(refresh)
