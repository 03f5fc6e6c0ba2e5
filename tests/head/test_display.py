"""The kiosk display rendering real frames (SDL dummy driver) from a real broker."""

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pygame
import pytest

from head.config import DisplayOptions
from head.display import colors
from head.display.app import DisplayApp
from head.display.cluster import ClusterModel
from head.display.cluster_scene import HEADER_SHARE, ClusterScene
from head.display.feed import DEFAULT_FILTERS, ClusterFeed
from head.display.layout import Geometry, Layout
from piswarm import protocol
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from tests.conftest import status_is
from tests.mqtt_helpers import Recorder

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def viewer_feed(broker, users, filters=DEFAULT_FILTERS):
    viewer = users.get("viewer")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(viewer.name, viewer.password)
    )
    feed = ClusterFeed(settings=settings, role="test-display", filters=filters).start()
    assert feed.wait_connected(10)
    return feed


def make_app(feed, layout=None, size=(1280, 720), palette="classic"):
    scene = ClusterScene(layout=layout)
    model = ClusterModel(expected=layout.expected if layout else [])
    options = DisplayOptions(size=size, palette=palette, fps=30)
    return DisplayApp(model=model, source=feed, scenes=[scene], options=options), scene


def run_until(app, check, *, timeout=20.0, action=None, name="frame"):
    """Run the real main loop until ``check(app)`` holds on a drawn frame."""
    state = {"ok": False, "acted": False}
    deadline = time.monotonic() + timeout

    def on_frame(app):
        if action is not None and not state["acted"]:
            state["acted"] = True
            action()
        if check(app):
            state["ok"] = True
            return False
        if time.monotonic() > deadline:
            ARTIFACTS.mkdir(exist_ok=True)
            pygame.image.save(app.surface, str(ARTIFACTS / f"{name}.png"))  # for a human
            return False
        return True

    app.run(on_frame=on_frame)
    assert state["ok"], f"condition not met on screen; frame saved to {ARTIFACTS / name}.png"


def warning_in_header(app):
    """Whether the header (the top strip of the cluster scene) has text in WARNING."""
    height = int(app.surface.get_height() * HEADER_SHARE)
    header = pygame.surfarray.array3d(app.surface)[:, :height]
    return bool((header == colors.WARNING).all(axis=2).any())


def pixel(app, scene, node):
    point = scene.probe_point(node)
    return None if point is None else tuple(app.surface.get_at(point))[:3]


def announce(pub, node, temp, *, cpu=50.0, throttle=0, seq=1):
    """Publish what an agent would: retained birth, then telemetry."""
    born = protocol.NodeOnline(
        node=node,
        ts=1.0,
        host=node,
        version="0.1.0",
        cores=4,
        model="Pi 4",
        telemetry_interval=2.0,
        ip="10.0.0.1",
    )
    pub.publish(topics.node_status(node), protocol.encode(born), retain=True)
    reading = protocol.Telemetry(
        node=node,
        seq=seq,
        ts=time.time(),
        temp_c=temp,
        temp_source="thermal",
        throttle=protocol.Throttle.from_raw(throttle),
        cpu_percent=cpu,
        load=(1.0, 1.0, 1.0),
        mem_percent=30.0,
        freq_mhz=1500.0,
        uptime_s=100.0,
    )
    pub.publish(topics.node_telemetry(node), protocol.encode(reading), qos=1)


@pytest.fixture
def feed(broker, users):
    feed = viewer_feed(broker, users)
    yield feed
    feed.stop()


@pytest.mark.parametrize("palette", ["classic", "cividis"])
def test_tiles_show_the_temperature_colour_offline_grey_and_never_seen_dark(
    broker, users, feed, palette
):
    layout = Layout.from_seats(2, 3, ["node-a", "node-b", "node-c", "ghost-1"])
    app, scene = make_app(feed, layout, palette=palette)
    pubs = {
        n: Recorder(broker.port, users.get(n), ()).wait_connected()
        for n in ("node-a", "node-b", "node-c")
    }
    admin = Recorder(broker.port, users.get("admin"), ()).wait_connected()

    def publish():
        announce(pubs["node-a"], "node-a", 40.0)
        announce(pubs["node-b"], "node-b", 60.0)
        announce(pubs["node-c"], "node-c", 80.0)
        gone = protocol.NodeOffline(node="node-c", ts=2.0, reason="shutdown")
        # node-c goes away: its tile must turn grey whatever its last temperature was.
        admin.publish(topics.node_status("node-c"), protocol.encode(gone), retain=True)

    expected = {
        "node-a": colors.temp_color(40, palette),
        "node-b": colors.temp_color(60, palette),
        "node-c": colors.OFFLINE,
        "ghost-1": colors.NEVER_SEEN,
    }
    try:
        run_until(
            app,
            lambda a: all(pixel(a, scene, n) == c for n, c in expected.items()),
            action=publish,
            name=f"colours-{palette}",
        )
    finally:
        for rec in (*pubs.values(), admin):
            rec.close()


def test_eighty_degrees_is_red_and_throttling_shows_an_icon(broker, users, feed):
    app, scene = make_app(feed)
    pub = Recorder(broker.port, users.get("node-a"), ()).wait_connected()

    def red_with_icon(app):
        rect = scene.tile_rect("node-a")
        # The throttle icon: a red triangle on a dark disc in the tile's top-right corner.
        icon = (rect.right - 14, rect.y + 14) if rect else None
        return (
            pixel(app, scene, "node-a") == (230, 20, 20)
            and app_surface_pixel(app, icon) == colors.ALERT
        )

    try:
        run_until(
            app,
            red_with_icon,
            name="red",
            action=lambda: announce(pub, "node-a", 80.0, throttle=0x4),
        )
    finally:
        pub.close()


def app_surface_pixel(app, point):
    return tuple(app.surface.get_at(point))[:3]


def test_kill_9_of_an_agent_turns_its_tile_offline(broker, users, agents, feed, recorder):
    app, scene = make_app(feed)
    rec = recorder()
    agent = agents("node-a", keepalive=5)
    rec.wait_for(status_is("node-a", "online"))
    run_until(
        app, lambda a: pixel(a, scene, "node-a") not in (None, colors.OFFLINE), name="agent-live"
    )
    run_until(
        app,
        lambda a: pixel(a, scene, "node-a") == colors.OFFLINE,
        action=lambda: agent.signal(signal.SIGKILL),
        name="agent-killed",
    )


def test_nodes_beyond_the_layout_go_to_an_overflow_row(broker, users, feed):
    layout = Layout.from_seats(1, 2, ["node-a"])
    app, scene = make_app(feed, layout)
    pubs = [Recorder(broker.port, users.get(n), ()).wait_connected() for n in ("node-a", "node-b")]
    try:
        run_until(
            app,
            lambda a: pixel(a, scene, "node-b") == colors.temp_color(55),
            action=lambda: (announce(pubs[0], "node-a", 45.0), announce(pubs[1], "node-b", 55.0)),
            name="overflow",
        )
        assert scene.tile_rect("node-b").y > scene.tile_rect("node-a").bottom
    finally:
        for pub in pubs:
            pub.close()


def test_malformed_messages_are_counted_and_the_display_carries_on(broker, users, feed):
    app, scene = make_app(feed)
    pub = Recorder(broker.port, users.get("node-a"), ()).wait_connected()

    def publish():
        for junk in (b"{", b'{"v":1}', b"\x00" * 20, b'{"v":1,"state":"online"}'):
            pub.publish("piswarm/nodes/node-a/telemetry", junk)
            pub.publish("piswarm/nodes/node-a/status", junk)
        announce(pub, "node-a", 50.0)

    try:
        run_until(
            app,
            lambda a: pixel(a, scene, "node-a") == colors.temp_color(50),
            action=publish,
            name="malformed",
        )
        assert app.model.stats.malformed == 8
        # The display's own count of what it ignored is in its header, in warning colour.
        assert app.ignored() == 8
        run_until(app, lambda a: warning_in_header(a), name="ignored-count")
        assert ("8 bad messages ignored", colors.WARNING) in {
            (text, colour) for text, _size, colour in app.text._surfaces
        }
    finally:
        pub.close()


def test_broker_loss_is_shown_and_the_display_recovers_by_itself(broker, users, feed):
    app, scene = make_app(feed)
    pub = Recorder(broker.port, users.get("node-a"), ()).wait_connected()
    try:
        run_until(
            app,
            lambda a: pixel(a, scene, "node-a") == colors.temp_color(50),
            action=lambda: announce(pub, "node-a", 50.0),
            name="before-loss",
        )
        pub.close()
        run_until(app, lambda a: a.link.state == "lost", action=broker.kill, name="lost")
        # The banner says so, and the last known state stays (not stale, not offline).
        run_until(
            app,
            lambda a: (
                app_surface_pixel(a, (a.surface.get_width() - 300, 8)) == (60, 10, 10)
                and pixel(a, scene, "node-a") == colors.temp_color(50)
            ),
            name="banner",
        )
        broker.start()
        run_until(app, lambda a: a.link.state == "connected", timeout=40, name="recovered")
    finally:
        pub.close()


def test_main_loop_smoke_keys_and_a_scheduled_quit(broker, users, feed, tmp_path):
    scene = ClusterScene()
    options = DisplayOptions(size=(800, 600), fps=60, screenshot_dir=tmp_path)
    app = DisplayApp(model=ClusterModel(), source=feed, scenes=[scene], options=options)

    def schedule(app):
        # Keys as a person presses them, all handled in the first frame.
        for key in (pygame.K_SPACE, pygame.K_s, pygame.K_2, pygame.K_f, pygame.K_f):
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))

    frames = itertools.count(1)

    def quit_after_90_frames(app):
        if next(frames) == 90:  # as the window's close button does
            pygame.event.post(pygame.event.Event(pygame.QUIT))
        return True

    stats = app.run(on_start=schedule, on_frame=quit_after_90_frames)
    assert stats.frames == 91  # the quit is handled, and its frame drawn, on the next one
    assert app.paused and stats.screenshots == 1
    assert not app.fullscreen  # F twice: fullscreen and back
    (shot,) = tmp_path.glob("piswarm-*.png")
    assert pygame.image.load(str(shot)).get_size() == (800, 600)


def test_a_screenshot_that_cannot_be_saved_is_logged_and_the_kiosk_goes_on(feed, tmp_path, caplog):
    options = DisplayOptions(size=(320, 240), fps=60, screenshot_dir=tmp_path / "gone")
    app = DisplayApp(model=ClusterModel(), source=feed, scenes=[ClusterScene()], options=options)
    frames = itertools.count(1)

    def press_s_then_quit(app):
        frame = next(frames)
        if frame == 1:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_s))
        elif frame == 5:
            pygame.event.post(pygame.event.Event(pygame.QUIT))
        return True

    stats = app.run(on_frame=press_s_then_quit)
    assert stats.frames == 6 and stats.screenshots == 0
    assert "screenshot not saved" in caplog.text
    assert not (tmp_path / "gone").exists()  # nothing made behind the user's back


def test_screenshot_cli_renders_headless(broker, users, tmp_path, recorder):
    pub = Recorder(broker.port, users.get("node-a"), ()).wait_connected()
    announce(pub, "node-a", 60.0)  # the retained birth is there at once; telemetry is not
    pub.close()
    out = tmp_path / "shot.png"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "piswarm",
            "display",
            "--screenshot",
            str(out),
            "--after",
            "3",
            "--broker-host",
            "127.0.0.1",
            "--broker-port",
            str(broker.port),
        ],
        env={
            **__import__("os").environ,
            "PISWARM_BROKER_DIR": str(users.root),
            "SDL_VIDEODRIVER": "dummy",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    # Telemetry while it listens, however long it takes to start: the screenshot must show
    # the node at 60 degrees.
    deadline = time.monotonic() + 120
    pub = Recorder(broker.port, users.get("node-a"), ()).wait_connected()
    seq = 2
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the display never saved its screenshot"
        announce(pub, "node-a", 60.0, seq=seq)
        seq += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.3)
    pub.close()
    output = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, output
    image = pygame.image.load(str(out))
    assert image.get_size() == (1920, 1080)
    geometry = Geometry(
        layout=Layout.from_nodes(["node-a"]), area=(0, 91, 1920, 930), overflow_rows=0
    )
    x, y, _w, h = geometry.tile_rect("node-a")
    assert tuple(image.get_at((x + 4, y + h // 2)))[:3] == colors.temp_color(60)


class SolidScene:
    """A stand-in for the primes / Life scenes to come: one colour, full screen."""

    def __init__(self, name, colour):
        self.name, self.colour = name, colour

    def draw(self, surface, frame, full):
        if not full:
            return []
        surface.fill(self.colour)
        return [surface.get_rect()]


def test_kiosk_rotates_scenes_space_pauses_and_the_mouse_is_hidden(feed):
    """Driven by a hand clock: each frame is 0.25 s later, however fast the machine draws."""
    red, blue = SolidScene("red", (200, 0, 0)), SolidScene("blue", (0, 0, 200))
    options = DisplayOptions(size=None, kiosk=True, rotate_every=0.5, fps=1000)
    hand = [0.0]
    app = DisplayApp(
        model=ClusterModel(),
        source=feed,
        scenes=[red, blue],
        options=options,
        ticks=lambda: hand[0],
    )
    seen, frames = [], []

    def watch(app):
        colour = app_surface_pixel(app, (5, 5))
        frames.append(colour)
        if not seen or seen[-1] != colour:
            seen.append(colour)
        assert not pygame.mouse.get_visible()
        hand[0] += 0.25
        return len(seen) < 3

    app.run(on_frame=watch, duration=10)
    assert seen == [(200, 0, 0), (0, 0, 200), (200, 0, 0)]
    assert len(frames) == 5  # red at 0 and 0.25 s, blue at 0.5 and 0.75 s, red at 1 s
    # Space pauses the rotation; keys 1-9 still pick a scene.
    seen.clear()

    def pause(app):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_SPACE))
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_2))

    stats = app.run(on_start=pause, on_frame=watch, duration=1.2)
    assert app.paused and seen == [(0, 0, 200)] and stats.seconds >= 1.2


def test_a_looped_feed_reads_in_the_drainers_thread_in_order_and_within_its_bound(
    broker, users, recorder
):
    """The views' feed has no network thread: each drain reads what has arrived (the
    CONNACK and SUBACK too, which are not messages), in order, and never holds more than
    its bound: what does not fit waits in the socket for the next drain."""
    threads = set(threading.enumerate())
    viewer = users.get("viewer")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(viewer.name, viewer.password)
    )
    feed = ClusterFeed(settings=settings, role="test-looped", maxsize=10).start()
    try:
        assert feed.wait_connected(10)
        assert set(threading.enumerate()) == threads  # no paho thread
        pub = recorder("node-a", filters=())
        pub.wait_connected()
        for seq in range(25):
            reading = protocol.Telemetry(
                node="node-a",
                seq=seq,
                ts=time.time(),
                temp_c=50.0,
                temp_source="thermal",
                throttle=protocol.Throttle.from_raw(0),
                cpu_percent=1.0,
                load=(0.0, 0.0, 0.0),
                mem_percent=1.0,
                freq_mhz=None,
                uptime_s=1.0,
            )
            pub.publish(topics.node_telemetry("node-a"), protocol.encode(reading), qos=1)
        seqs: list[int] = []
        deadline = time.monotonic() + 20
        while len(seqs) < 25 and time.monotonic() < deadline:
            batch = feed.drain(limit=10)
            assert len(batch) <= 10
            seqs += [json.loads(m.payload)["seq"] for m in batch if m.topic.endswith("/telemetry")]
        assert seqs == list(range(25)) and feed.dropped == 0
    finally:
        feed.stop()
