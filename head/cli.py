"""``piswarm status``, ``piswarm demo``, and the head node's ``head`` / ``display``."""

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from piswarm.cli import not_yet


def register(sub: Any) -> None:
    from node_agent.cli import add_broker_flags

    status = sub.add_parser("status", help="print every node's state from the broker")
    add_broker_flags(status)
    status.add_argument("--credentials", type=Path, help="credentials file (default: viewer)")
    status.add_argument(
        "--wait", type=float, default=2.0, help="seconds to listen for the fleet (default 2)"
    )
    status.set_defaults(handler=run_status)

    demo = sub.add_parser("demo", help="broker + simulated fleet + live view on this machine")
    demo.add_argument("--nodes", type=int, default=240, help="simulated nodes (default 240)")
    demo.add_argument("--interval", type=float, default=2.0, help="telemetry period (s)")
    demo.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.set_defaults(handler=run_demo)

    head = sub.add_parser("head", help="coordinator and display: not yet available")
    head.set_defaults(handler=not_yet("piswarm head", "the prime search issue"))
    display = sub.add_parser("display", help="pygame kiosk: not yet available")
    display.set_defaults(handler=not_yet("piswarm display", "the head display issue"))


def run_status(args: argparse.Namespace) -> int:
    from head.cluster import ClusterModel
    from head.feed import ClusterFeed
    from head.summary import table
    from piswarm import paths
    from piswarm.errors import PiswarmError
    from piswarm.mqtt import BrokerSettings

    creds = args.credentials
    viewer = paths.broker_users_dir() / "credentials" / "viewer.toml"
    if creds is None and viewer.exists():
        creds = viewer
    settings = BrokerSettings.from_sources(
        host=args.broker_host, port=args.broker_port, credentials_file=creds
    )
    feed = ClusterFeed(settings=settings, client_id=f"piswarm-status-{time.time_ns() % 10**9}")
    feed.start()
    try:
        if not feed.connected.wait(min(args.wait + 3.0, 10.0)):
            why = feed.refused or "no answer"
            raise PiswarmError(f"cannot reach the broker at {settings.host}:{settings.port}: {why}")
        time.sleep(args.wait)
    finally:
        feed.stop()
    model = ClusterModel()
    for topic, payload, at in feed.drain():
        model.apply(topic, payload, at)
    print(table(model, time.time()))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from head.demo import run_demo as demo
    from head.summary import live_printer
    from piswarm.errors import ConfigError

    if not 1 <= args.nodes <= 5000:
        raise ConfigError(f"--nodes {args.nodes} is not in 1-5000")
    if not 0.05 <= args.interval <= 3600:
        raise ConfigError(f"--interval {args.interval} is not in 0.05-3600 s")
    stop = threading.Event()

    def handle(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    demo(
        nodes=args.nodes,
        interval=args.interval,
        port=args.port or None,
        stop=stop,
        duration=args.duration,
        show=live_printer(sys.stdout.isatty(), sys.stdout.write),
    )
    return 0
