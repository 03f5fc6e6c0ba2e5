"""The experiment scene: real frames, checked by pixel; and fed through the real broker."""

import time

import pygame

from head.config import DisplayOptions
from head.display import colors
from head.display.app import DisplayApp
from head.display.cluster import ClusterModel
from head.display.experiment_scene import IDEAL, LIT, NOW, SERIES, UNLIT, ExperimentScene, sentence
from head.display.experiments_view import ExperimentsModel
from head.display.feed import DISPLAY_FILTERS
from head.display.scene import Frame, Link
from head.display.text import TextCache
from piswarm import protocol
from piswarm.protocol import experiments, topics
from piswarm.protocol.experiments import ExperimentPoint, ExperimentStatus
from tests.head.test_display import run_until, viewer_feed
from tests.mqtt_helpers import Recorder

ROOM = [f"pi-0{i}" for i in range(1, 9)]


def a_status(**kw):
    fields = dict(
        experiment="room",
        kind="primes",
        scaling="strong",
        state="running",
        runs_total=3,
        runs_done=2,
        points=(
            ExperimentPoint(
                nodes=1, workers=1, wall_s=10.0, speedup=1.0, efficiency=1.0, repeats=1
            ),
            ExperimentPoint(
                nodes=2, workers=1, wall_s=5.3, speedup=1.887, efficiency=0.94, repeats=1
            ),
        ),
        fits=(experiments.ExperimentFit(workers=1, serial=0.06),),
        ts=time.time(),
        current_nodes=4,
        current_workers=1,
        current_ids=("pi-01", "pi-02", "pi-03", "pi-04"),
        max_nodes=4,
    )
    fields.update(kw)
    return ExperimentStatus(**fields)


def room_model():
    model = ClusterModel()
    for node in ROOM:
        birth = protocol.NodeOnline(
            node=node, ts=1.0, host=node, version="0", cores=4, model="Pi 4", telemetry_interval=1.0
        )
        model.apply(topics.node_status(node), protocol.encode(birth), 1.0)
    return model


def draw(screen, status):
    shown = ExperimentsModel()
    if status is not None:
        shown.apply(topics.experiment_status(status.experiment), protocol.encode(status), 0.0)
    scene = ExperimentScene()
    frame = Frame(
        room_model(), 10.0, 10.0, Link("connected", 0.0), "classic", TextCache(), experiments=shown
    )
    scene.draw(screen, frame, True)
    return scene


def colour(screen, xy):
    return tuple(screen.get_at(xy))[:3]


def test_the_curve_grows_beside_the_ideal_and_the_runs_nodes_are_lit(screen):
    status = a_status()
    scene = draw(screen, status)
    assert sentence(status) == "2 Pis: 1.9x faster than one"
    text = scene.sentence_rect
    bright = sum(
        1
        for x in range(text.left, text.right, 2)
        for y in range(text.top, text.bottom, 2)
        if sum(colour(screen, (x, y))) > 600
    )
    assert bright > 200  # big letters
    x3, y3 = scene.at(3, 3)
    assert colour(screen, (x3, y3)) == IDEAL  # the ideal line: 3 Pis, 3x
    assert colour(screen, scene.at(2, 1.887)) == SERIES[0]  # the measured point
    mid = scene.at(1.5, (1.0 + 1.887) / 2)
    assert colour(screen, mid) == SERIES[0]  # ...joined to the one before
    x4, _ = scene.at(4, 0)
    assert colour(screen, (x4, scene.plot_rect.bottom - 30)) == NOW  # the run under way
    for node in ROOM:
        expected = LIT if node in status.current_ids else UNLIT
        assert colour(screen, scene.node_rects[node].center) == expected, node


def test_without_an_experiment_it_says_how_to_start_one(screen):
    scene = draw(screen, None)
    assert scene.node_rects == {}
    lines = pygame.Rect(30, 720 // 3, 1200, 120)
    assert any(
        sum(colour(screen, (x, y))) > 600
        for x in range(lines.left, lines.right, 3)
        for y in range(lines.top, lines.bottom, 3)
    )
    assert colour(screen, (5, 5)) == colors.BACKGROUND


def test_the_kiosk_draws_an_experiment_published_on_the_broker(broker, users):
    feed = viewer_feed(broker, users, filters=DISPLAY_FILTERS)
    scene = ExperimentScene()
    app = DisplayApp(
        model=ClusterModel(),
        source=feed,
        scenes=[scene],
        options=DisplayOptions(size=(1280, 720), fps=30),
    )
    admin = Recorder(broker.port, users.get("admin"), ())
    try:
        status = a_status(current_ids=("pi-07",), current_nodes=1, state="running")

        def publish():
            admin.publish(topics.experiment_status("room"), protocol.encode(status), retain=True)

        def lit(app):
            rect = scene.node_rects.get("pi-07")
            return rect is not None and tuple(app.surface.get_at(rect.center))[:3] == LIT

        run_until(app, lit, action=publish, name="experiment-scene")
        assert app.experiments.current() == status and app.ignored() == 0
    finally:
        admin.close()
        feed.stop()
