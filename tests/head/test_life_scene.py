"""The Life view: frames assembled into one board (from real frame payloads), and the
Life scene drawn into real frames and checked by pixel."""

import numpy as np
import pygame
from hypothesis import given, settings
from hypothesis import strategies as st

from head.display import colors
from head.display.cluster import ClusterModel
from head.display.colors import node_color
from head.display.jobs_view import JobsModel
from head.display.life_scene import UNCLAIMED, LifeScene, View
from head.display.life_view import LifeFrames
from head.display.scene import Frame, Link
from head.display.text import TextCache
from piswarm import life, protocol
from piswarm.protocol import life as wire
from piswarm.protocol import topics


def frame_message(
    cells, row0, rows, *, strip, strips, node="pi-01", job="l1-a", epoch=1, gen=10, scale=None
):
    """A strip's frame as the strip publishes it: (topic, payload)."""
    height, width = cells.shape
    scale = scale or wire.frame_scale(width, height)
    words = life.pack(cells[row0 : row0 + rows])
    pooled = life.pool(words, width, row0, scale)
    header = wire.Frame(
        job=job,
        epoch=epoch,
        strip=strip,
        strips=strips,
        node=node,
        row0=row0,
        rows=rows,
        width=width,
        height=height,
        gen=gen,
        scale=scale,
        population=int(cells[row0 : row0 + rows].sum()),
    )
    bits = np.packbits(pooled.astype(bool), axis=1).tobytes()
    return topics.life_strip(node, job, epoch, strip, "frame"), wire.encode_frame(header, bits)


def whole_pooled(cells, scale):
    width = cells.shape[1]
    return life.pool(life.pack(cells), width, 0, scale).astype(bool)


def split(height, strips):
    bounds = np.linspace(0, height, strips + 1).astype(int)
    return [(int(a), int(n)) for a, n in zip(bounds[:-1], np.diff(bounds), strict=True)]


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(3, 90),
    height=st.integers(8, 90),
    strips=st.integers(1, 5),
    scale=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
    order=st.randoms(),
)
def test_frames_of_every_strip_make_the_pooled_board_in_any_order(
    width, height, strips, scale, seed, order
):
    cells = (np.random.default_rng(seed).random((height, width)) < 0.3).astype(np.uint8)
    parts = split(height, min(strips, height))
    messages = [
        frame_message(cells, row0, rows, strip=i, strips=len(parts), scale=scale, node=f"pi-{i}")
        for i, (row0, rows) in enumerate(parts)
    ]
    order.shuffle(messages)
    frames = LifeFrames()
    for topic, payload in messages:
        assert frames.apply(topic, payload, 0.0)
    board = frames.board("l1-a")
    assert (board.cells == whole_pooled(cells, scale)).all()  # shared rows are ORed
    assert board.population == cells.sum() and board.gen == 10
    assert [p.strip for p in board.ordered()] == list(range(len(parts)))


def test_a_newer_frame_replaces_a_strip_and_older_or_repeated_ones_change_nothing():
    rng = np.random.default_rng(1)
    early, late = (rng.random((2, 40, 64)) < 0.4).astype(np.uint8)
    frames = LifeFrames()
    assert frames.apply(*frame_message(early, 0, 20, strip=0, strips=2, gen=5), 0.0)
    assert frames.apply(*frame_message(early, 20, 20, strip=1, strips=2, gen=5), 0.0)
    assert frames.apply(*frame_message(late, 0, 20, strip=0, strips=2, gen=9), 0.0)
    board = frames.board("l1-a")
    assert (board.cells[:20] == late[:20]).all() and (board.cells[20:] == early[20:]).all()
    assert (board.gen, board.newest_gen) == (5, 9)
    version = frames.version
    assert not frames.apply(*frame_message(early, 0, 20, strip=0, strips=2, gen=5), 0.0)  # late
    assert not frames.apply(*frame_message(late, 0, 20, strip=0, strips=2, gen=9), 0.0)  # twice
    assert frames.version == version and frames.stale == 1
    assert (board.cells[:20] == late[:20]).all()


def test_a_new_epoch_starts_a_new_picture_and_the_old_epoch_is_ignored():
    cells = np.ones((30, 30), dtype=np.uint8)
    frames = LifeFrames()
    frames.apply(*frame_message(cells, 0, 15, strip=0, strips=2, epoch=1, gen=50), 0.0)
    frames.apply(*frame_message(cells, 15, 15, strip=1, strips=2, epoch=1, gen=50), 0.0)
    # Node loss: epoch 2 runs the board as one strip from the checkpoint at gen 40.
    assert frames.apply(*frame_message(cells, 0, 30, strip=0, strips=1, epoch=2, gen=40), 0.0)
    board = frames.board("l1-a")
    assert (board.epoch, board.strips, len(board.parts), board.gen) == (2, 1, 1, 40)
    assert not frames.apply(*frame_message(cells, 15, 15, strip=1, strips=2, epoch=1, gen=60), 0)
    assert frames.board("l1-a").epoch == 2


def test_malformed_frames_are_counted_and_logged_and_change_nothing(caplog):
    cells = np.ones((30, 30), dtype=np.uint8)
    frames = LifeFrames()
    frames.apply(*frame_message(cells, 0, 30, strip=0, strips=1), 0.0)
    topic, payload = frame_message(cells, 0, 30, strip=0, strips=1, gen=11)
    wrong_topic = topics.life_strip("pi-02", "l1-a", 1, 0, "frame")  # the header says pi-01
    other_size = frame_message(np.ones((30, 40), dtype=np.uint8), 0, 30, strip=0, strips=1, gen=12)
    too_tall = payload.replace(b'"rows":30', b'"rows":31')
    bad_ones = [
        (topic, b"garbage"),
        (topic, payload[:-3]),
        (wrong_topic, payload),
        other_size,
        (topic, too_tall),
    ]
    for bad_topic, bad in bad_ones:
        assert not frames.apply(bad_topic, bad, 0.0)
    assert frames.malformed == 5 and frames.board("l1-a").gen == 10
    assert "ignored malformed Life frame" in caplog.text
    # Other strip leaves are not frames: not this model's business, not malformed either.
    assert not frames.apply(topics.life_strip("pi-01", "l1-a", 1, 0, "progress"), b"{}", 0.0)
    assert frames.malformed == 5


def test_only_the_most_recent_boards_are_kept():
    frames = LifeFrames(max_jobs=2)
    cells = np.ones((10, 10), dtype=np.uint8)
    for job in ("l1-a", "l1-b", "l1-c"):
        frames.apply(*frame_message(cells, 0, 10, strip=0, strips=1, job=job), 0.0)
    assert list(frames.boards) == ["l1-b", "l1-c"]


def test_views_zoom_and_pan_within_the_board():
    view = View()
    assert view.window(100, 50) == (0, 0, 100, 50)
    zoomed = view.zoomed(2).zoomed(2)
    assert zoomed.window(100, 50) == (38, 19, 63, 31)
    far = zoomed
    for _ in range(20):
        far = far.panned(1, 1)
    assert far.window(100, 50) == (75, 38, 100, 50)  # stops at the corner
    assert far.zoomed(0.25) == View()  # all the way out: the whole board, centred
    assert View().zoomed(1000).zoom == 64


# -- the scene, drawn ---------------------------------------------------------------------


def life_status(job="l1-a", state="running", gen=10, **kw):
    fields = dict(
        job=job,
        state=state,
        name="open day",
        width=64,
        height=40,
        wrap="torus",
        gens=100,
        gen=gen,
        epoch=1,
        strips=2,
        nodes=("pi-01", "pi-02"),
        population=123,
        population_gen=0,
        rate=50.0,
        eta_s=2.0,
        hash=None,
        created=1.0,
        finished=None,
        ts=10.0,
    )
    fields.update(kw)
    return wire.LifeStatus(**fields)


def draw(screen, jobs, frames, scene=None, now=10.0):
    scene = scene or LifeScene()
    frame = Frame(
        ClusterModel(), now, now, Link("connected", 0.0), "classic", TextCache(), jobs, frames
    )
    scene.draw(screen, frame, True)
    return scene


def jobs_with(status):
    jobs = JobsModel()
    assert jobs.apply(topics.job_status(status.job), protocol.encode(status), 0.0)
    return jobs


def test_the_board_is_drawn_in_each_strips_node_colour(screen):
    cells = np.zeros((40, 64), dtype=np.uint8)
    cells[5, 7] = cells[30, 50] = 1
    frames = LifeFrames()
    frames.apply(*frame_message(cells, 0, 20, strip=0, strips=2, node="pi-01"), 0.0)
    frames.apply(*frame_message(cells, 20, 20, strip=1, strips=2, node="pi-02"), 0.0)
    scene = draw(screen, jobs_with(life_status()), frames)
    at = screen.get_at
    assert at(scene.cell_center(7, 5))[:3] == node_color("pi-01")
    assert at(scene.cell_center(50, 30))[:3] == node_color("pi-02")
    assert at(scene.cell_center(8, 5))[:3] == colors.blend(
        colors.BACKGROUND, node_color("pi-01"), 0.14
    )
    assert at(scene.cell_center(8, 35))[:3] == colors.blend(
        colors.BACKGROUND, node_color("pi-02"), 0.14
    )
    # The board keeps its shape: 64 x 40 cells drawn as squares.
    assert abs(scene.board_rect.width / scene.board_rect.height - 64 / 40) < 0.02


def test_zoom_keys_magnify_around_the_centre_and_zero_shows_it_all(screen):
    cells = np.zeros((40, 64), dtype=np.uint8)
    cells[20, 32] = 1
    frames = LifeFrames()
    frames.apply(*frame_message(cells, 0, 40, strip=0, strips=1), 0.0)
    jobs = jobs_with(life_status(strips=1, nodes=("pi-01",)))
    scene = draw(screen, jobs, frames)
    whole = scene.board_rect.width
    assert scene.on_key(pygame.K_PLUS) and not scene.on_key(pygame.K_a)
    draw(screen, jobs, frames, scene)
    assert scene.cell_center(0, 0) is None  # out of view now
    middle = scene.cell_center(32, 20)
    assert screen.get_at(middle)[:3] == node_color("pi-01")
    cell_size = scene.board_rect.width / (scene._window[2] - scene._window[0])
    assert cell_size > 1.9 * whole / 64
    scene.on_key(pygame.K_0)
    draw(screen, jobs, frames, scene)
    assert scene.cell_center(0, 0) is not None


def test_before_frames_arrive_it_waits_and_without_a_job_it_says_how_to_start_one(screen):
    scene = draw(screen, jobs_with(life_status()), LifeFrames())
    assert scene.board_rect.width == 0
    assert screen.get_at((200, 400))[:3] == colors.PANEL  # the empty board
    draw(screen, JobsModel(), LifeFrames())
    text = sum(
        1
        for x in range(0, 1280, 4)
        for y in range(200, 360, 4)
        if screen.get_at((x, y))[:3] != colors.BACKGROUND
    )
    assert text > 50


def test_rows_no_strip_has_sent_yet_are_dark(screen):
    cells = np.ones((40, 64), dtype=np.uint8)
    frames = LifeFrames()
    frames.apply(*frame_message(cells, 0, 20, strip=0, strips=2), 0.0)
    scene = draw(screen, jobs_with(life_status()), frames)
    assert screen.get_at(scene.cell_center(10, 30))[:3] == UNCLAIMED
    assert screen.get_at(scene.cell_center(10, 10))[:3] == node_color("pi-01")


def test_redraws_are_limited_to_fifteen_a_second(screen):
    cells = np.zeros((40, 64), dtype=np.uint8)
    frames = LifeFrames()
    jobs = jobs_with(life_status(strips=1, nodes=("pi-01",)))
    frames.apply(*frame_message(cells, 0, 40, strip=0, strips=1, gen=1), 0.0)
    scene = LifeScene()
    # Paced by the app's monotonic ticks, not the wall clock (which may jump).
    context = Frame(
        ClusterModel(),
        10.0,
        10.0,
        Link("connected", 0.0),
        "classic",
        TextCache(),
        jobs,
        frames,
        ticks=500.0,
    )
    assert scene.draw(screen, context, True)
    frames.apply(*frame_message(cells, 0, 40, strip=0, strips=1, gen=2), 0.0)
    assert scene.draw(screen, context, False) == []  # 0 s later: not yet
    wall_jumped = Frame(
        ClusterModel(),
        99.0,
        99.0,
        Link("connected", 0.0),
        "classic",
        TextCache(),
        jobs,
        frames,
        ticks=500.0,
    )
    assert scene.draw(screen, wall_jumped, False) == []  # the wall clock moved, time did not
    later = Frame(
        ClusterModel(),
        10.1,
        10.1,
        Link("connected", 0.0),
        "classic",
        TextCache(),
        jobs,
        frames,
        ticks=500.1,
    )
    assert scene.draw(screen, later, False)
    assert scene.draw(screen, later, False) == []  # nothing new


def test_the_jobs_model_keeps_life_and_prime_jobs_apart():
    from tests.head.test_primes_scene import status as primes_status

    jobs = JobsModel()
    for status in (primes_status(), life_status(), life_status("l1-old", "done", ts=5.0)):
        assert jobs.apply(topics.job_status(status.job), protocol.encode(status), 0.0)
    assert jobs.malformed == 0
    assert jobs.current().job == "p1-a" and jobs.current_life().job == "l1-a"
    # The control topic beside a Life job's status is not the display's business.
    assert not jobs.apply(topics.job_life_control("l1-a"), b'{"v":1}', 0.0)
    assert jobs.malformed == 0
