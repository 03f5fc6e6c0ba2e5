"""The kiosk runs unattended all day: a message or a scene that raises is logged and
counted, and the loop goes on. Real frames (SDL dummy driver), a hand clock."""

import threading

import pygame

from head.config import DisplayOptions
from head.display import colors
from head.display.app import DisplayApp
from head.display.cluster import ClusterModel
from head.display.cluster_scene import RELAYOUT_EVERY, ClusterScene
from head.display.scene import Frame, Link
from head.display.text import TextCache
from piswarm.client import Message
from tests.head.test_cluster import birth, telemetry


class HandSource:
    """Messages the test queues, as the feed would hand them over."""

    def __init__(self, messages=()):
        self.connected = threading.Event()
        self.connected.set()
        self.refused = None
        self.dropped = 0
        self.queue = list(messages)

    def drain(self, limit=5000):
        taken, self.queue = self.queue[:limit], self.queue[limit:]
        return [Message(*item) for item in taken]


class PoisonedModel(ClusterModel):
    """A model with a bug: anything about ``pi-bad`` raises."""

    def apply(self, topic, payload, received_at):
        if "/pi-bad/" in topic:
            raise RuntimeError("a bug in the model")
        return super().apply(topic, payload, received_at)


def test_a_message_handler_that_raises_does_not_stop_the_display(caplog):
    source = HandSource(
        [
            (*birth("pi-bad"), 100.0),
            (*birth("pi-good"), 100.0),
            (*telemetry("pi-bad", 1), 100.5),
            (*telemetry("pi-good", 1, temp=80.0), 100.5),
        ]
    )
    scene = ClusterScene()
    app = DisplayApp(
        model=PoisonedModel(expected=["pi-good"]),
        source=source,
        scenes=[scene],
        options=DisplayOptions(size=(640, 480), fps=1000),
        clock=lambda: 101.0,
    )
    frames = []

    def on_frame(app):
        point = scene.probe_point("pi-good")
        frames.append(point and tuple(app.surface.get_at(point))[:3])
        if len(frames) == 2:  # more trouble while it runs
            source.queue.append((*telemetry("pi-bad", 2), 101.0))
        return len(frames) < 4

    stats = app.run(on_frame=on_frame)
    assert stats.frames == 4 and app.errors == 3
    assert app.ignored() == 3  # shown in the header as bad messages ignored
    assert "failed to show a message on piswarm/nodes/pi-bad/telemetry" in caplog.text
    # The good node's message, queued after the bad ones, was shown: a hot tile.
    assert frames[-1] == colors.temp_color(80.0)


class FlakyScene:
    """Raises on the frames it is told to; otherwise fills the screen in one colour."""

    name = "flaky"

    def __init__(self, fail_on):
        self.fail_on, self.calls, self.fulls = set(fail_on), 0, []

    def draw(self, surface, frame, full):
        self.calls += 1
        if self.calls in self.fail_on:
            raise ZeroDivisionError("a bug in the scene")
        self.fulls.append(full)
        surface.fill((0, 120, 0))
        return [surface.get_rect()]

    def on_key(self, key):
        return False

    def on_click(self, pos):
        return False


def test_a_scene_that_raises_is_counted_logged_seldom_and_drawn_whole_next(caplog):
    scene = FlakyScene(fail_on={2, 3, 4})
    hand = [0.0]
    app = DisplayApp(
        model=ClusterModel(),
        source=HandSource(),
        scenes=[scene],
        options=DisplayOptions(size=(320, 240), fps=1000),
        ticks=lambda: hand[0],
    )

    seen = []

    def on_frame(app):
        hand[0] += 1.0  # a second a frame: three failures in a row are three seconds
        seen.append(tuple(app.surface.get_at((5, 5)))[:3])
        return scene.calls < 6

    stats = app.run(on_frame=on_frame)
    assert stats.frames == 6 and app.draw_errors == 3
    assert scene.fulls == [True, True, False]  # after the failures, a whole frame
    assert seen[-1] == (0, 120, 0)
    assert caplog.text.count("scene flaky failed to draw") == 1  # not once a frame
    assert app.ignored() == 0  # a scene's bug is not a bad message


def test_the_room_is_rearranged_at_most_once_a_second_of_app_ticks():
    pygame.init()
    try:
        surface = pygame.Surface((800, 600))
        model = ClusterModel()
        scene = ClusterScene()

        def frame(ticks):
            return Frame(
                model, 0.0, 0.0, Link("connected", 0.0), "classic", TextCache(), ticks=ticks
            )

        for node in ("pi-a", "pi-b"):
            model.apply(*birth(node), received_at=100.0)
        scene.draw(surface, frame(1000.0), True)
        assert scene.tile_rect("pi-a") and scene.tile_rect("pi-b")
        model.apply(*birth("pi-c"), received_at=100.0)
        scene.draw(surface, frame(1000.0 + RELAYOUT_EVERY / 2), False)
        assert scene.tile_rect("pi-c") is None  # not yet: the room just moved
        scene.draw(surface, frame(1000.0 + RELAYOUT_EVERY), False)
        assert scene.tile_rect("pi-c") is not None
    finally:
        pygame.quit()


def test_the_kiosk_says_it_is_alive_in_its_log_on_its_own_clock(caplog):
    caplog.set_level("INFO", logger="head.display.app")
    hand = [0.0]
    source = HandSource([(*birth("pi-a"), 100.0), (*telemetry("pi-a", 1), 100.5)])
    app = DisplayApp(
        model=ClusterModel(),
        source=source,
        scenes=[FlakyScene(fail_on=())],
        options=DisplayOptions(size=(320, 240), fps=1000, report_every=2.0),
        ticks=lambda: hand[0],
    )

    def on_frame(app):
        hand[0] += 1.0
        return app.stats.frames < 5

    app.run(on_frame=on_frame)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("display: ")]
    assert lines == [
        # ticks 0, 1, 2 (the first report is due at 2), 3, 4 (the next)
        "display: 3 frames, 2 messages, 0 ignored (0 dropped), 0 draw errors, link connected",
        "display: 5 frames, 2 messages, 0 ignored (0 dropped), 0 draw errors, link connected",
    ]
