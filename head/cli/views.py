"""``piswarm status``, ``piswarm display`` and ``piswarm head``."""

import argparse
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from head.config import (
    PALETTES,
    DisplayOptions,
    HeadFile,
    broker_settings,
    display_options,
    load_head_config,
)
from head.display.kiosk import build_app
from piswarm.flags import add_broker_flags, directory, new_file, real, whole
from piswarm.mqtt import BrokerSettings
from piswarm.protocol.jobs import DEFAULT_DOUBLE_CHECK
from piswarm.protocol.topics import HEALTH_FILTER
from piswarm.signals import stop_on_signals

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    """``1280x720`` as (width, height), within what a display may be."""
    try:
        w, h = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720") from None
    if not (160 <= w <= 10000 and 120 <= h <= 10000):
        raise argparse.ArgumentTypeError(f"{text!r}: width 160-10000, height 120-10000")
    return w, h


def add_display_flags(parser: argparse.ArgumentParser, *, windowed_default: str | None) -> None:
    """The kiosk's flags. None of them has a default here: a flag not given leaves the
    say to the head's file (``[display]``, see head/config.py), then the defaults."""
    view = parser.add_argument_group("display")
    view.add_argument(
        "--windowed",
        type=_size,
        metavar="WxH",
        help="a window of this size instead of fullscreen"
        + (f" (default {windowed_default})" if windowed_default else ""),
    )
    view.add_argument(
        "--kiosk", action="store_true", default=None, help="fullscreen, no mouse, rotate scenes"
    )
    view.add_argument(
        "--rotate", type=real(1, 86_400, unit=" s"), help="seconds per scene in kiosk (default 20)"
    )
    view.add_argument(
        "--palette",
        choices=PALETTES,
        help="temperature colours; cividis is colour-blind safe (default classic)",
    )
    view.add_argument("--layout", type=Path, help="room layout TOML (see head/display/layout.py)")
    view.add_argument("--rows", type=whole(0, 100), help="grid rows (default: fit the fleet)")
    view.add_argument("--columns", type=whole(0, 100), help="grid columns")
    view.add_argument("--fps", type=whole(1, 240), help="frame rate cap (default 60)")
    view.add_argument(
        "--screenshot-dir", type=directory, help="where the S key saves PNGs (default: here)"
    )


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="the head's settings (default $PISWARM_HEAD_CONFIG or ~/.config/piswarm/head.toml)",
    )


def register(sub: Any) -> None:

    status = sub.add_parser("status", help="print every node's state from the broker")
    add_broker_flags(status)
    status.add_argument("--credentials", type=Path, help="credentials file (default: viewer)")
    status.add_argument(
        "--wait",
        type=real(0, 3600, unit=" s"),
        default=30.0,
        help="the most seconds to wait for telemetry: each online node's "
        "next report, one period of it (default 30)",
    )
    status.add_argument(
        "--health",
        action="store_true",
        help="instead: each process's counters of malformed, refused and "
        f"dropped messages and internal errors ({HEALTH_FILTER})",
    )
    status.set_defaults(handler=run_status)

    display = sub.add_parser("display", help="the pygame kiosk display of the cluster")
    add_broker_flags(display)
    display.add_argument("--credentials", type=Path, help="credentials file (default: viewer)")
    _config_flag(display)
    add_display_flags(display, windowed_default=None)
    display.add_argument(
        "--screenshot",
        type=new_file,
        metavar="PNG",
        help="render headless, save one frame here and exit",
    )
    display.add_argument(
        "--after",
        type=real(0, 3600, unit=" s"),
        default=3.0,
        help="seconds to listen before --screenshot (default 3)",
    )
    display.set_defaults(handler=run_display)

    head = sub.add_parser("head", help="the head node: the job coordinator and the display")
    add_broker_flags(head)
    head.add_argument("--credentials", type=Path, help="credentials file (default: admin)")
    _config_flag(head)
    head.add_argument("--no-display", action="store_true", help="run the coordinator alone")
    head.add_argument(
        "--db",
        type=Path,
        help="job database (default $PISWARM_JOBS_DB, [head] db, "
        "or ~/.local/state/piswarm/jobs.sqlite)",
    )
    head.add_argument(
        "--lease",
        type=real(1, 86_400, unit=" s"),
        help="seconds a node has for a block, then it is reissued (default 60)",
    )
    head.add_argument(
        "--double-check",
        type=real(0, 1),
        metavar="FRACTION",
        help="blocks computed again by another node and compared, for jobs "
        f"that do not say (default {DEFAULT_DOUBLE_CHECK:g}; 0: none)",
    )
    add_display_flags(head, windowed_default=None)
    head.set_defaults(handler=run_head, screenshot=None, after=3.0)


def run_status(args: argparse.Namespace) -> int:
    from head.display.cluster import ClusterModel
    from head.display.summary import table
    from head.session import Session
    from piswarm.protocol import ProtocolError, topics

    if args.health:
        return _print_health(args)
    model = ClusterModel()
    with Session(broker_settings(vars(args), "viewer"), role="status") as session:
        retained = session.retained(topics.NODE_STATUS_FILTER, topics.NODE_TELEMETRY_FILTER)
        for topic, payload in retained:
            model.apply(topic, payload, time.time())
        # Telemetry is not retained: wait for each online node's next report (one of its
        # periods), but no longer than --wait.
        waiting = {view.node_id: view.interval for view in model.nodes() if view.online}
        limit = min(args.wait, max(waiting.values(), default=0.0) + 1.0)
        deadline = time.monotonic() + limit
        for topic, payload in session.messages(limit, until=deadline):
            model.apply(topic, payload, time.time())
            try:
                node, leaf = topics.parse_node_topic(topic)
            except ProtocolError:
                continue
            if leaf == "telemetry":
                waiting.pop(node, None)
            if not waiting:
                break
    print(table(model, time.time()))
    return 0


def _print_health(args: argparse.Namespace) -> int:
    """Every process's retained health counters (none have to be waited for)."""
    from head.display.summary import health_table
    from head.session import Session
    from piswarm.protocol import ProtocolError, topics
    from piswarm.protocol.health import decode_health

    found = []
    with Session(broker_settings(vars(args), "viewer"), role="status") as session:
        for topic, payload in session.retained(topics.HEALTH_FILTER):
            try:
                health = decode_health(payload)
                if topics.health(health.name) != topic:
                    raise ProtocolError(f"counters of {health.name} on another's topic")
            except ProtocolError as exc:
                log.warning("ignored malformed message on %s: %s", topic, exc)
                continue
            found.append(health)
    print(health_table(found, time.time()))
    return 0


def _show(
    options: DisplayOptions,
    settings: BrokerSettings,
    stop: threading.Event,
    *,
    screenshot: Path | None = None,
    after: float = 3.0,
) -> int:
    from head.display.feed import DISPLAY_FILTERS, ClusterFeed
    from piswarm.errors import PiswarmError

    if screenshot is not None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: no screen needed
        options = options.for_screenshot()
    feed = ClusterFeed(settings=settings, role="display", filters=DISPLAY_FILTERS)
    app = build_app(options, feed)
    from head.display.app import screen_driver

    if screen_driver() is None:
        raise PiswarmError(
            "no screen to show the display on (no X, Wayland or console): run it on the "
            "head node's screen, or save a frame with --screenshot out.png"
        )
    feed.start()
    try:
        if screenshot is not None:
            app.run(stop=stop, duration=after, screenshot=screenshot)
            print(f"saved {screenshot}")
        else:
            app.run(stop=stop)
    finally:
        feed.stop()
    return 0


def run_display(args: argparse.Namespace) -> int:
    flags = vars(args)
    file = HeadFile.find(args.config, os.environ)
    options = display_options(flags, file=file)
    settings = broker_settings(flags, "viewer", file=file)
    return _show(options, settings, stop_on_signals(), screenshot=args.screenshot, after=args.after)


def run_head(args: argparse.Namespace) -> int:
    from head.coordinator.router import Coordinator
    from piswarm.errors import PiswarmError
    from piswarm.heap import keep_heap_memory
    from piswarm.lock import PidLock

    file = HeadFile.find(args.config, os.environ)
    config = load_head_config(vars(args), file=file)
    db, settings = config.db, config.broker
    db.parent.mkdir(parents=True, exist_ok=True)
    keep_heap_memory()  # each result's buffers are the size of the last one's
    with PidLock(db.parent, db.stem, role="coordinator"):
        coordinator = Coordinator(
            db_path=db,
            settings=settings,
            lease_seconds=config.lease_seconds,
            double_check=config.double_check,
        )
        stop = stop_on_signals()
        coordinator.start()
        log.info("coordinator: jobs in %s, broker %s:%d", db, settings.host, settings.port)
        try:
            if config.display is None:
                coordinator.run(stop)
            else:
                worker = threading.Thread(target=coordinator.run, args=(stop,), name="coordinator")
                worker.start()
                try:
                    viewer = broker_settings(vars(args), "viewer", file=file)
                    _show(config.display, viewer, stop)
                finally:
                    stop.set()
                    worker.join()
        finally:
            coordinator.close()
        if coordinator.fatal:
            raise PiswarmError(coordinator.fatal)
    return 0
