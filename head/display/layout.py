"""Where each node's tile goes: the room as a grid of seats, plus an overflow strip.

A :class:`Layout` maps node ids to (row, column) seats. It comes from a layout file
(``--layout room.toml``) that lists the seats in reading order, or is made for the nodes
at hand (sorted by id, in a grid shaped like the lab's 12 x 20 for 240). Nodes that have no
seat go to an overflow strip below the grid instead of being lost. Pure: no pygame.

Layout file::

    [layout]
    rows = 12
    columns = 20
    # seats in reading order (row by row); "" leaves a seat empty
    nodes = ["pi-04-1", "pi-04-2", "pi-04-3", "", "pi-05-1", ...]

    # Groups, for a room with more nodes than fit as tiles (head/display/groups.py):
    # listed nodes, or a glob. Seats are optional in a file that only groups.
    [[layout.group]]
    name = "lab 1, desk 4"
    nodes = ["pi-04-1", "pi-04-2", "pi-04-3"]
    [[layout.group]]
    name = "rack B"
    match = "rack-b-*"
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from head.display.groups import GroupRule
from piswarm.errors import ConfigError
from piswarm.protocol import ProtocolError, topics
from piswarm.tomlfile import read_toml

Rect = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class Layout:
    rows: int
    columns: int
    seats: dict[str, tuple[int, int]] = field(default_factory=dict)
    groups: tuple[GroupRule, ...] = ()

    def __post_init__(self) -> None:
        if not (1 <= self.rows <= 100 and 1 <= self.columns <= 100):
            raise ConfigError(f"layout {self.rows}x{self.columns}: rows and columns are 1-100")

    @property
    def expected(self) -> list[str]:
        """The node ids that have a seat (shown as 'never seen' until they report)."""
        return list(self.seats)

    @classmethod
    def grid_for(cls, count: int) -> tuple[int, int]:
        """Rows and columns for ``count`` tiles in the lab's 3:5 shape (240 -> 12 x 20)."""
        count = max(1, count)
        rows = max(1, round(math.sqrt(count * 3 / 5)))
        return rows, math.ceil(count / rows)

    @classmethod
    def from_nodes(cls, node_ids: Iterable[str], rows: int = 0, columns: int = 0) -> "Layout":
        """Seats in reading order for ``node_ids``, sorted; a grid that fits them all."""
        ids = sorted(set(node_ids))
        if not rows or not columns:
            fit_rows, _ = cls.grid_for(len(ids))
            rows = rows or fit_rows
            columns = columns or math.ceil(max(1, len(ids)) / rows)
        return cls.from_seats(rows, columns, ids)

    @classmethod
    def from_seats(
        cls, rows: int, columns: int, seats: Sequence[str], groups: Sequence[GroupRule] = ()
    ) -> "Layout":
        placed: dict[str, tuple[int, int]] = {}
        for index, node_id in enumerate(seats[: rows * columns]):
            if node_id:
                placed[node_id] = divmod(index, columns)
        return cls(rows=rows, columns=columns, seats=placed, groups=tuple(groups))

    @classmethod
    def load(cls, path: Path) -> "Layout":
        data = read_toml(path, "layout file")
        table = data.get("layout")
        if not isinstance(table, dict):
            raise ConfigError(f"layout file {path} needs a [layout] table")
        rows, columns, nodes = table.get("rows"), table.get("columns"), table.get("nodes", [])
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise ConfigError(f"layout file {path}: nodes must be a list of node ids")
        groups = _group_rules(path, table.get("group", []))
        if rows is None and columns is None and not nodes:
            rows = columns = 1  # groups only: no seats
        if not isinstance(rows, int) or not isinstance(columns, int):
            raise ConfigError(f"layout file {path}: rows and columns must be integers")
        if len(nodes) > rows * columns:
            raise ConfigError(
                f"layout file {path}: {len(nodes)} seats listed but only {rows}x{columns} exist"
            )
        seen: set[str] = set()
        for n in nodes:
            if not n:
                continue
            try:
                topics.validate_node_id(n)
            except ProtocolError as exc:
                raise ConfigError(f"layout file {path}: {exc}") from None
            if n in seen:
                raise ConfigError(f"layout file {path}: {n!r} has two seats")
            seen.add(n)
        return cls.from_seats(rows, columns, nodes, groups)


def _group_rules(path: Path, table: object) -> list[GroupRule]:
    """The ``[[layout.group]]`` tables of a layout file, checked."""
    if not isinstance(table, list) or not all(isinstance(t, dict) for t in table):
        raise ConfigError(f"layout file {path}: [[layout.group]] must be tables")
    rules: list[GroupRule] = []
    for i, entry in enumerate(table, 1):
        name, nodes, match = entry.get("name"), entry.get("nodes", []), entry.get("match")
        where = f"layout file {path}, group {i}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: needs a name")
        if any(rule.name == name for rule in rules):
            raise ConfigError(f"{where}: a second group named {name!r}")
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise ConfigError(f"{where}: nodes must be a list of node ids")
        if match is not None and not isinstance(match, str):
            raise ConfigError(f"{where}: match must be a glob such as 'pi-04-*'")
        if not nodes and not match:
            raise ConfigError(f"{where} ({name}): list its nodes or give a match glob")
        for n in nodes:
            try:
                topics.validate_node_id(n)
            except ProtocolError as exc:
                raise ConfigError(f"{where} ({name}): {exc}") from None
        rules.append(GroupRule(name=name, nodes=frozenset(nodes), match=match))
    return rules


@dataclass(frozen=True)
class Geometry:
    """Pixel rectangles of a layout on a screen area: tiles in the grid, then overflow."""

    layout: Layout
    area: Rect
    overflow_rows: int = 1
    gap: int = 6

    @property
    def tile_size(self) -> tuple[int, int]:
        _x, _y, w, h = self.area
        rows = self.layout.rows + self.overflow_rows
        tw = (w - self.gap * (self.layout.columns + 1)) // self.layout.columns
        th = (h - self.gap * (rows + 2)) // rows
        return max(8, tw), max(8, th)

    def seat_rect(self, row: int, column: int) -> Rect:
        x, y, _w, _h = self.area
        tw, th = self.tile_size
        return (
            x + self.gap + column * (tw + self.gap),
            y + self.gap + row * (th + self.gap),
            tw,
            th,
        )

    def tile_rect(self, node_id: str) -> Rect | None:
        seat = self.layout.seats.get(node_id)
        return None if seat is None else self.seat_rect(*seat)

    def overflow_rects(self, count: int) -> list[Rect]:
        """Rectangles for ``count`` seatless nodes below the grid (as many as fit)."""
        if self.overflow_rows <= 0:
            return []
        tw, th = self.tile_size
        row0 = self.layout.rows
        x, y = self.area[0], self.area[1]
        top = y + self.gap * 2 + row0 * (th + self.gap)
        per_row = self.layout.columns
        rects = []
        for i in range(min(count, per_row * self.overflow_rows)):
            r, c = divmod(i, per_row)
            rects.append((x + self.gap + c * (tw + self.gap), top + r * (th + self.gap), tw, th))
        return rects
