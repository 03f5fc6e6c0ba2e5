"""``piswarm demo``: a broker, a simulated fleet and a live view, on one machine.

Everything lives in a temporary directory (users, broker state) that is removed at the
end. Ctrl-C (or SIGTERM) stops the fleet first, so every node says ``offline``, then the
view, then the broker; the broker is also tied to this process's life (PDEATHSIG) so not
even a crash leaves it behind.
"""

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from broker.runner import BrokerProcess
from broker.users import VIEWER_USER, UserStore
from head.cluster import ClusterModel
from head.feed import ClusterFeed
from head.summary import render
from node_agent.sim import build_fleet, run_fleet, sim_node_ids
from piswarm.mqtt import BrokerSettings, Credentials

log = logging.getLogger(__name__)


def run_demo(
    *,
    nodes: int,
    interval: float,
    stop: threading.Event,
    show: Callable[[str], None],
    port: int | None = None,
    refresh: float = 2.0,
    duration: float | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Run until ``stop`` is set (or ``duration`` seconds pass)."""
    with tempfile.TemporaryDirectory(prefix="piswarm-demo-") as tmp:
        root = Path(tmp)
        store = UserStore(root / "users")
        node_ids = sim_node_ids(nodes)
        store.add_nodes(node_ids)
        broker = BrokerProcess(
            users=store, state_dir=root / "broker", port=port, die_with_parent=True
        )
        broker.start()
        wake = threading.Event()
        fleet_stop = threading.Event()
        feed: ClusterFeed | None = None
        fleet_thread: threading.Thread | None = None
        try:
            show(
                f"broker on 127.0.0.1:{broker.port}; starting {nodes} simulated nodes ...\n"
                f"watch the raw messages: mosquitto_sub -p {broker.port} -u viewer -P <password"
                f" in {store.credentials_path(VIEWER_USER)}> -v -t 'piswarm/#'"
            )

            def settings_for(node_id: str) -> BrokerSettings:
                creds = Credentials.load(store.credentials_path(node_id))
                return BrokerSettings(host="127.0.0.1", port=broker.port, credentials=creds)

            agents = build_fleet(node_ids, settings_for, interval=interval, wake=wake.set)
            fleet_thread = threading.Thread(
                target=run_fleet, args=(agents, fleet_stop, wake), name="sim-fleet"
            )
            fleet_thread.start()
            viewer = Credentials.load(store.credentials_path(VIEWER_USER))
            feed = ClusterFeed(
                settings=BrokerSettings(host="127.0.0.1", port=broker.port, credentials=viewer),
                client_id="piswarm-demo-view",
            ).start()
            model = ClusterModel(expected=node_ids)
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.is_set():
                for topic, payload, at in feed.drain():
                    model.apply(topic, payload, at)
                show(render(model, clock()) + f"\nbroker 127.0.0.1:{broker.port} - Ctrl-C stops")
                if not broker.running:
                    log.error("the broker died: %s", broker.tail_log())
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(refresh)
        finally:
            fleet_stop.set()
            wake.set()
            if fleet_thread is not None:
                fleet_thread.join()
            if feed is not None:
                feed.stop()
            broker.stop()
            show("demo stopped: fleet offline, broker stopped")
