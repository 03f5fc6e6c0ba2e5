"""``piswarm demo``: the command that shows a whole room on one machine."""

import argparse
import sys
from typing import Any

from head.cli.views import add_display_flags
from head.config import display_options
from piswarm.flags import real, whole
from piswarm.fleet import MAX_SIM_NODES
from piswarm.signals import stop_on_signals


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="broker + simulated fleet + display on this machine")
    demo.add_argument(
        "--nodes", type=whole(1, MAX_SIM_NODES), default=240, help="simulated nodes (default 240)"
    )
    demo.add_argument(
        "--interval", type=real(0.05, 3600, unit=" s"), default=2.0, help="telemetry period (s)"
    )
    demo.add_argument(
        "--port", type=whole(0, 65535), default=0, help="broker port (default: a free one)"
    )
    demo.add_argument(
        "--duration", type=real(0, 10**7, unit=" s"), help="stop after this many seconds"
    )
    demo.add_argument("--text", action="store_true", help="a text summary instead of the display")
    add_display_flags(demo, windowed_default="1280x720")
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from demo.cluster import DemoCluster, text_view
    from head.display.summary import live_printer

    stop = stop_on_signals()
    show = live_printer(sys.stdout.isatty(), sys.stdout.write)
    with DemoCluster(
        nodes=args.nodes, interval=args.interval, port=args.port or None, frames=not args.text
    ) as cluster:
        print(cluster.watch_hint(), flush=True)
        app = None
        if not args.text:
            from head.display.kiosk import build_app

            options = display_options(vars(args), default_size=(1280, 720))
            app = build_app(options, cluster.feed, expected=cluster.node_ids)
            from head.display.app import screen_driver

            if screen_driver() is None:
                print("no screen here for the display: showing a text summary", flush=True)
                app = None
        if app is None:
            text_view(cluster, stop, show, duration=args.duration)
        else:
            import pygame

            try:
                app.run(stop=stop, duration=args.duration)
            except pygame.error as exc:  # no screen here (ssh, a server)
                print(f"no screen for the display ({exc}); a text summary instead", flush=True)
                text_view(cluster, stop, show, duration=args.duration)
    print("demo stopped: fleet offline, broker stopped")
    return 0
