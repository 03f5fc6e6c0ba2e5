"""The cluster scene: one tile per node, laid out like the room.

Each tile shows the node's name, its temperature in large type on a colour from the
temperature scale, a CPU-load bar, and icons for throttling and under-voltage. States are
told apart by more than colour: stale tiles are faded and hatched, offline tiles are grey
and say when the node was last seen, seats never heard from are dark and empty.

Only tiles whose content changed are redrawn (a signature per tile), so a frame with
nothing new costs almost nothing.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pygame

from head.display import colors, icons
from head.display.cluster import ClusterSummary, NodeState, NodeView
from head.display.colors import RGB
from head.display.group_grid import GroupGrid
from head.display.groups import Group, GroupRule, group_nodes
from head.display.layout import Geometry, Layout, Rect
from head.display.scene import Frame
from piswarm.durations import ago

HEADER_SHARE = 0.085
LEGEND_SHARE = 0.055
RELAYOUT_EVERY = 1.0  # seconds: an auto layout follows new nodes at most this often
REVIEW_EVERY = 1.0  # seconds: time alone changes tiles (stale, "seen 5s ago") this often
MIN_TILE = (48, 32)
"""Pixels: a room whose tiles would be smaller is shown in groups (head/display/groups.py).
At 1920 x 1080 that is past ~700 nodes; the lab's 240 are tiles even at 1280 x 720."""
HEADER_EVERY = 0.25  # seconds: the header's clock; 4 Hz keeps its seconds on time
SUMMARY_EVERY = 1.0  # seconds: the header's figures, counted over every node


@dataclass(frozen=True)
class TileLook:
    """Everything that decides how a tile looks: equal looks need no redraw."""

    state: NodeState
    label: str
    temp: str
    background: RGB
    load: int  # CPU percent, in steps of 5
    throttled: bool
    under_voltage: bool
    footer: str


def tile_look(view: NodeView, frame: Frame) -> TileLook:
    """How one node's tile should look now (pure: tested without a screen)."""
    state = view.state(frame.view_time)
    telemetry = view.telemetry
    throttle = telemetry.throttle if telemetry else None
    now_flags = throttle.now if throttle else ()
    temp = view.temp_c
    ip = view.birth.ip if view.birth and view.birth.ip else ""
    if state is NodeState.NEVER:
        return TileLook(state, view.node_id, "", colors.NEVER_SEEN, 0, False, False, "never seen")
    if state is NodeState.OFFLINE:
        seen = view.last_seen
        footer = f"seen {ago(frame.view_time - seen)}" if seen is not None else "offline"
        return TileLook(state, view.node_id, "offline", colors.OFFLINE, 0, False, False, footer)
    base = colors.NO_SENSOR if temp is None else colors.temp_color(temp, frame.palette)
    background = base if state is NodeState.LIVE else colors.blend(base, colors.BACKGROUND, 0.6)
    return TileLook(
        state=state,
        label=view.node_id,
        temp="--" if temp is None else f"{temp:.1f}°C",
        background=background,
        load=int(telemetry.cpu_percent // 5 * 5) if telemetry else 0,
        throttled=any(f in now_flags for f in ("throttled", "freq_capped", "soft_temp_limit")),
        under_voltage="under_voltage" in now_flags,
        footer="stale" if state is NodeState.STALE else ip,
    )


class ClusterScene:
    """The whole room at a glance."""

    name = "cluster"

    def __init__(
        self,
        *,
        layout: Layout | None = None,
        rows: int = 0,
        columns: int = 0,
        groups: Sequence[GroupRule] = (),
    ) -> None:
        self.fixed_layout = layout
        self.rows, self.columns = rows, columns
        self.layout = layout or Layout.from_nodes([], rows, columns)
        self.group_rules = tuple(groups) or (layout.groups if layout else ())
        self.geometry: Geometry | None = None
        self.grid: GroupGrid | None = None  # the room in groups, when it is crowded
        self.focus: Group | None = None  # the group shown as tiles, in a crowded room
        self._planned = False
        self._replan = False  # a key or a click changed what is shown
        self._size: tuple[int, int] = (0, 0)
        self._looks: dict[str, TileLook] = {}
        self._rects: dict[str, Rect] = {}
        self._header: tuple[object, ...] = ()
        self._overflow: list[str] = []
        self._laid_out_at = 0.0
        self._known: frozenset[str] = frozenset()
        self._members = -1  # the model's membership count at the last layout
        self._settled = False  # every node the model knows is laid out
        self._seen_version = 0  # the model's version at the last frame
        self._reviewed_at = 0.0
        self._header_at = 0.0
        self._counted: ClusterSummary | None = None
        self._counted_at = 0.0

    @property
    def crowded(self) -> bool:
        """Whether the room is shown in groups (too many nodes for readable tiles)."""
        return self.grid is not None

    # -- geometry ---------------------------------------------------------------------------

    def _plan(self, frame: Frame, size: tuple[int, int], full: bool) -> bool:
        """(Re)compute layout and tile rectangles; True when everything must be redrawn."""
        model = frame.model
        unchanged = model.members == self._members and size == self._size and self._settled
        if not (full or self._replan) and unchanged:
            return False
        self._members = model.members
        ids = every = frozenset(v.node_id for v in model.views())
        relayout = False
        if self.fixed_layout is None:
            # Follow the fleet as it appears (retained messages arrive in a burst at start),
            # but re-arrange the room at most once a second.
            due = frame.ticks - self._laid_out_at >= RELAYOUT_EVERY
            if ids != self._known and (due or not self._known):
                self.layout = Layout.from_nodes(ids, self.rows, self.columns)
                self._laid_out_at = frame.ticks
                self._known = ids
                relayout = True
            ids = self._known
        # Laid out for every node known (else: look again next frame; comparing the two
        # sets every frame would cost a pass over thousands of nodes).
        self._settled = self.fixed_layout is not None or ids == every
        overflow = sorted(ids - set(self.layout.seats))
        w, h = size
        header, legend = int(h * HEADER_SHARE), int(h * LEGEND_SHARE)
        area = (0, header, w, h - header - legend)
        crowded = self._too_small(overflow, area)
        if overflow != self._overflow or crowded != self.crowded:
            relayout = True
        if not (full or relayout or self._replan or size != self._size or not self._planned):
            return False
        self._planned, self._replan = True, False
        self._overflow = overflow
        self._size = size
        self._looks.clear()
        self._header = ()
        self._rects = {}
        self.geometry = None
        if not crowded:
            self.grid = self.focus = None
            self.geometry = Geometry(
                layout=self.layout, area=area, overflow_rows=1 if overflow else 0
            )
            self._rects = {n: r for n in self.layout.seats if (r := self.geometry.tile_rect(n))}
            for node_id, rect in zip(
                overflow, self.geometry.overflow_rects(len(overflow)), strict=False
            ):
                self._rects[node_id] = rect
            return True
        selected = self.grid.groups[self.grid.selected].name if self.grid else None
        self.grid = GroupGrid(group_nodes(ids, self.group_rules), area)
        if selected in self.grid.index_of:
            self.grid.selected = self.grid.index_of[selected]
        if self.focus is not None:
            index = self.grid.index_of.get(self.focus.name)
            self.focus = None if index is None else self.grid.groups[index]
        if self.focus is not None:
            tiles = Layout.from_nodes(self.focus.nodes)
            self.geometry = Geometry(layout=tiles, area=area, overflow_rows=0)
            self._rects = {n: r for n in tiles.seats if (r := self.geometry.tile_rect(n))}
        return True

    def _too_small(self, overflow: list[str], area: Rect) -> bool:
        """Whether tiles for the room would be too small to read (or would not all fit)."""
        if len(overflow) > self.layout.columns:
            return True
        geometry = Geometry(layout=self.layout, area=area, overflow_rows=1 if overflow else 0)
        width, height = geometry.tile_size
        return width < MIN_TILE[0] or height < MIN_TILE[1]

    def tile_rect(self, node_id: str) -> pygame.Rect | None:
        """Where ``node_id``'s tile is on screen (after a frame was drawn)."""
        rect = self._rects.get(node_id)
        return pygame.Rect(rect) if rect else None

    def probe_point(self, node_id: str) -> tuple[int, int] | None:
        """A pixel inside the tile that shows its background colour (no text, no bar)."""
        rect = self.tile_rect(node_id)
        return None if rect is None else (rect.x + 4, rect.y + rect.h // 2)

    # -- drawing ----------------------------------------------------------------------------

    def group_rect(self, name: str) -> pygame.Rect | None:
        """Where group ``name``'s cell is (a crowded room, after a frame was drawn)."""
        if self.grid is None or self.focus is not None or name not in self.grid.index_of:
            return None
        return self.grid.rects[self.grid.index_of[name]].copy()

    def node_square(self, node_id: str) -> pygame.Rect | None:
        """Where ``node_id``'s square is in its group's cell (a crowded room)."""
        if self.grid is None or self.focus is not None:
            return None
        return self.grid.node_rect(node_id)

    def open_group(self, index: int | None) -> bool:
        """Show group ``index`` as tiles (None: the whole room again)."""
        if self.grid is None:
            return False
        self.focus = None if index is None else self.grid.groups[index]
        self._replan = True
        return True

    def on_key(self, key: int) -> bool:
        """In a crowded room: arrows pick a group, Enter opens it, Esc or Backspace
        goes back to the whole room."""
        if self.grid is None:
            return False
        if self.focus is not None:
            return key in (pygame.K_ESCAPE, pygame.K_BACKSPACE) and self.open_group(None)
        moves = {
            pygame.K_LEFT: (-1, 0),
            pygame.K_RIGHT: (1, 0),
            pygame.K_UP: (0, -1),
            pygame.K_DOWN: (0, 1),
        }
        if key in moves:
            self.grid.move(*moves[key])
            return True
        if key in (pygame.K_RETURN, pygame.K_KP_ENTER):
            return self.open_group(self.grid.selected)
        return False

    def on_click(self, pos: tuple[int, int]) -> bool:
        """A click on a group opens it; in a group, a click beside the tiles goes back."""
        if self.grid is None:
            return False
        if self.focus is None:
            index = self.grid.group_at(pos)
            if index is None:
                return False
            self.grid.selected = index
            return self.open_group(index)
        if any(pygame.Rect(rect).collidepoint(pos) for rect in self._rects.values()):
            return False
        return self.open_group(None)

    def draw(self, surface: pygame.Surface, frame: Frame, full: bool) -> list[pygame.Rect]:
        full = self._plan(frame, surface.get_size(), full)
        dirty: list[pygame.Rect] = []
        if full:
            surface.fill(colors.BACKGROUND)
            dirty.append(surface.get_rect())
            self._draw_legend(surface, frame)
        tick = frame.ticks
        if full or tick - self._header_at >= HEADER_EVERY:
            self._header_at = tick
            header = self._draw_header(surface, frame, full)
            if header:
                dirty.append(header)
        model = frame.model
        if self.grid is not None and self.focus is None:  # the sweep needs no change list
            review = full or tick - self._reviewed_at >= REVIEW_EVERY
            if review:
                self._reviewed_at = tick
            self._seen_version = model.version
            dirty += self.grid.draw(surface, frame, full, review)
            return [surface.get_rect()] if full else dirty
        changed = model.changed_since(self._seen_version)
        review = full or changed is None or tick - self._reviewed_at >= REVIEW_EVERY
        if review:
            self._reviewed_at = tick
        if review:
            candidates: Iterable[str] = self._rects
        else:
            candidates = changed or ()
        self._seen_version = model.version
        for node_id in candidates:
            rect = self._rects.get(node_id)
            view = model.get(node_id)
            if rect is None or view is None:
                continue
            look = tile_look(view, frame)
            if not full and self._looks.get(node_id) == look:
                continue
            self._looks[node_id] = look
            dirty.append(self._draw_tile(surface, frame, pygame.Rect(rect), look))
        return [surface.get_rect()] if full else dirty

    def _draw_tile(
        self, surface: pygame.Surface, frame: Frame, rect: pygame.Rect, look: TileLook
    ) -> pygame.Rect:
        text = frame.text
        pygame.draw.rect(surface, colors.BACKGROUND, rect)
        pygame.draw.rect(surface, look.background, rect, border_radius=4)
        ink = colors.text_on(look.background)
        if look.state is NodeState.NEVER:
            ink = colors.TEXT_DIM
            pygame.draw.rect(surface, colors.PANEL, rect, width=1, border_radius=4)
        if look.state is NodeState.STALE:
            icons.hatch(surface, rect, colors.blend(look.background, colors.BACKGROUND, 0.5))
        small = max(9, int(rect.h * 0.2))
        label = text.render(look.label, text.fit(look.label, small, rect.w - 22), ink)
        surface.blit(label, (rect.x + 5, rect.y + 4))
        if look.temp:
            size = text.fit(look.temp, int(rect.h * 0.42), rect.w - 10)
            big = text.render(look.temp, size, ink)
            surface.blit(big, big.get_rect(center=(rect.centerx, rect.centery + rect.h // 20)))
        footer_y = rect.bottom - 7 - small
        if look.footer and rect.h >= 48:
            foot = text.render(look.footer, text.fit(look.footer, small, rect.w - 10), ink)
            surface.blit(foot, (rect.x + 5, footer_y))
        if look.state in (NodeState.LIVE, NodeState.STALE):
            bar = pygame.Rect(rect.x + 4, rect.bottom - 6, rect.w - 8, 3)
            pygame.draw.rect(surface, colors.blend(look.background, (0, 0, 0), 0.45), bar)
            bar.w = round(bar.w * min(look.load, 100) / 100)
            pygame.draw.rect(surface, ink, bar)
        icon_x = rect.right - 11
        if look.throttled:
            icons.warning(surface, (icon_x, rect.y + 11))
            icon_x -= 18
        if look.under_voltage:
            icons.bolt(surface, (icon_x, rect.y + 11))
        return rect

    def _summary(self, frame: Frame, full: bool) -> ClusterSummary:
        """The room's figures for the header, counted again at most once a second (a
        count goes over every node: 4 times a second is 12% of a core at 5,000)."""
        if full or self._counted is None or frame.ticks - self._counted_at >= SUMMARY_EVERY:
            # A room in groups is counted by its sweep (each group within the last second).
            grid = self.grid if self.focus is None else None
            self._counted = grid.summary() if grid else frame.model.summary(frame.view_time)
            self._counted_at = frame.ticks
        return self._counted

    def _draw_header(self, surface: pygame.Surface, frame: Frame, full: bool) -> pygame.Rect | None:
        w, h = surface.get_size()
        s = self._summary(frame, full)
        link = frame.link
        clock = time.strftime("%H:%M:%S", time.localtime(frame.now))
        hottest = f"{s.hottest[0]}  {s.hottest[1]:.1f}°C" if s.hottest else "-"
        average = f"{s.average_temp:.1f}°C" if s.average_temp is not None else "-"
        if link.state == "connected" and frame.ignored:
            broker, broker_colour = f"{frame.ignored:,} bad messages ignored", colors.WARNING
        elif link.state == "connected":
            broker, broker_colour = "broker connected", colors.OK
        elif link.state == "connecting":
            why = f" ({link.problem})" if link.problem else ""
            broker, broker_colour = f"connecting to the broker{why}", colors.WARNING
        else:
            since = time.strftime("%H:%M:%S", time.localtime(link.since))
            why = f" ({link.problem})" if link.problem else ""
            broker = f"BROKER UNREACHABLE{why} - last known state from {since}"
            broker_colour = colors.ALERT
        online = s.live + s.stale
        signature = (online, s.total, hottest, average, broker, clock, s.throttled)
        if not full and signature == self._header:
            return None
        self._header = signature
        rect = pygame.Rect(0, 0, w, int(h * HEADER_SHARE))
        surface.fill(colors.PANEL, rect)
        text = frame.text
        big, small = int(rect.h * 0.48), int(rect.h * 0.3)
        title = text.render("piswarm", big, colors.TEXT)
        surface.blit(title, (16, (rect.h - title.get_height()) // 2))
        items = [
            (f"{online}/{s.total} online", colors.TEXT),
            (f"hottest {hottest}", colors.TEXT),
            (f"average {average}", colors.TEXT),
            (f"{s.throttled} throttled", colors.ALERT if s.throttled else colors.TEXT_DIM),
        ]
        x = 32 + title.get_width()
        for label, colour in items:
            surf = text.render(label, small + 4, colour)
            surface.blit(surf, (x, (rect.h - surf.get_height()) // 2))
            x += surf.get_width() + 36
        clock_surf = text.render(clock, big, colors.TEXT)
        clock_x = w - clock_surf.get_width() - 16
        surface.blit(clock_surf, (clock_x, (rect.h - clock_surf.get_height()) // 2))
        broker_surf = text.render(broker, small, broker_colour)
        bx = w - clock_surf.get_width() - 36 - broker_surf.get_width()
        if link.state == "lost":  # a banner nobody can miss
            banner = pygame.Rect(bx - 10, 4, broker_surf.get_width() + 20, rect.h - 8)
            pygame.draw.rect(surface, (60, 10, 10), banner, border_radius=6)
        surface.blit(broker_surf, (bx, (rect.h - broker_surf.get_height()) // 2))
        return rect

    def _draw_legend(self, surface: pygame.Surface, frame: Frame) -> None:
        w, h = surface.get_size()
        rect = pygame.Rect(0, h - int(h * LEGEND_SHARE), w, int(h * LEGEND_SHARE))
        surface.fill(colors.PANEL, rect)
        text = frame.text
        size = max(10, int(rect.h * 0.42))
        bar = pygame.Rect(16, rect.y + rect.h // 4, min(420, w // 3), rect.h // 2)
        for i in range(bar.w):
            temp = colors.SCALE_MIN_C + (colors.SCALE_MAX_C - colors.SCALE_MIN_C) * i / bar.w
            pygame.draw.line(
                surface,
                colors.temp_color(temp, frame.palette),
                (bar.x + i, bar.y),
                (bar.x + i, bar.bottom),
            )
        for temp in (40, 50, 60, 70, 80):
            x = bar.x + round(bar.w * (temp - 40) / 40)
            ink = colors.text_on(colors.temp_color(temp, frame.palette))
            tick = text.render(f"{temp}", max(9, size - 4), ink)
            centre = (min(max(x, bar.x + 10), bar.right - 10), bar.centery)
            surface.blit(tick, tick.get_rect(center=centre))
        x = bar.right + 24
        swatch = pygame.Rect(0, rect.y + rect.h // 4, rect.h // 2 + 8, rect.h // 2)
        samples = [
            ("stale", colors.blend(colors.temp_color(55, frame.palette), colors.BACKGROUND, 0.6)),
            ("offline", colors.OFFLINE),
            ("never seen", colors.NEVER_SEEN),
            ("no sensor", colors.NO_SENSOR),
        ]
        for label, colour in samples:
            swatch.x = x
            pygame.draw.rect(surface, colour, swatch, border_radius=3)
            if label == "stale":
                icons.hatch(surface, swatch, colors.blend(colour, colors.BACKGROUND, 0.5))
            if label == "never seen":
                pygame.draw.rect(surface, colors.TEXT_DIM, swatch, width=1, border_radius=3)
            surf = text.render(label, size, colors.TEXT_DIM)
            surface.blit(surf, (swatch.right + 8, rect.centery - surf.get_height() // 2))
            x = swatch.right + 8 + surf.get_width() + 24
        for label, icon in (("throttled", icons.warning), ("under-voltage", icons.bolt)):
            icon(surface, (x + 9, rect.centery))
            surf = text.render(label, size, colors.TEXT_DIM)
            surface.blit(surf, (x + 24, rect.centery - surf.get_height() // 2))
            x += 24 + surf.get_width() + 24
        if self.focus is not None:
            line, colour = (
                f"{self.focus.name}: {len(self.focus.nodes)} nodes - Esc: the whole room",
                colors.TEXT,
            )
        elif self.grid is not None:
            line, colour = (
                f"{len(self.grid.groups)} groups - arrows + Enter or a click: look inside",
                colors.TEXT_DIM,
            )
        elif self._overflow:
            line = f"bottom row: {len(self._overflow)} nodes not in the layout"
            colour = colors.WARNING
        else:
            return
        note = text.render(line, text.fit(line, size, max(40, w - x - 32)), colour)
        surface.blit(note, (w - note.get_width() - 16, rect.centery - note.get_height() // 2))
