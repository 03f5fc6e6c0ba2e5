"""The display's pure parts: colour scale, layout, how a tile looks. No screen needed."""

import itertools
import re

import pytest

from head.display import colors
from head.display.cluster import ClusterModel, NodeState
from head.display.cluster_scene import tile_look
from head.display.layout import Geometry, Layout
from head.display.scene import Frame, Link
from piswarm.errors import ConfigError
from tests.head.test_cluster import birth, offline, telemetry


@pytest.mark.parametrize(
    ("temp", "expected"),
    [
        (40, (40, 90, 255)),
        (50, (30, 200, 70)),
        (60, (250, 225, 30)),
        (70, (255, 140, 0)),
        (80, (230, 20, 20)),
        (20, (40, 90, 255)),
        (95, (230, 20, 20)),
    ],
)
def test_classic_scale_hits_the_lab_colours_and_clamps(temp, expected):
    assert colors.temp_color(temp) == expected


def test_scale_is_continuous_and_the_colour_blind_palette_is_ordered_in_lightness():
    steps = [colors.temp_color(40 + i / 10) for i in range(401)]
    assert all(
        max(abs(a - b) for a, b in zip(x, y, strict=True)) <= 3
        for x, y in itertools.pairwise(steps)
    )
    light = [sum(colors.temp_color(t, "cividis")) for t in range(40, 81)]
    assert light == sorted(light) and len(set(light)) > 30


def test_text_colour_contrasts():
    assert colors.text_on((250, 225, 30)) == (10, 10, 14)  # dark text on yellow
    assert colors.text_on((40, 90, 255)) == (250, 250, 252)  # light text on blue


def test_default_grid_is_the_labs_12_by_20():
    layout = Layout.from_nodes([f"pi-{i:03d}" for i in range(240)])
    assert (layout.rows, layout.columns) == (12, 20)
    assert layout.seats["pi-000"] == (0, 0) and layout.seats["pi-239"] == (11, 19)


@pytest.mark.parametrize("count", [1, 2, 7, 60, 100, 240, 241, 500])
def test_any_number_of_nodes_fits_and_no_tiles_overlap(count):
    layout = Layout.from_nodes([f"n-{i}" for i in range(count)])
    assert len(layout.seats) == count
    geometry = Geometry(layout=layout, area=(0, 90, 1920, 930), overflow_rows=0)
    rects = [geometry.tile_rect(n) for n in layout.seats]
    for x, y, w, h in rects:
        assert x >= 0 and x + w <= 1920 and y >= 90 and y + h <= 1020 and w >= 8 and h >= 8
    spots = {(x, y) for x, y, _w, _h in rects}
    assert len(spots) == count


def test_layout_file_seats_and_errors(tmp_path):
    path = tmp_path / "room.toml"
    path.write_text('[layout]\nrows = 2\ncolumns = 3\nnodes = ["a", "b", "", "c"]\n')
    layout = Layout.load(path)
    assert layout.seats == {"a": (0, 0), "b": (0, 1), "c": (1, 0)}
    for text, reason in [
        ('[layout]\nrows = 1\ncolumns = 1\nnodes = ["a", "b"]\n', "only 1x1 exist"),
        ('[layout]\nrows = 2\ncolumns = 2\nnodes = ["a", "a"]\n', "two seats"),
        ('[layout]\nrows = 2\ncolumns = 2\nnodes = ["Bad_Id"]\n', "invalid node id"),
        ("[layout]\nrows = 0\ncolumns = 2\n", "rows and columns are 1-100"),
        ("rows = 2\n", "needs a [layout] table"),
        ("[layout\n", "room.toml"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(reason)):
            Layout.load(path)


def test_overflow_rects_sit_below_the_grid():
    layout = Layout.from_seats(2, 4, ["a", "b"])
    geometry = Geometry(layout=layout, area=(0, 0, 800, 600), overflow_rows=1)
    grid_bottom = max(y + h for (_x, y, _w, h) in map(geometry.seat_rect, (1, 1), (0, 3)))
    overflow = geometry.overflow_rects(3)
    assert len(overflow) == 3 and all(y >= grid_bottom for (_x, y, _w, _h) in overflow)


def frame(model, now=10.0, palette="classic"):
    return Frame(model, now, now, Link("connected", 0.0), palette, text=None)


def test_tile_look_for_every_state():
    model = ClusterModel(expected=["live", "hot", "stale", "gone", "ghost"])
    for node in ("live", "hot", "stale", "gone"):
        model.apply(*birth(node, interval=1.0), received_at=0.0)
    model.apply(*telemetry("live", 1, temp=60.0), received_at=9.5)
    model.apply(*telemetry("hot", 1, temp=82.0, throttle=0x5), received_at=9.5)
    model.apply(*telemetry("stale", 1, temp=60.0), received_at=1.0)
    model.apply(*offline("gone"), received_at=5.0)
    looks = {v.node_id: tile_look(v, frame(model)) for v in model.nodes()}
    assert looks["live"].state is NodeState.LIVE and looks["live"].temp == "60.0°C"
    assert looks["live"].background == colors.temp_color(60)
    assert looks["hot"].throttled and looks["hot"].under_voltage
    assert looks["stale"].state is NodeState.STALE
    assert looks["stale"].background != colors.temp_color(60)  # faded
    assert looks["gone"].background == colors.OFFLINE and looks["gone"].footer == "seen 5s ago"
    assert looks["ghost"].background == colors.NEVER_SEEN and looks["ghost"].temp == ""
    # Equal content, equal look: what lets the scene skip redrawing a tile.
    assert tile_look(model.get("live"), frame(model)) == looks["live"]


def test_the_text_cache_is_bounded_in_pixel_bytes_least_recently_used_first():
    import pygame

    from head.display.text import TextCache

    pygame.font.init()
    try:
        cache = TextCache(max_bytes=200_000)
        first = cache.render("12:00:00", 40, (255, 255, 255))
        assert cache.render("12:00:00", 40, (255, 255, 255)) is first  # cached
        for second in range(1, 2000):  # a clock: new text every second, all day
            cache.render(f"12:{second // 60:02d}:{second % 60:02d}", 40, (255, 255, 255))
            cache.render("12:00:00", 40, (255, 255, 255))  # in use all along: kept
            assert cache.bytes <= 200_000
        assert cache.render("12:00:00", 40, (255, 255, 255)) is first
        assert cache.evicted > 1500 and 2 <= len(cache) < 200
        # One text larger than the whole bound is still drawn (and held alone).
        big = cache.render("x" * 400, 120, (255, 255, 255))
        assert big.get_width() > 0 and len(cache) == 1
    finally:
        pygame.font.quit()
