"""Which running prime jobs a node may be leased blocks of, and how many.

A job's :class:`~piswarm.protocol.placement.Placement` limits it to the nodes it names,
to "any N" of them (its *members*: the first N to be leased a block, until one goes
offline) and to ``per_node`` blocks held by a node at once. :class:`RoomLimits` is built
once for each round of leasing (from the running jobs' placements, members and the
leases held now) and answers, node by node, which jobs are closed to it and how many
blocks of the others it may take. No I/O: the job store reads and writes what it needs.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from piswarm.protocol.placement import Placement


@dataclass(frozen=True)
class NodeLimits:
    """What one node may take: none of ``closed``; at most ``caps[job]`` of those listed."""

    closed: tuple[str, ...] = ()
    caps: Mapping[str, int] = field(default_factory=dict)


OPEN = NodeLimits()


class RoomLimits:
    """The placed running jobs, as one round of leasing sees them."""

    def __init__(
        self,
        placements: Mapping[str, Placement],
        members: Mapping[str, Iterable[str]],
        held: Mapping[tuple[str, str], int],
        *,
        unplaced: bool = True,
    ) -> None:
        """``placements``: job -> placement (only jobs that limit something);
        ``members``: job -> the nodes it runs on now (for jobs with a ``count``);
        ``held``: (node, job) -> blocks the node holds a live lease on; ``unplaced``:
        whether a running job may run anywhere."""
        self.placements = dict(placements)
        self.unplaced = unplaced
        self.members = {job: set(members.get(job, ())) for job in self.placements}
        self.held = dict(held)

    def for_node(self, node: str) -> NodeLimits:
        if not self.placements:
            return OPEN
        closed: list[str] = []
        caps: dict[str, int] = {}
        for job, placement in self.placements.items():
            if not placement.admits(node):
                closed.append(job)
                continue
            members = self.members[job]
            if (
                placement.count is not None
                and node not in members
                and len(members) >= placement.count
            ):
                closed.append(job)
                continue
            if placement.per_node is not None:
                room = placement.per_node - self.held.get((node, job), 0)
                if room <= 0:
                    closed.append(job)
                else:
                    caps[job] = room
        return NodeLimits(tuple(closed), caps)

    def shuts_out(self, limits: NodeLimits) -> bool:
        """Whether a node with these ``limits`` may take no running job at all."""
        return not self.unplaced and len(limits.closed) == len(self.placements)

    def took(self, node: str, jobs: Iterable[str]) -> list[str]:
        """``node`` was leased a block of each of ``jobs`` (one entry a block): count them;
        returns the jobs it became a member of (to be stored)."""
        joined: list[str] = []
        for job in jobs:
            placement = self.placements.get(job)
            if placement is None:
                continue
            self.held[(node, job)] = self.held.get((node, job), 0) + 1
            if placement.count is not None and node not in self.members[job]:
                self.members[job].add(node)
                joined.append(job)
        return joined
