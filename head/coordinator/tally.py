"""A running job's numbers, kept in memory so a status costs nothing to publish.

The coordinator feeds every stored result to the job's :class:`JobTally` (and, after a
restart, every result already in SQLite, once). From it come the retained status (primes,
largest, rate, ETA, top contributors) and the block map, without asking SQLite to count a
million rows every second. Memory per job is bounded: a fixed number of map cells, one
entry per contributing node, a fixed window of rate samples.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

from head.coordinator.jobstore import JobInfo
from piswarm.protocol.jobs import MAP_CELLS, TOP_CONTRIBUTORS, Contributor, JobMap, JobStatus

RATE_WINDOW = 30.0  # seconds of history behind ``rate`` and ``eta_s``


@dataclass
class _Node:
    blocks: int = 0
    primes: int = 0
    last_seen: float = 0.0


class JobTally:
    """Counts and a block map for one job; time comes in as ``now``."""

    def __init__(self, info: JobInfo, *, cells: int = MAP_CELLS) -> None:
        self.info = info
        self.blocks_done = 0
        self.primes = 0
        self.cells = max(1, min(cells, info.blocks))
        # Cell c holds the blocks b with b * cells // blocks == c: from ceil(c * blocks /
        # cells) up to the next cell's first (arithmetic: a job may have 1e12 blocks).
        firsts = -(-np.arange(self.cells + 1, dtype=np.int64) * max(1, info.blocks) // self.cells)
        self._cell_total = np.diff(firsts)
        self._cell_done = np.zeros(self.cells, dtype=np.int64)
        self._cell_owner = np.full(self.cells, -1, dtype=np.int64)
        self._node_index: dict[str, int] = {}
        self._nodes: dict[str, _Node] = {}
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=64)

    def _cell_of(self, block: np.ndarray | int) -> np.ndarray:
        return np.asarray(block, dtype=np.int64) * self.cells // max(1, self.info.blocks)

    def add(self, block: int, node: str, count: int, now: float) -> None:
        """One stored result (never call it for a duplicate)."""
        self.blocks_done += 1
        self.primes += count
        entry = self._nodes.setdefault(node, _Node())
        entry.blocks += 1
        entry.primes += count
        entry.last_seen = now
        cell = int(self._cell_of(block))
        self._cell_done[cell] += 1
        self._cell_owner[cell] = self._node_index.setdefault(node, len(self._node_index))

    def sample(self, now: float) -> None:
        """Remember where the job stands now (call about once a second)."""
        self._samples.append((now, self.primes, self.blocks_done))

    def _rates(self, now: float) -> tuple[float, float]:
        """(primes/s, blocks/s) over the window, from the samples."""
        recent = [s for s in self._samples if now - s[0] <= RATE_WINDOW]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0, 0.0
        (t0, p0, b0), (t1, p1, b1) = recent[0], recent[-1]
        return (p1 - p0) / (t1 - t0), (b1 - b0) / (t1 - t0)

    def status(self, info: JobInfo, now: float) -> JobStatus:
        self.info = info
        rate, blocks_per_s = self._rates(now)
        remaining = info.blocks - info.blocks_done
        eta: float | None = None
        if info.state == "running" and blocks_per_s > 0:
            eta = round(min(remaining / blocks_per_s, 1e10), 1)
        elif info.state != "running":
            eta = 0.0 if info.state == "done" else None
            rate = 0.0
        top = sorted(self._nodes.items(), key=lambda kv: (-kv[1].blocks, kv[0]))
        return JobStatus(
            job=info.job,
            state=info.state,
            name=info.name,
            start=info.start,
            end=info.end,
            block_size=info.block_size,
            blocks_done=info.blocks_done,
            blocks_total=info.blocks,
            primes=info.primes,
            largest=info.largest,
            rate=round(rate, 1),
            eta_s=eta,
            nodes=sum(1 for n in self._nodes.values() if now - n.last_seen <= RATE_WINDOW),
            top=tuple(
                Contributor(node=name, blocks=n.blocks, primes=n.primes)
                for name, n in top[:TOP_CONTRIBUTORS]
            ),
            created=info.created,
            finished=info.finished,
            ts=now,
            keep=info.keep,
            twins=info.twins,
            gap=info.gap,
            gap_at=info.gap_at,
            double_check=info.double_check,
            checked=info.checked,
            mismatches=info.mismatches,
            wrong=info.wrong_nodes,
            placement=info.placement,
        )

    def job_map(self) -> JobMap:
        used = sorted({int(i) for i in self._cell_owner if i >= 0})
        remap = {old: new for new, old in enumerate(used)}
        names = {index: name for name, index in self._node_index.items()}
        percent = self._cell_done * 100 // np.maximum(self._cell_total, 1)
        return JobMap(
            job=self.info.job,
            blocks_total=self.info.blocks,
            nodes=tuple(names[i] for i in used),
            owner=tuple(remap[int(i)] if i >= 0 else -1 for i in self._cell_owner),
            done=tuple(int(p) for p in percent),
        )
