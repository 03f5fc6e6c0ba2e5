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
import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from head.display.cluster import ClusterModel, ClusterSummary, NodeState, NodeView

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
    average: int | None  # °C over live nodes with a sensor, whole: what the cell shows
    nodes: tuple[tuple[NodeState, float | None, bool], ...]  # each node: state, temp, throttled


@dataclass(frozen=True)
class Standouts:
    """The nodes a room of thousands still shows by name."""

    hottest: tuple[tuple[str, float], ...]
    throttled: tuple[str, ...]
    offline: tuple[str, ...]
    throttled_total: int
    offline_total: int


@dataclass(frozen=True)
class GroupFacts:
    """What a group's nodes are now, for the header's figures and the standouts' panel:
    the room's are these of every group, merged (no second pass over thousands of nodes)."""

    total: int
    live: int
    stale: int
    offline: int
    never: int
    throttled: int
    temp_sum: float  # over live nodes with a sensor
    temp_count: int
    peak: tuple[float, str] | None  # the largest (temperature, id) of a live node
    hottest: tuple[tuple[float, str], ...]  # its hottest live nodes, hottest first
    throttled_ids: tuple[str, ...]  # the first, by id
    missing_ids: tuple[str, ...]  # offline or stale, the first by id


def group_look(
    group: Group, model: ClusterModel, now: float, *, top: int = 8
) -> tuple[GroupLook, GroupFacts]:
    """How a group's cell looks now, and the facts of its nodes (``top`` of each kind
    by name): one pass over its nodes."""
    counts = dict.fromkeys(NodeState, 0)
    temps: list[tuple[float, str]] = []
    throttled: list[str] = []
    missing: list[str] = []
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
        if hot:
            throttled.append(node_id)
        if state in (NodeState.OFFLINE, NodeState.STALE):
            missing.append(node_id)
        if state is NodeState.LIVE and temp is not None:
            temps.append((temp, node_id))
        cells.append((state, None if temp is None else round(temp), hot))
    total = sum(t for t, _ in temps)
    look = GroupLook(
        name=group.name,
        total=len(group.nodes),
        live=counts[NodeState.LIVE],
        stale=counts[NodeState.STALE],
        offline=counts[NodeState.OFFLINE],
        never=counts[NodeState.NEVER],
        throttled=len(throttled),
        average=round(total / len(temps)) if temps else None,
        nodes=tuple(cells),
    )
    facts = GroupFacts(
        total=len(group.nodes),
        live=look.live,
        stale=look.stale,
        offline=look.offline,
        never=look.never,
        throttled=len(throttled),
        temp_sum=total,
        temp_count=len(temps),
        peak=max(temps) if temps else None,
        hottest=tuple(heapq.nsmallest(top, temps, key=_hottest_first)),
        throttled_ids=tuple(sorted(throttled)[:top]),
        missing_ids=tuple(sorted(missing)[:top]),
    )
    return look, facts


def _hottest_first(entry: tuple[float, str]) -> tuple[float, str]:
    return -entry[0], entry[1]


def room_summary(facts: Iterable[GroupFacts]) -> ClusterSummary:
    """The room's figures (as :meth:`ClusterModel.summary` counts them), from its groups'."""
    found = list(facts)
    peaks = [f.peak for f in found if f.peak is not None]
    count = sum(f.temp_count for f in found)
    peak = max(peaks) if peaks else None
    return ClusterSummary(
        total=sum(f.total for f in found),
        live=sum(f.live for f in found),
        stale=sum(f.stale for f in found),
        offline=sum(f.offline for f in found),
        never=sum(f.never for f in found),
        throttled=sum(f.throttled for f in found),
        hottest=(peak[1], peak[0]) if peak else None,
        average_temp=sum(f.temp_sum for f in found) / count if count else None,
    )


def room_standouts(facts: Iterable[GroupFacts], *, top: int = 8) -> Standouts:
    """The room's standouts (as :func:`standouts` finds them), from its groups'."""
    found = list(facts)
    hottest = heapq.nsmallest(top, (h for f in found for h in f.hottest), key=_hottest_first)
    return Standouts(
        hottest=tuple((node, temp) for temp, node in hottest),
        throttled=tuple(sorted(n for f in found for n in f.throttled_ids)[:top]),
        offline=tuple(sorted(n for f in found for n in f.missing_ids)[:top]),
        throttled_total=sum(f.throttled for f in found),
        offline_total=sum(f.offline + f.stale for f in found),
    )


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
