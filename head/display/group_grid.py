"""The room in groups: a cell per group, a square per node in it, and the standouts by name.

What :class:`~head.display.cluster_scene.ClusterScene` draws when the room has more nodes
than fit as readable tiles. Each cell is coloured by its group's average temperature and
holds a small square per node (its own temperature, grey when offline, dark when never
seen, red-edged when throttled), its name, the average and how many are online. A panel
on the right names the hottest nodes, and the throttled and offline ones.

Thousands of nodes at 1 Hz change every cell every second, so the cells are looked at in
a sweep, each once a second, a few in every frame (never all in one long frame), and
redrawn when they look different; the panel once a second. The header's figures and the
panel's names come from what the sweep saw of each group (:class:`GroupFacts`), so no
other pass goes over every node.
"""

import math

import pygame

from head.display import colors, icons
from head.display.cluster import ClusterSummary, NodeState
from head.display.colors import RGB
from head.display.groups import (
    Group,
    GroupFacts,
    GroupLook,
    Standouts,
    group_look,
    room_standouts,
    room_summary,
)
from head.display.layout import Layout, Rect
from head.display.scene import Frame

CELL_EVERY = 1.0
"""Seconds between two looks at a cell: at 5,000 nodes every cell changes every second,
and a look goes over each of its nodes."""
PANEL_SHARE = 0.2  # of the width, for the standouts
GAP = 6
PANEL_TOP = 8  # standouts listed per kind


def _cell_colour(look: GroupLook, palette: str) -> RGB:
    if look.average is not None:
        return colors.temp_color(look.average, palette)
    if look.live + look.stale:
        return colors.NO_SENSOR
    return colors.OFFLINE if look.offline else colors.NEVER_SEEN


def _node_colour(state: NodeState, temp: float | None, palette: str) -> RGB:
    if state is NodeState.NEVER:
        return colors.NEVER_SEEN
    if state is NodeState.OFFLINE:
        return colors.OFFLINE
    base = colors.NO_SENSOR if temp is None else colors.temp_color(temp, palette)
    return base if state is NodeState.LIVE else colors.blend(base, colors.BACKGROUND, 0.6)


class GroupGrid:
    """Cells for ``groups`` over ``area`` (the panel on its right); one selected."""

    def __init__(self, groups: list[Group], area: Rect) -> None:
        self.groups = groups
        x, y, w, h = area
        panel_w = int(w * PANEL_SHARE)
        self.panel = pygame.Rect(x + w - panel_w, y + GAP, panel_w - GAP, h - 2 * GAP)
        rows, columns = Layout.grid_for(len(groups))
        self.rows, self.columns = rows, columns
        cw = max(8, (w - panel_w - GAP * (columns + 1)) // columns)
        ch = max(8, (h - GAP * (rows + 1)) // rows)
        self.rects = [
            pygame.Rect(x + GAP + c * (cw + GAP), y + GAP + r * (ch + GAP), cw, ch)
            for r, c in (divmod(i, columns) for i in range(len(groups)))
        ]
        self.group_of = {node: i for i, g in enumerate(groups) for node in g.nodes}
        self.index_of = {g.name: i for i, g in enumerate(groups)}
        self.selected = 0
        self._looks: dict[int, GroupLook] = {}
        self._facts: dict[int, GroupFacts] = {}  # each group's, as the sweep last saw them
        self._fitted: dict[int, int] = {}  # each group's name: the size that fits its cell
        self._urgent: list[int] = []  # cells to redraw next frame (the selection moved)
        self._cursor = 0  # where the sweep goes on
        self._sweep_due = 0.0  # cells the sweep owes (a fraction carries over)
        self._swept_at: float | None = None
        self._standouts: Standouts | None = None
        self._squares: dict[int, tuple[int, int, int]] = {}  # group -> square size, per row, top

    # -- where things are -----------------------------------------------------------------

    def group_at(self, pos: tuple[int, int]) -> int | None:
        return next((i for i, rect in enumerate(self.rects) if rect.collidepoint(pos)), None)

    def _square_plan(self, i: int) -> tuple[int, int, int]:
        """(side, per row, top y) of the node squares in cell ``i``: as big as fit."""
        plan = self._squares.get(i)
        if plan is None:
            rect, count = self.rects[i], max(1, len(self.groups[i].nodes))
            top = rect.y + max(14, rect.h // 4)
            width, height = rect.w - 8, rect.bottom - 4 - top
            side = 1
            for s in range(min(width, height, 40), 0, -1):
                per_row = max(1, width // (s + 1))
                if math.ceil(count / per_row) * (s + 1) <= height:
                    side = s
                    break
            plan = self._squares[i] = (side, max(1, width // (side + 1)), top)
        return plan

    def node_rect(self, node_id: str) -> pygame.Rect | None:
        """Where ``node_id``'s square is (inside its group's cell)."""
        i = self.group_of.get(node_id)
        if i is None:
            return None
        side, per_row, top = self._square_plan(i)
        row, column = divmod(self.groups[i].nodes.index(node_id), per_row)
        rect = self.rects[i]
        return pygame.Rect(rect.x + 4 + column * (side + 1), top + row * (side + 1), side, side)

    def summary(self) -> ClusterSummary:
        """The room's figures from the groups' facts, as the sweep last saw them (each
        group within the last second): no pass over thousands of nodes for the header."""
        return room_summary(self._facts.values())

    def move(self, dx: int, dy: int) -> None:
        """Move the selection (arrow keys); the two cells are redrawn."""
        if not self.groups:
            return
        row, column = divmod(self.selected, self.columns)
        row = min(max(0, row + dy), self.rows - 1)
        column = min(max(0, column + dx), self.columns - 1)
        new = min(row * self.columns + column, len(self.groups) - 1)
        for i in (self.selected, new):
            self._looks.pop(i, None)
            self._urgent.append(i)
        self.selected = new

    # -- drawing --------------------------------------------------------------------------

    def draw(
        self, surface: pygame.Surface, frame: Frame, full: bool, review: bool
    ) -> list[pygame.Rect]:
        """Redraw what changed: every cell when ``full``; else the next cells of a sweep
        that looks at each cell once every :data:`CELL_EVERY` seconds (the share due since
        the last frame), and the panel on ``review`` (once a second)."""
        model, count = frame.model, len(self.groups)
        if full or self._swept_at is None:
            self._looks.clear()
            visit = list(range(count))
            self._sweep_due = 0.0
        else:
            self._sweep_due += count * max(0.0, frame.ticks - self._swept_at) / CELL_EVERY
            due = min(count, int(self._sweep_due))
            self._sweep_due -= due
            visit = [(self._cursor + k) % count for k in range(due)]
            self._cursor = (self._cursor + due) % max(1, count)
        self._swept_at = frame.ticks
        visit += [i for i in self._urgent if i not in visit]
        self._urgent.clear()
        dirty: list[pygame.Rect] = []
        for i in visit:
            look, self._facts[i] = group_look(self.groups[i], model, frame.view_time, top=PANEL_TOP)
            if self._looks.get(i) == look:
                continue
            self._looks[i] = look
            dirty.append(self._draw_cell(surface, frame, i, look))
        if full or review:
            panel = self._draw_panel(surface, frame, full)
            if panel is not None:
                dirty.append(panel)
        return dirty

    def _draw_cell(
        self, surface: pygame.Surface, frame: Frame, i: int, look: GroupLook
    ) -> pygame.Rect:
        rect = self.rects[i]
        text = frame.text
        background = _cell_colour(look, frame.palette)
        ink = colors.text_on(background)
        pygame.draw.rect(surface, colors.BACKGROUND, rect.inflate(4, 4))
        pygame.draw.rect(surface, background, rect, border_radius=4)
        side, per_row, top = self._square_plan(i)
        label_size = max(9, min(top - rect.y - 4, 18))
        fitted = self._fitted.get(i)
        if fitted is None:  # a name and a cell that do not change: measured once
            fitted = self._fitted[i] = text.fit(look.name, label_size, rect.w - 8)
        label = text.render(look.name, fitted, ink)
        surface.blit(label, (rect.x + 4, rect.y + 3))
        online = look.live + look.stale
        figure = f"{look.average}°C {online}/{look.total}" if look.average is not None else ""
        figure = figure or f"{online}/{look.total}"
        if rect.w >= 90 and top - rect.y >= 2 * label_size:
            small = text.render(figure, text.fit(figure, label_size - 2, rect.w - 8), ink)
            surface.blit(small, (rect.x + 4, rect.y + 3 + label.get_height()))
        for n, (state, temp, throttled) in enumerate(look.nodes):
            row, column = divmod(n, per_row)
            square = pygame.Rect(
                rect.x + 4 + column * (side + 1), top + row * (side + 1), side, side
            )
            if square.bottom > rect.bottom:
                break
            surface.fill(_node_colour(state, temp, frame.palette), square)
            if throttled:
                pygame.draw.rect(surface, colors.ALERT, square, width=max(1, side // 4))
        if look.throttled:
            icons.warning(surface, (rect.right - 11, rect.y + 11))
        if look.stale + look.offline and look.average is not None:
            # the cell's colour hides them: a grey corner says some are missing
            corner = [
                (rect.x, rect.bottom - 1),
                (rect.x, rect.bottom - 10),
                (rect.x + 9, rect.bottom - 1),
            ]
            pygame.draw.polygon(surface, colors.OFFLINE, corner)
        if i == self.selected:
            pygame.draw.rect(surface, colors.TEXT, rect.inflate(4, 4), width=2, border_radius=5)
        return rect.inflate(4, 4)

    def _draw_panel(self, surface: pygame.Surface, frame: Frame, full: bool) -> pygame.Rect | None:
        found = room_standouts(self._facts.values(), top=PANEL_TOP)
        if not full and found == self._standouts:
            return None
        self._standouts = found
        panel, text = self.panel, frame.text
        pygame.draw.rect(surface, colors.PANEL, panel, border_radius=6)
        clip = surface.get_clip()
        surface.set_clip(panel)  # a small window cuts the lists short, not the cells
        size = max(11, min(22, panel.h // 34))
        x, y = panel.x + 10, panel.y + 8

        def heading(label: str, colour: RGB) -> None:
            nonlocal y
            surf = text.render(label, size + 2, colour)
            surface.blit(surf, (x, y))
            y += surf.get_height() + 4

        def line(node: str, detail: str, colour: RGB) -> None:
            nonlocal y
            label = f"{node}  {detail}" if detail else node
            surf = text.render(label, text.fit(label, size, panel.w - size - 26), colors.TEXT)
            side = max(6, surf.get_height() - 6)
            pygame.draw.rect(surface, colour, (x, y + 3, side, side), border_radius=2)
            surface.blit(surf, (x + side + 8, y))
            y += surf.get_height() + 2

        heading("Hottest", colors.TEXT)
        for node, temp in found.hottest:
            line(node, f"{temp:.1f}°C", colors.temp_color(temp, frame.palette))
        kinds = (
            ("Throttled", found.throttled, found.throttled_total, colors.ALERT, colors.ALERT),
            (
                "Offline or stale",
                found.offline,
                found.offline_total,
                colors.WARNING,
                colors.OFFLINE,
            ),
        )
        for title, named, total, alarm, swatch in kinds:
            y += size // 2
            heading(f"{title}: {total}", alarm if named else colors.TEXT_DIM)
            for node in named:
                line(node, "", swatch)
            if total > len(named):
                heading(f"  + {total - len(named)} more", colors.TEXT_DIM)
        surface.set_clip(clip)
        return panel.copy()
