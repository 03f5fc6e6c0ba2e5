"""A room of thousands on the kiosk: groups instead of tiles, standouts by name, and a
click or a key into a group. Real frames (SDL dummy driver), pixels checked."""

from dataclasses import replace

import pygame
import pytest
from hypothesis import given
from hypothesis import strategies as st

from head.config import DisplayOptions
from head.display import colors
from head.display.app import DisplayApp
from head.display.cluster import ClusterModel, NodeState
from head.display.cluster_scene import ClusterScene
from head.display.groups import (
    MAX_GROUP_NODES,
    Group,
    GroupRule,
    group_look,
    group_nodes,
    room_standouts,
    room_summary,
    standouts,
)
from head.display.layout import Layout
from head.display.scene import Frame, Link
from head.display.text import TextCache
from piswarm.errors import ConfigError
from piswarm.fleet import sim_node_ids
from tests.head.test_cluster import birth, offline, telemetry
from tests.head.test_display_boundary import HandSource

NOW = 101.0


def temp_of(i: int) -> float:
    """A spread of temperatures, 45.0 to 74.9 °C, that no two neighbours share."""
    return 45.0 + (i * 7919 % 300) / 10


def room(count: int, *, hot: str | None = None, down: str | None = None, throttled=()):
    """Messages for ``count`` live nodes; ``down`` went offline, ``hot`` is at 79.5 °C."""
    messages = []
    for i, node in enumerate(sim_node_ids(count)):
        temp = 79.5 if node == hot else temp_of(i)
        messages.append((*birth(node), 100.0))
        throttle = 0x4 if node in throttled else 0
        messages.append((*telemetry(node, 1, temp=temp, throttle=throttle), 100.5))
    if down:
        messages.append((*offline(down), 100.6))
    return messages


def model_of(messages) -> ClusterModel:
    model = ClusterModel()
    for topic, payload, at in messages:
        model.apply(topic, payload, at)
    return model


def colour_at(surface, point):
    return tuple(surface.get_at(point))[:3]


# -- groups, pure ----------------------------------------------------------------------


def test_declared_groups_come_first_then_desks_by_id_then_runs():
    ids = [f"pi-{d:02d}-{k}" for d in range(1, 5) for k in (1, 2, 3)] + ["rack-b-1", "rack-b-2"]
    rules = [
        GroupRule("front desk", nodes=frozenset({"pi-01-1", "pi-01-2"})),
        GroupRule("rack B", match="rack-b-*"),
        GroupRule("nobody", match="nothing-*"),
    ]
    groups = group_nodes(ids, rules)
    names = [g.name for g in groups]
    assert names == ["front desk", "rack B", "pi-01", "pi-02", "pi-03", "pi-04"]
    assert groups[0].nodes == ("pi-01-1", "pi-01-2") and groups[2].nodes == ("pi-01-3",)
    # Every node in exactly one group.
    assert sorted(n for g in groups for n in g.nodes) == sorted(ids)
    # A node listed by a later rule but matched by an earlier glob goes to the earlier.
    first = group_nodes(["rack-b-1"], [GroupRule("a", match="rack-*"), rules[1]])
    assert [g.name for g in first] == ["a"]


def test_a_simulated_room_without_desks_is_grouped_in_runs_of_consecutive_ids():
    ids = sim_node_ids(5000)
    groups = group_nodes(ids)
    assert 200 <= len(groups) <= 240
    assert groups[0].name == "sim-0001…0021" and groups[0].nodes == tuple(ids[:21])
    assert sum(len(g.nodes) for g in groups) == 5000
    # Desks too big to be desks are runs as well.
    big = [f"lab-{k:04d}" for k in range(MAX_GROUP_NODES + 1)] + ["pc-1", "pc-2"]
    assert all(len(g.nodes) < MAX_GROUP_NODES for g in group_nodes(big))


def test_standouts_name_the_hottest_the_throttled_and_the_missing():
    model = model_of(room(300, hot="sim-042", down="sim-007", throttled={"sim-100", "sim-200"}))
    found = standouts(model.views(), NOW, top=3)
    assert found.hottest[0] == ("sim-042", 79.5) and len(found.hottest) == 3
    assert found.throttled == ("sim-100", "sim-200") and found.throttled_total == 2
    assert found.offline == ("sim-007",) and found.offline_total == 1


def test_layout_file_groups_and_their_errors(tmp_path):
    path = tmp_path / "room.toml"
    path.write_text(
        '[layout]\n[[layout.group]]\nname = "desk 1"\nnodes = ["pi-01-1", "pi-01-2"]\n'
        '[[layout.group]]\nname = "rack B"\nmatch = "rack-b-*"\n'
    )
    layout = Layout.load(path)
    assert not layout.seats
    assert [g.name for g in layout.groups] == ["desk 1", "rack B"]
    for body, error in [
        ('[[layout.group]]\nnodes = ["a"]\n', "needs a name"),
        ('[[layout.group]]\nname = "x"\n', "list its nodes or give a match glob"),
        (
            2 * '[[layout.group]]\nname = "x"\nmatch = "a*"\n',
            "a second group named 'x'",
        ),
        ('[[layout.group]]\nname = "x"\nnodes = ["Not An Id"]\n', "invalid node id"),
    ]:
        path.write_text("[layout]\n" + body)
        with pytest.raises(ConfigError, match=error):
            Layout.load(path)


# -- real frames -----------------------------------------------------------------------


@pytest.fixture
def screen():
    pygame.init()
    yield pygame.Surface((1920, 1080))
    pygame.quit()


def draw(scene, surface, model, full=True, ticks=1000.0):
    frame = Frame(model, NOW, NOW, Link("connected", 0.0), "classic", TextCache(), ticks=ticks)
    scene.draw(surface, frame, full)


def test_the_labs_240_stay_tiles_even_in_a_small_window():
    pygame.init()
    try:
        surface = pygame.Surface((1280, 720))
        scene = ClusterScene()
        draw(scene, surface, model_of(room(240)))
        assert not scene.crowded and scene.tile_rect("sim-240") is not None
    finally:
        pygame.quit()


def test_5000_nodes_render_as_groups_with_every_node_a_square(screen):
    ids = sim_node_ids(5000)
    model = model_of(room(5000, hot="sim-4321", down="sim-0100", throttled={"sim-2500"}))
    scene = ClusterScene()
    draw(scene, screen, model)
    assert scene.crowded and scene.tile_rect("sim-0001") is None
    # Each node's square in its group's cell, in its own state's colour.
    for i in (0, 1, 998, 4998):
        square = scene.node_square(ids[i])
        expected = colors.temp_color(round(temp_of(i)))
        assert colour_at(screen, square.center) == expected, ids[i]
    assert colour_at(screen, scene.node_square("sim-0100").center) == colors.OFFLINE
    throttled = scene.node_square("sim-2500")
    assert colour_at(screen, throttled.topleft) == colors.ALERT
    assert colour_at(screen, scene.node_square("sim-4321").center) == colors.temp_color(80)
    # A cell's own colour is its group's average temperature, in whole degrees (a pixel
    # beside the squares).
    group = scene.grid.groups[3]
    cell = scene.group_rect(group.name)
    average = round(sum(temp_of(ids.index(n)) for n in group.nodes) / len(group.nodes))
    assert colour_at(screen, (cell.right - 3, cell.bottom - 3)) == colors.temp_color(average)
    # The panel names the standouts: the hottest first, in its colour.
    panel = pygame.surfarray.pixels3d(screen)[scene.grid.panel.x : scene.grid.panel.right]
    hottest = colors.temp_color(79.5)
    assert (panel == hottest).all(axis=2).any()
    assert (panel == colors.OFFLINE).all(axis=2).any()
    del panel
    # Nothing changed: a frame redraws nothing.
    frame = Frame(model, NOW, NOW, Link("connected", 0.0), "classic", TextCache(), ticks=1000.1)
    assert scene.draw(screen, frame, False) == []


def test_a_layout_of_the_labs_seats_with_thousands_more_nodes_is_grouped(screen):
    seats = Layout.from_seats(12, 20, sim_node_ids(240))
    scene = ClusterScene(layout=seats, groups=[GroupRule("first desk", match="sim-000?")])
    draw(scene, screen, model_of(room(3000)))
    assert scene.crowded
    assert scene.group_rect("first desk") is not None
    assert scene.grid.groups[0].nodes == tuple(sim_node_ids(3000)[:9])


def test_a_click_opens_a_group_as_tiles_and_esc_goes_back_without_quitting():
    ids = sim_node_ids(5000)
    source = HandSource(room(5000))
    scene = ClusterScene()
    app = DisplayApp(
        model=ClusterModel(),
        source=source,
        scenes=[scene],
        options=DisplayOptions(size=(1920, 1080), fps=1000),
        clock=lambda: NOW,
    )
    seen: dict[str, object] = {}
    steps = iter(
        [
            # 1: the room in groups; click on the 11th group's cell
            lambda: pygame.event.post(
                pygame.event.Event(
                    pygame.MOUSEBUTTONDOWN,
                    button=1,
                    pos=scene.group_rect(scene.grid.groups[10].name).center,
                )
            ),
            # 2: its tiles; Esc goes back to the room (and does not quit)
            lambda: (
                seen.update(
                    focus=scene.focus.name,
                    tile=colour_at(app.surface, scene.probe_point(ids[210])),
                    other=scene.tile_rect(ids[0]),
                ),
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE)),
            ),
            # 3: the room again; an arrow picks the next group, Enter opens it
            lambda: (
                seen.update(back=scene.focus is None and scene.crowded),
                [
                    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k))
                    for k in (pygame.K_RIGHT, pygame.K_RETURN)
                ],
            ),
            lambda: seen.update(keyed=scene.focus.name if scene.focus else None),
        ]
    )

    def on_frame(app):
        if not scene.crowded or sum(len(g.nodes) for g in scene.grid.groups) < len(ids):
            return True  # the whole room arrives first (laid out again once a second)
        step = next(steps, None)
        if step is None:
            return False
        step()
        return True

    app.run(on_frame=on_frame)
    group = scene.grid.groups[10]
    assert seen["focus"] == group.name and ids[210] in group.nodes
    assert seen["tile"] == colors.temp_color(temp_of(210))
    assert seen["other"] is None  # only the group's nodes are tiles
    assert seen["back"] is True
    assert seen["keyed"] == scene.grid.groups[11].name
    assert NodeState.LIVE is app.model.get(ids[0]).state(NOW)


NODE_STATES = st.lists(
    st.tuples(
        st.sampled_from(["live", "stale", "offline", "never", "throttled"]),
        st.sampled_from([45.0, 55.5, 61.2, 61.2, 79.9, None]),
    ),
    min_size=1,
    max_size=120,
)


@given(states=NODE_STATES, size=st.integers(1, 40))
def test_the_rooms_figures_from_its_groups_are_the_models_own(states, size):
    """The header and the panel of a room in groups come from what the sweep saw of each
    group: merged, they are what a pass over every node finds."""
    model = ClusterModel(expected=[f"n-{i:03d}" for i in range(len(states))])
    for i, (state, temp) in enumerate(states):
        node = f"n-{i:03d}"
        if state == "never":
            continue
        model.apply(*birth(node, interval=1.0), received_at=100.0)
        at = 90.0 if state == "stale" else NOW - 0.5
        throttle = 0x4 if state == "throttled" else 0
        model.apply(*telemetry(node, 1, temp=temp, throttle=throttle), received_at=at)
        if state == "offline":
            model.apply(*offline(node), received_at=100.5)
    ids = [v.node_id for v in model.views()]
    groups = [Group(f"g{k}", tuple(ids[k : k + size])) for k in range(0, len(ids), size)]
    facts = [group_look(g, model, NOW, top=3)[1] for g in groups]
    merged, direct = room_summary(facts), model.summary(NOW)
    assert merged.average_temp == pytest.approx(direct.average_temp)  # summed in another order
    assert replace(merged, average_temp=None) == replace(direct, average_temp=None)
    assert room_standouts(facts, top=3) == standouts(model.views(), NOW, top=3)
