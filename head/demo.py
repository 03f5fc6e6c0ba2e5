"""``piswarm demo``: a broker, a simulated fleet and a view of it, on one machine.

:class:`DemoCluster` starts everything in a temporary directory (users, broker state)
that is removed at the end; the view (the kiosk display, or a text summary) runs in the
main thread while it is open. Leaving it stops the fleet first, so every node says
``offline``, then the feed, then the broker. The broker is also tied to this process's
life (PDEATHSIG), so not even a crash leaves it behind.
"""

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from broker.runner import BrokerProcess
from broker.users import VIEWER_USER, UserStore
from head.cluster import ClusterModel
from head.feed import ClusterFeed
from head.summary import render
from node_agent.sim import build_fleet, run_fleet, sim_node_ids
from piswarm.mqtt import BrokerSettings, Credentials

log = logging.getLogger(__name__)


class DemoCluster:
    """Broker + simulated fleet + a viewer feed, for as long as the ``with`` block runs."""

    def __init__(self, *, nodes: int, interval: float, port: int | None = None) -> None:
        self.node_ids = sim_node_ids(nodes)
        self.interval = interval
        self.port = port
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

        agents = build_fleet(
            self.node_ids, settings_for, interval=self.interval, wake=self._wake.set
        )
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
        if self._fleet is not None:
            self._fleet.join()
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
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        for topic, payload, at in cluster.feed.drain():
            model.apply(topic, payload, at)
        show(render(model, clock()) + f"\nbroker 127.0.0.1:{cluster.broker.port} - Ctrl-C stops")
        if not cluster.broker.running:
            log.error("the broker died: %s", cluster.broker.tail_log())
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        stop.wait(refresh)
