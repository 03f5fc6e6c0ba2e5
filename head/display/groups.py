"""The room in groups, for a kiosk with more nodes than fit as tiles. Pure: no pygame.

Past a few hundred nodes a tile each is too small to read, so the room scene shows one
cell per group instead: a desk, a rack, a lab. Groups come from the layout file
(``[[layout.group]]`` with a ``name`` and its ``nodes``, or a ``match`` glob such as
``"pi-04-*"``); a node that no declared group takes, or every node when none is
declared, is grouped by its id:

- by the id without its last ``-part`` (``pi-04-1``, ``pi-04-2``, ``pi-04-3``: desk
  ``pi-04``) when that makes between 2 and :data:`MAX_GROUPS` groups of at most
  :data:`MAX_GROUP_NODES`;
- else in runs of consecutive ids (``sim-0001`` ... ``sim-0021``), as many as make
  about :data:`RUN_GROUPS` groups.

:func:`group_look` sums a group up for its cell; :func:`standouts` picks the nodes that
must still be seen one by one (offline, throttled, the hottest).
"""

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from head.display.cluster import ClusterModel, NodeState, NodeView

MAX_GROUPS = 400
"""The most groups the automatic rules make: cells stay big enough to see."""
MAX_GROUP_NODES = 120
"""The most nodes in one group the id-prefix rule makes (a bigger 'desk' is no desk)."""
RUN_GROUPS = 240
"""About how many groups runs of consecutive ids make (the lab's 12 x 20 cells)."""


@dataclass(frozen=True)
class GroupRule:
    """A group the layout file declares: these nodes, and those matching the glob."""

    name: str
    nodes: frozenset[str] = frozenset()
    match: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    nodes: tuple[str, ...]


def _prefix(node_id: str) -> str | None:
    head, dash, _tail = node_id.rpartition("-")
    return head if dash and head else None


def group_nodes(node_ids: Iterable[str], rules: Sequence[GroupRule] = ()) -> list[Group]:
    """Every node in exactly one group: declared groups first (in the file's order, a
    node in the first that takes it), then the rest by id (see the module doc)."""
    ids = sorted(set(node_ids))
    listed: dict[str, int] = {}  # node -> the first rule that lists it
    for i, rule in enumerate(rules):
        for node_id in rule.nodes:
            listed.setdefault(node_id, i)
    globs = [(i, rule.match) for i, rule in enumerate(rules) if rule.match]
    declared: list[list[str]] = [[] for _ in rules]
    rest: list[str] = []
    for node_id in ids:
        first = listed.get(node_id, len(rules))
        for i, pattern in globs:
            if i >= first:
                break
            if fnmatch.fnmatchcase(node_id, pattern):
                first = i
                break
        if first < len(rules):
            declared[first].append(node_id)
        else:
            rest.append(node_id)
    pairs = zip(rules, declared, strict=True)
    groups = [Group(rule.name, tuple(nodes)) for rule, nodes in pairs if nodes]
    return groups + _by_id(rest)


def _by_id(ids: list[str]) -> list[Group]:
    if not ids:
        return []
    by_prefix: dict[str, list[str]] = {}
    for node_id in ids:
        by_prefix.setdefault(_prefix(node_id) or node_id, []).append(node_id)
    sizes = [len(nodes) for nodes in by_prefix.values()]
    if 2 <= len(by_prefix) <= MAX_GROUPS and max(sizes) <= MAX_GROUP_NODES:
        return [Group(name, tuple(nodes)) for name, nodes in by_prefix.items()]
    size = max(1, math.ceil(len(ids) / RUN_GROUPS))
    runs = [ids[i : i + size] for i in range(0, len(ids), size)]
    return [Group(_run_name(run), tuple(run)) for run in runs]


def _run_name(run: list[str]) -> str:
    """``sim-0001…0021``: the first id, then what differs in the last."""
    first, last = run[0], run[-1]
    if first == last:
        return first
    common = 0
    while common < min(len(first), len(last)) and first[common] == last[common]:
        common += 1
    cut = first.rfind("-", 0, common) + 1  # keep the last id's part after a '-' whole
    return f"{first}…{last[cut:]}"


@dataclass(frozen=True)
class GroupLook:
    """What a group's cell shows: equal looks need no redraw."""

    name: str
    total: int
    live: int
    stale: int
    offline: int
    never: int
    throttled: int
    average: float | None  # °C over live nodes with a sensor, to 0.1
    hottest: float | None
    nodes: tuple[tuple[NodeState, float | None, bool], ...]  # each node: state, temp, throttled


def group_look(group: Group, model: ClusterModel, now: float) -> GroupLook:
    counts = dict.fromkeys(NodeState, 0)
    temps: list[float] = []
    throttled = 0
    cells: list[tuple[NodeState, float | None, bool]] = []
    for node_id in group.nodes:
        view = model.get(node_id)
        if view is None:
            cells.append((NodeState.NEVER, None, False))
            counts[NodeState.NEVER] += 1
            continue
        state = view.state(now)
        counts[state] += 1
        temp = view.temp_c if state in (NodeState.LIVE, NodeState.STALE) else None
        hot = state is NodeState.LIVE and view.throttled
        throttled += hot
        if state is NodeState.LIVE and temp is not None:
            temps.append(temp)
        cells.append((state, None if temp is None else round(temp), hot))
    return GroupLook(
        name=group.name,
        total=len(group.nodes),
        live=counts[NodeState.LIVE],
        stale=counts[NodeState.STALE],
        offline=counts[NodeState.OFFLINE],
        never=counts[NodeState.NEVER],
        throttled=throttled,
        average=round(sum(temps) / len(temps), 1) if temps else None,
        hottest=max(temps) if temps else None,
        nodes=tuple(cells),
    )


@dataclass(frozen=True)
class Standouts:
    """The nodes a room of thousands still shows by name."""

    hottest: tuple[tuple[str, float], ...]
    throttled: tuple[str, ...]
    offline: tuple[str, ...]
    throttled_total: int
    offline_total: int


def standouts(views: Iterable[NodeView], now: float, *, top: int = 8) -> Standouts:
    """The ``top`` hottest live nodes, and (the first ``top`` by id of) the throttled and
    the offline or stale ones, with how many there are in all."""
    temps: list[tuple[float, str]] = []
    throttled: list[str] = []
    offline: list[str] = []
    for view in views:
        state = view.state(now)
        if state in (NodeState.OFFLINE, NodeState.STALE):
            offline.append(view.node_id)
        elif state is NodeState.LIVE:
            if view.throttled:
                throttled.append(view.node_id)
            if view.temp_c is not None:
                temps.append((view.temp_c, view.node_id))
    temps.sort(key=lambda t: (-t[0], t[1]))
    throttled.sort()
    offline.sort()
    return Standouts(
        hottest=tuple((node, temp) for temp, node in temps[:top]),
        throttled=tuple(throttled[:top]),
        offline=tuple(offline[:top]),
        throttled_total=len(throttled),
        offline_total=len(offline),
    )
