"""The primes scene: its model from real payloads, and real frames checked by pixel."""

import pygame
import pytest

from head.config import DisplayOptions
from head.display import colors
from head.display.app import DisplayApp
from head.display.cluster import ClusterModel
from head.display.cluster_scene import ClusterScene
from head.display.colors import node_color
from head.display.jobs_view import JobsModel
from head.display.primes_scene import BAR, PENDING, PrimesScene, grid_shape
from head.display.scene import Frame, Link
from head.display.text import TextCache
from piswarm import protocol
from piswarm.protocol import jobs, topics
from tests.head.test_display import run_until, viewer_feed


def status(job="p1-a", state="running", done=3, total=4, ts=10.0, **kw):
    fields = dict(
        job=job,
        state=state,
        name="open day",
        start=1,
        end=4_000_000,
        block_size=1_000_000,
        blocks_done=done,
        blocks_total=total,
        primes=216_816,
        largest=2_999_999,
        rate=120_000.0,
        eta_s=8.0,
        nodes=2,
        top=(
            jobs.Contributor(node="pi-01", blocks=2, primes=148_933),
            jobs.Contributor(node="pi-02", blocks=1, primes=67_883),
        ),
        created=1.0,
        finished=None if state == "running" else ts,
        ts=ts,
    )
    fields.update(kw)
    return jobs.JobStatus(**fields)


JOB_MAP = jobs.JobMap(
    job="p1-a",
    blocks_total=4,
    nodes=("pi-01", "pi-02"),
    owner=(0, 1, 0, -1),
    done=(100, 100, 100, 0),
)


def fed(*messages):
    model = JobsModel()
    for topic, payload in messages:
        model.apply(topic, payload, 0.0)
    return model


def test_the_model_keeps_the_latest_and_shows_the_running_job():
    model = fed(
        (topics.job_status("p1-old"), protocol.encode(status("p1-old", "done", 4, 4, ts=5.0))),
        (topics.job_status("p1-a"), protocol.encode(status())),
        (topics.job_map("p1-a"), jobs.encode_job_map(JOB_MAP)),
        (topics.job_status("p1-a"), b"{broken"),
        (topics.job_status("p1-b"), protocol.encode(status("p1-a"))),  # names another job
    )
    assert model.current().job == "p1-a" and model.maps["p1-a"] == JOB_MAP
    assert model.malformed == 2
    model.apply(topics.job_status("p1-a"), protocol.encode(status(state="done", done=4)), 0)
    assert model.current().job == "p1-a"  # finished last
    model.apply(topics.job_status("p1-a"), b"", 0)  # cleared: forgotten
    assert model.current().job == "p1-old"


def test_the_model_is_bounded():
    model = JobsModel(max_jobs=3)
    for i in range(10):
        model.apply(topics.job_status(f"p1-{i}"), protocol.encode(status(f"p1-{i}")), 0)
        empty = jobs.JobMap(job=f"p1-{i}", blocks_total=1, nodes=(), owner=(-1,), done=(0,))
        model.apply(topics.job_map(f"p1-{i}"), jobs.encode_job_map(empty), 0)
    assert list(model.statuses) == ["p1-7", "p1-8", "p1-9"] and len(model.maps) <= 3


@pytest.mark.parametrize(("cells", "w", "h"), [(1, 100, 100), (400, 1000, 500), (7, 50, 500)])
def test_the_grid_holds_every_cell(cells, w, h):
    columns, rows = grid_shape(cells, w, h)
    assert columns * rows >= cells and columns * (rows - 1) < cells


def draw(screen, model):
    scene = PrimesScene()
    frame = Frame(ClusterModel(), 10.0, 10.0, Link("connected", 0.0), "classic", TextCache(), model)
    scene.draw(screen, frame, True)
    return scene


def test_a_running_job_shows_progress_and_who_did_which_block(screen):
    scene = draw(
        screen,
        fed(
            (topics.job_status("p1-a"), protocol.encode(status())),
            (topics.job_map("p1-a"), jobs.encode_job_map(JOB_MAP)),
        ),
    )
    bar = scene.bar_rect
    assert screen.get_at((bar.x + 2, bar.centery))[:3] == BAR
    assert screen.get_at((bar.x + bar.width * 3 // 4 - 3, bar.centery))[:3] == BAR  # 3 of 4
    assert screen.get_at((bar.right - 3, bar.centery))[:3] == colors.PANEL
    for cell, expected in enumerate(
        [node_color("pi-01"), node_color("pi-02"), node_color("pi-01"), PENDING]
    ):
        assert screen.get_at(scene.cell_rect(cell, 4).center)[:3] == expected, cell
    # The largest prime is written big: the band under the title holds bright pixels.
    band = pygame.Rect(30, 720 // 9 + 20, 600, 100)
    bright = sum(
        1
        for x in range(band.left, band.right, 3)
        for y in range(band.top, band.bottom, 3)
        if sum(screen.get_at((x, y))[:3]) > 600
    )
    assert bright > 100


def bright_pixels(screen, rect):
    return sum(
        1
        for x in range(rect.left, rect.right)
        for y in range(rect.top, rect.bottom)
        if sum(screen.get_at((x, y))[:3]) > 600
    )


def test_twin_pairs_and_the_largest_gap_are_shown_once_known(screen):
    """A job from before they were counted shows '-' where a count-only job shows them."""
    shown = {}
    for twins, gap in ((None, None), (3_424_506, 282)):
        job = status(
            twins=twins, gap=gap, gap_at=None if gap is None else 436_273_009, keep="counts"
        )
        scene = draw(screen, fed((topics.job_status("p1-a"), protocol.encode(job))))
        shown[twins] = [
            bright_pixels(screen, scene.figure_rects[name])
            for name in ("twin pairs", "largest gap")
        ]
    dash, twins_text = shown[None], shown[3_424_506]
    assert twins_text[0] > 4 * dash[0] and twins_text[1] > 2 * dash[1], shown


def test_a_node_found_wrong_by_double_checking_is_named_in_red(screen):
    job = status(double_check=0.03, checked=5, mismatches=1, wrong=("pi-07",))
    scene = draw(screen, fed((topics.job_status("p1-a"), protocol.encode(job))))
    rect = scene.checks_rect
    assert rect.width > 100
    red = sum(
        1
        for x in range(rect.left, rect.right)
        for y in range(rect.top, rect.bottom)
        if screen.get_at((x, y))[:3] == colors.ALERT
    )
    assert red > 50
    scene = draw(screen, fed((topics.job_status("p1-a"), protocol.encode(status()))))
    assert scene.checks_rect.width == 0  # nothing checked: no line


def test_without_a_job_it_says_how_to_start_one(screen):
    draw(screen, JobsModel())
    text = sum(
        1
        for x in range(0, 1280, 4)
        for y in range(200, 360, 4)
        if screen.get_at((x, y))[:3] != colors.BACKGROUND
    )
    assert text > 50


def test_the_display_shows_a_job_published_on_the_broker(broker, users, recorder):
    admin = recorder("admin", filters=())
    admin.wait_connected()
    admin.publish(topics.job_status("p1-a"), protocol.encode(status()), retain=True)
    admin.publish(topics.job_map("p1-a"), jobs.encode_job_map(JOB_MAP), retain=True)
    feed = viewer_feed(broker, users)
    scene = PrimesScene()
    app = DisplayApp(
        model=ClusterModel(),
        source=feed,
        scenes=[scene, ClusterScene()],
        options=DisplayOptions(size=(1280, 720), fps=30),
    )
    try:
        cell = scene.cell_rect
        run_until(
            app,
            lambda a: (
                a.jobs.current() is not None
                and a.surface.get_at(cell(1, 4).center)[:3] == node_color("pi-02")
            ),
            name="primes-scene",
        )
    finally:
        feed.stop()
    assert app.model.stats.malformed == 0  # job topics are not the cluster model's
