"""What an experiment runs: one job, over a sweep of node counts and workers, repeated.

Strong scaling runs the same job on every node count (more nodes, same work: how much
faster?). Weak scaling grows the job with the nodes: ``n`` nodes get ``n`` times the
range of a prime search, or a board ``n`` times as tall (the same work per node: does
the time stay flat?). Pure: no I/O; :mod:`head.experiment.record` stores a plan as JSON
beside its runs, and a resumed experiment must be the same plan.
"""

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

from piswarm.protocol import ProtocolError, jobs, topics
from piswarm.protocol import life as wire
from piswarm.protocol.placement import MAX_PATTERNS, Placement

Kind = Literal["primes", "life"]
Scaling = Literal["strong", "weak"]
MAX_RUNS = 10_000
MAX_POINTS = 64
"""Node counts (and worker counts) one sweep may have."""


class PlanError(ValueError):
    """A plan that cannot run (the message names the option)."""


@dataclass(frozen=True)
class Plan:
    """An experiment: the job at its smallest (one node count's worth), and the sweep."""

    name: str
    kind: Kind
    scaling: Scaling
    nodes: tuple[int, ...]  # node counts, ascending
    workers: tuple[int, ...] = (1,)  # workers per node, ascending
    repeats: int = 1
    pick: tuple[str, ...] = ()  # node ids or globs the experiment may use (all: empty)
    # a prime search: [start, end] for one node (weak scaling: n times as many numbers)
    start: int = 1
    end: int = 10**8
    block_size: int | None = None
    keep: jobs.Keep = "counts"
    # a Life board for one node (weak scaling: n times as tall)
    width: int = 1024
    height: int = 1024
    gens: int = 200
    density: float = 0.3
    seed: int = 1

    def __post_init__(self) -> None:
        if not topics.EXPERIMENT_PATTERN.fullmatch(self.name):
            raise PlanError(f"name {self.name!r}: use 1-40 of a-z, 0-9 and '-'")
        for flag, counts in (("--nodes", self.nodes), ("--workers", self.workers)):
            if not counts or list(counts) != sorted(set(counts)) or counts[0] < 1:
                raise PlanError(f"{flag}: counts must be ascending, distinct and at least 1")
            if len(counts) > MAX_POINTS:
                raise PlanError(f"{flag}: at most {MAX_POINTS} counts")
        if not 1 <= self.repeats <= 100:
            raise PlanError("--repeats: 1-100")
        if self.total > MAX_RUNS:
            raise PlanError(f"the sweep has more than {MAX_RUNS} runs")
        for n in (self.nodes[0], self.nodes[-1]):  # every request is valid (the largest too)
            try:
                self.request(n, self.workers[-1], Placement(count=n))
            except (ProtocolError, ValueError) as exc:
                raise PlanError(f"the job for {n} nodes: {exc}") from None

    @property
    def total(self) -> int:
        """How many runs the sweep has."""
        return len(self.nodes) * len(self.workers) * self.repeats

    def runs(self) -> list["Run"]:
        """Every run, in the order they go: each repeat of the whole sweep in turn (a
        room warming up over the hour then spreads over all points, not the last)."""
        return [
            Run(index=i, nodes=n, workers=w, repeat=r)
            for i, (r, w, n) in enumerate(
                (r, w, n) for r in range(self.repeats) for w in self.workers for n in self.nodes
            )
        ]

    def scale(self, nodes: int) -> int:
        """How many times the smallest job a run on ``nodes`` nodes does."""
        return nodes if self.scaling == "weak" else 1

    def work(self, nodes: int) -> int:
        """The size of the job on ``nodes`` nodes: numbers searched, or cell updates."""
        k = self.scale(nodes)
        if self.kind == "primes":
            return (self.end - self.start + 1) * k
        return self.width * self.height * k * self.gens

    def request(
        self, nodes: int, workers: int, placement: Placement, request_id: str = ""
    ) -> jobs.PrimesRequest | wire.LifeRequest:
        """The job of a run on ``nodes`` nodes, each with ``workers`` workers."""
        k = self.scale(nodes)
        name = f"{self.name} {nodes}x{workers}"[: jobs.MAX_NAME]
        if self.kind == "primes":
            return jobs.PrimesRequest(
                start=self.start,
                end=self.start + (self.end - self.start + 1) * k - 1,
                block_size=self.block_size,
                keep=self.keep,
                double_check=0.0,  # a second computation would be time not in the sweep
                name=name,
                request_id=request_id,
                placement=placement,
            )
        return wire.LifeRequest(
            width=self.width,
            height=self.height * k,
            gens=self.gens,
            density=self.density,
            seed=self.seed,
            frame_every=0,  # pictures would be time not spent computing
            checkpoint_every=self.gens,
            name=name,
            request_id=request_id,
            placement=placement,
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        data = json.loads(text)
        for key in ("nodes", "workers", "pick"):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Run:
    """One point of the sweep, once."""

    index: int
    nodes: int
    workers: int
    repeat: int


NAMES_BYTES = 12 * 1024
"""The most a run's node ids may take in its job request (piswarm's JSON stops at 16 KiB):
a lab of 240 Pis named ``pi-04-1`` takes 2.4 KiB."""


def placement_for(
    node_ids: list[str],
    workers: int,
    pick: tuple[str, ...] = (),
    *,
    names_bytes: int = NAMES_BYTES,
) -> Placement:
    """The run's nodes by name, while they fit a request (``MAX_PATTERNS`` ids in
    ``names_bytes``); past that, "any N" of those the experiment may use (``pick``)."""
    size = sum(len(n) + 3 for n in node_ids)  # "id",
    if len(node_ids) <= MAX_PATTERNS and size <= names_bytes:
        return Placement(nodes=tuple(node_ids), per_node=workers)
    return Placement(nodes=pick, count=len(node_ids), per_node=workers)
