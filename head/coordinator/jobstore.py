"""The coordinator's memory: jobs, blocks, leases and results, in SQLite.

Everything the coordinator knows lives here, so a restart (even after ``kill -9``) resumes
every unfinished job where it stood. No MQTT and no clock of its own: callers pass
``now``. Memory stays bounded however many primes are found: results are BLOBs on disk,
export streams one block at a time.

No work grows with a job's size. A job is a range and a cursor (``next_block``): a block
gets a row in ``blocks`` when it is first leased, so a job of a billion blocks is accepted
with one INSERT. A row is ``leased`` until its result is stored (``done``) or its lease
runs out or its node goes offline (``pending`` again, leased before any block the cursor
has not reached yet). The job's row keeps its totals (blocks done, primes, twin pairs,
largest gap), updated as each result is stored, so neither a result nor a status counts
rows. Results are keyed by ``(job, block)``: the first valid one is stored, any later one
(a frozen node waking up, a resend after a reconnect) is a harmless duplicate. Only a
node that holds or held the block's lease may deliver it: ``leases`` remembers every node
a block was taken back from; in a lab any student's Pi can publish a result for any block.

Storing is in two steps, so that the expensive check of a result can run elsewhere:
:meth:`JobStore.claim` (is this node owed this block?), then, once the payload is
checked, :meth:`JobStore.store_checked` stores a batch of them in one commit.
"""

import dataclasses
import functools
import logging
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from head.coordinator.db import Store, add_column, request_key
from head.coordinator.placing import NodeLimits, RoomLimits
from piswarm.protocol import ProtocolError
from piswarm.protocol.counts import Totals, check_result, check_summary, edge, larger_gap, summarize
from piswarm.protocol.jobs import DEFAULT_BLOCK, Keep, PrimesRequest
from piswarm.protocol.placement import (
    Placement,
    decode_placement,
    encode_placement,
)
from piswarm.protocol.primes import decode_primes
from piswarm.protocol.summary import BlockSummary, encode_summary, is_summary

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    request_id TEXT UNIQUE,
    name TEXT NOT NULL,
    start INTEGER NOT NULL,
    end_ INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    blocks INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
    created REAL NOT NULL,
    finished REAL,
    submitter TEXT NOT NULL DEFAULT '',
    keep TEXT NOT NULL DEFAULT 'primes',
    next_block INTEGER NOT NULL DEFAULT 0,
    blocks_done INTEGER NOT NULL DEFAULT 0,
    primes INTEGER NOT NULL DEFAULT 0,
    largest INTEGER,
    twins INTEGER,
    gap INTEGER,
    gap_at INTEGER,
    double_check REAL NOT NULL DEFAULT 0,
    checks_open INTEGER NOT NULL DEFAULT 0,
    checked INTEGER NOT NULL DEFAULT 0,
    mismatches INTEGER NOT NULL DEFAULT 0,
    wrong TEXT NOT NULL DEFAULT '',
    placement TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (state, created);
CREATE TABLE IF NOT EXISTS members (
    job TEXT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (job, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks (
    job TEXT NOT NULL REFERENCES jobs(id),
    block INTEGER NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'done')),
    node TEXT,
    lease_until REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, block)
);
CREATE INDEX IF NOT EXISTS blocks_open ON blocks (state, job, block);
CREATE INDEX IF NOT EXISTS blocks_expiry ON blocks (state, lease_until);
CREATE TABLE IF NOT EXISTS leases (
    job TEXT NOT NULL,
    block INTEGER NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (job, block, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    job TEXT NOT NULL,
    block INTEGER NOT NULL,
    node TEXT NOT NULL,
    count INTEGER NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    data BLOB NOT NULL,
    stored REAL NOT NULL,
    twins INTEGER NOT NULL DEFAULT 0,
    gap INTEGER NOT NULL DEFAULT 0,
    gap_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, block)
);
CREATE TABLE IF NOT EXISTS checks (
    job TEXT NOT NULL,
    block INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'agreed', 'waived')),
    node TEXT,
    lease_until REAL,
    since REAL NOT NULL,
    PRIMARY KEY (job, block)
);
CREATE INDEX IF NOT EXISTS checks_open ON checks (state, lease_until);
CREATE TABLE IF NOT EXISTS check_results (
    job TEXT NOT NULL,
    block INTEGER NOT NULL,
    node TEXT NOT NULL,
    count INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    data BLOB NOT NULL,
    stored REAL NOT NULL,
    PRIMARY KEY (job, block, node)
);
"""

Outcome = Literal["stored", "duplicate", "rejected"]

log = logging.getLogger(__name__)

KNOWN_PI = {
    10**4: 1229,
    10**5: 9592,
    10**6: 78_498,
    10**7: 664_579,
    10**8: 5_761_455,
    10**9: 50_847_534,
    10**10: 455_052_511,
}
"""pi(x): how many primes are <= x (what a job [1, x] must find)."""
KNOWN_TWINS = {10**6: 8_169, 10**9: 3_424_506}
"""Twin prime pairs below x (OEIS A007508)."""


@dataclass(frozen=True)
class Assignment:
    job: str
    block: int
    lo: int  # half-open [lo, hi)
    hi: int
    lease_until: float
    keep: Keep = "primes"
    check: bool = False  # a second node computing a stored block, to compare


@dataclass(frozen=True)
class JobInfo:
    """A job's own row: what was asked, where it stands, and its totals so far."""

    job: str
    name: str
    state: str
    start: int
    end: int
    block_size: int
    blocks: int
    created: float
    finished: float | None
    keep: Keep = "primes"
    blocks_done: int = 0
    primes: int = 0
    largest: int | None = None
    twins: int | None = None  # None: a job stored before piswarm counted them
    gap: int | None = None
    gap_at: int | None = None
    double_check: float = 0.0  # the fraction of blocks computed twice
    checks_open: int = 0  # blocks waiting for a second (or third) node's result
    checked: int = 0  # blocks two nodes agreed on
    mismatches: int = 0  # blocks two nodes disagreed on
    wrong: str = ""  # the nodes found wrong, comma-separated
    next_block: int = 0  # the cursor: no block from here on has been leased yet
    placement_json: str = ""  # where it may run ('': the whole room)

    @property
    def placement(self) -> Placement | None:
        return _placement(self.placement_json)

    @property
    def blocks_total(self) -> int:
        return self.blocks

    @property
    def wrong_nodes(self) -> tuple[str, ...]:
        return tuple(self.wrong.split(",")) if self.wrong else ()

    def block_range(self, block: int) -> tuple[int, int]:
        lo = self.start + block * self.block_size
        return lo, min(lo + self.block_size, self.end + 1)


Progress = JobInfo
"""What ``job verify`` and ``job list`` read (the job's row holds its totals)."""

_INFO_QUERY = (
    "SELECT id, name, state, start, end_, block_size, blocks, created, finished, "
    "keep, blocks_done, primes, largest, twins, gap, gap_at, double_check, "
    "checks_open, checked, mismatches, wrong, next_block, placement FROM jobs "
)
MAX_WRONG = 8
"""Nodes a job remembers as found wrong (the status shows them)."""


_OPEN = (
    "SELECT j.created, b.block, b.job, b.lo, b.hi, j.keep, b.node FROM blocks b "
    "JOIN jobs j ON j.id = b.job WHERE j.state = 'running' AND "
)
_ROWS_ORDER = " ORDER BY j.created, b.block LIMIT :count"
_GIVEN_BACK = _OPEN + "b.state = 'pending'"
_RUN_OUT = _OPEN + "b.state = 'leased' AND b.lease_until < :now"
_CHECK = (
    "SELECT j.created, c.block, c.job, b.lo, b.hi, j.keep, c.node FROM checks c "
    "JOIN blocks b ON b.job = c.job AND b.block = c.block JOIN jobs j ON j.id = c.job "
    "WHERE j.state = 'running' AND NOT EXISTS (SELECT 1 FROM results r WHERE "
    "r.job = c.job AND r.block = c.block AND r.node = :node) AND NOT EXISTS (SELECT 1 "
    "FROM check_results x WHERE x.job = c.job AND x.block = c.block AND x.node = :node) AND "
)
_CHECKS_ORDER = " ORDER BY j.created, c.block LIMIT :count"
_CHECK_WAITING = _CHECK + "c.state = 'pending'"
_ANY_CHECK_WAITING = (
    "SELECT 1 FROM checks c JOIN jobs j ON j.id = c.job WHERE j.state = 'running' AND "
    "(c.state = 'pending' OR (c.state = 'leased' AND c.lease_until < ?)) LIMIT 1"
)
_CHECK_RUN_OUT = _CHECK + "c.state = 'leased' AND c.lease_until < :now"
_CANDIDATES: tuple[tuple[str, str, Literal["row", "check"]], ...] = (
    (_GIVEN_BACK, _ROWS_ORDER, "row"),
    (_RUN_OUT, _ROWS_ORDER, "row"),
    (_CHECK_WAITING, _CHECKS_ORDER, "check"),
    (_CHECK_RUN_OUT, _CHECKS_ORDER, "check"),
)
"""The blocks a node may be leased besides new ones: each query, how its rows are
ordered and limited (after the jobs closed to the node are left out), their kind."""
_RUNNING_PLACEMENTS = "SELECT id, placement FROM jobs WHERE state = 'running'"
_HELD = (
    "SELECT node, job, COUNT(*) FROM {table} WHERE state = 'leased' AND lease_until >= ? "
    "AND job IN ({jobs}) GROUP BY node, job"
)


@functools.lru_cache(maxsize=1024)
def _placement(text: str) -> Placement | None:
    """A stored placement ('' for none)."""
    return decode_placement(text.encode()) if text else None


def _placement_text(placement: Placement | None) -> str:
    """A placement as stored ('' for the whole room)."""
    if placement is None or not placement.limited:
        return ""
    return encode_placement(placement).decode()


def _not_in(jobs: Sequence[str]) -> tuple[str, dict[str, object]]:
    """A clause leaving ``jobs`` out of a candidate query, and its parameters."""
    if not jobs:
        return "", {}
    names: dict[str, object] = {f"x{i}": job for i, job in enumerate(jobs)}
    return f" AND j.id NOT IN ({', '.join(':' + n for n in names)})", names


def double_checked(job: str, block: int, fraction: float) -> bool:
    """Whether a block of a job asking for ``fraction`` of its blocks double-checked is
    one of them (the same answer every time: a hash, not a dice roll)."""
    return zlib.crc32(f"{job}/{block}".encode()) < fraction * 2**32


class _Candidate(NamedTuple):
    """A block that could be leased: a row given back, a check, or the cursor's next."""

    created: float
    block: int
    job: str
    lo: int
    hi: int
    keep: Keep
    holder: str | None  # its row's node (for a check: the last node it was leased to)
    kind: Literal["row", "new", "check"]


@dataclass(frozen=True)
class Claim:
    """A result this node may deliver: its block's range, and what the job keeps."""

    job: str
    block: int
    node: str
    lo: int
    hi: int
    keep: Keep
    check: bool = False  # the block is stored: this result is compared with it


@dataclass(frozen=True)
class Checked:
    """A claimed result whose payload passed the check."""

    claim: Claim
    summary: BlockSummary
    data: bytes


class JobStore(Store):
    """One SQLite database; not shared between threads (the coordinator owns it)."""

    schema = SCHEMA
    jobs_table = "jobs"
    name = "job store"

    def migrate(self, db: sqlite3.Connection) -> None:
        """A file from before the cursor: every block of a job had its row from the
        start, so the cursor is past the rows there are, and the totals are counted
        once from the results (twin pairs and gaps stay unknown: ``None``)."""
        super().migrate(db)
        add_column(db, "jobs", "keep", "TEXT NOT NULL DEFAULT 'primes'")
        for column in ("twins", "gap", "gap_at"):
            add_column(db, "results", column, "INTEGER NOT NULL DEFAULT 0")
        add_column(db, "jobs", "double_check", "REAL NOT NULL DEFAULT 0")
        for column in ("checks_open", "checked", "mismatches"):
            add_column(db, "jobs", column, "INTEGER NOT NULL DEFAULT 0")
        add_column(db, "jobs", "wrong", "TEXT NOT NULL DEFAULT ''")
        add_column(db, "jobs", "placement", "TEXT NOT NULL DEFAULT ''")
        if not add_column(db, "jobs", "next_block", "INTEGER NOT NULL DEFAULT 0"):
            return
        for column in ("blocks_done", "primes"):
            add_column(db, "jobs", column, "INTEGER NOT NULL DEFAULT 0")
        for column in ("largest", "twins", "gap", "gap_at"):
            add_column(db, "jobs", column, "INTEGER")
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE jobs SET next_block = (SELECT COUNT(*) FROM blocks b WHERE b.job = id),"
                " blocks_done = (SELECT COUNT(*) FROM results r WHERE r.job = id),"
                " primes = (SELECT COALESCE(SUM(count), 0) FROM results r WHERE r.job = id),"
                " largest = (SELECT MAX(CASE WHEN count > 0 THEN last END) FROM results r"
                " WHERE r.job = id)"
            )
            db.execute(  # an ended job's open blocks were left pending: no longer needed
                "DELETE FROM blocks WHERE state != 'done' AND job IN "
                "(SELECT id FROM jobs WHERE state != 'running')"
            )

    # -- jobs ---------------------------------------------------------------------------

    def submit(
        self,
        request: PrimesRequest,
        now: float,
        *,
        submitter: str = "",
        double_check: float = 0.0,
    ) -> tuple[str, bool]:
        """Store a validated request (one row, whatever its size): ``(job id, True)``.
        ``double_check`` is the fraction of blocks computed twice when the request does
        not say.

        A request whose ``request_id`` the same submitter sent before (a retry, a duplicate
        delivery) starts nothing: ``(the first job's id, False)``. Request ids are the
        submitter's own: nobody can claim another user's id ahead of it.
        """
        known = self.submitted(submitter, request.request_id)
        if known is not None:
            return known, False
        job = f"p{time.strftime('%Y%m%d', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"
        key = request_key(submitter, request.request_id) if request.request_id else None
        fraction = double_check if request.double_check is None else request.double_check
        if request.block_size is None:  # the coordinator sizes blocks; a caller may not
            request = dataclasses.replace(request, block_size=DEFAULT_BLOCK)
        with self.db:
            self.db.execute(
                "INSERT INTO jobs (id, kind, request_id, name, start, end_, block_size, blocks,"
                " state, created, finished, submitter, keep, twins, gap, gap_at, double_check,"
                " placement) VALUES (?, 'primes', ?, ?, ?, ?, ?, ?, 'running', ?, NULL, ?, ?,"
                " 0, 0, 0, ?, ?)",
                (
                    job,
                    key,
                    request.name,
                    request.start,
                    request.end,
                    request.size,
                    request.blocks,
                    now,
                    submitter,
                    request.keep,
                    fraction,
                    _placement_text(request.placement),
                ),
            )
        return job, True

    def cancel(self, job: str, now: float) -> None:
        """Stop a running job: its open blocks are forgotten (their nodes' results are
        refused as the job's), its results are kept."""
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ? "
                "WHERE id = ? AND state = 'running'",
                (now, job),
            )
            if cur.rowcount == 0:
                self.require(job)
                raise ValueError(f"job {job} is not running")
            self._remember_holders("job = ? AND state != 'done'", (job,))
            self.db.execute("DELETE FROM blocks WHERE job = ? AND state != 'done'", (job,))

    def require(self, job: str) -> None:
        """Raise ``KeyError`` unless ``job`` exists."""
        if self.db.execute("SELECT 1 FROM jobs WHERE id = ?", (job,)).fetchone() is None:
            raise KeyError(f"no job {job}")

    def running_jobs(self) -> list[str]:
        rows = self.db.execute("SELECT id FROM jobs WHERE state = 'running' ORDER BY created")
        return [r[0] for r in rows]

    def ended_jobs(self, limit: int) -> list[str]:
        """The ``limit`` jobs that ended last (done or cancelled), the latest first."""
        rows = self.db.execute(
            "SELECT id FROM jobs WHERE state != 'running' ORDER BY finished DESC LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    def ended_beyond(self, keep: int, since: float, limit: int) -> list[tuple[str, float]]:
        """Ended jobs older than the ``keep`` that ended last, ended after ``since``:
        ``(job, finished)``, the oldest first, at most ``limit``."""
        rows = self.db.execute(
            "SELECT id, finished FROM (SELECT id, finished FROM jobs WHERE state != 'running' "
            "ORDER BY finished DESC LIMIT -1 OFFSET ?) WHERE finished > ? "
            "ORDER BY finished LIMIT ?",
            (keep, since, limit),
        )
        return [(r[0], float(r[1])) for r in rows]

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        rows = self.db.execute(_INFO_QUERY + "ORDER BY created DESC LIMIT ?", (limit,))
        return [JobInfo(*row) for row in rows.fetchall()]

    # -- leases -------------------------------------------------------------------------

    def lease(self, node: str, now: float, seconds: float, count: int = 1) -> list[Assignment]:
        """Up to ``count`` blocks for ``node``, in one commit (:meth:`lease_many`)."""
        return self.lease_many([(node, count)], now, seconds).get(node, [])

    def lease_many(
        self, wants: Sequence[tuple[str, int]], now: float, seconds: float
    ) -> dict[str, list[Assignment]]:
        """Serve each ``(node, count)`` in turn, all in one commit: blocks given back
        (pending, or leased with the lease run out before ``now``) and then new ones from
        the jobs' cursors, the oldest job first, of the jobs whose placement admits the
        node. Every node tried is in the answer (with nothing, maybe). A node whose want
        could not be met in full is the last one served, unless a check is waiting or a
        job is placed: a check may not go to a node that computed its block, a placed job
        not to a node it does not name, and the next node may take them."""
        until = now + seconds
        served: dict[str, list[Assignment]] = {}
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            room = self._room_limits(now)
            for node, count in wants:
                limits = room.for_node(node)
                if room.shuts_out(limits):
                    served[node] = []  # no job it may take part in: nothing to ask SQLite
                    continue
                got = self._take(node, count, now, until, limits)
                served[node] = got
                joined = room.took(node, [a.job for a in got])
                self.db.executemany(
                    "INSERT OR IGNORE INTO members VALUES (?, ?)", [(job, node) for job in joined]
                )
                if (
                    len(got) < count
                    and not room.placements
                    and self.db.execute(_ANY_CHECK_WAITING, (now,)).fetchone() is None
                ):
                    break
        return served

    def _room_limits(self, now: float) -> RoomLimits:
        """The running jobs that are placed: their placements, members and the leases
        their nodes hold now (nothing is read past the first query when none is)."""
        placements: dict[str, Placement] = {}
        unplaced = False
        for job, text in self.db.execute(_RUNNING_PLACEMENTS):
            placement = _placement(text)
            if placement is not None:
                placements[job] = placement
            else:
                unplaced = True
        if not placements:
            return RoomLimits({}, {}, {})
        counted = [job for job, p in placements.items() if p.count is not None]
        members: dict[str, list[str]] = {}
        if counted:
            marks = ", ".join("?" * len(counted))
            for job, node in self.db.execute(
                f"SELECT job, node FROM members WHERE job IN ({marks})",  # noqa: S608 - marks
                counted,
            ):
                members.setdefault(job, []).append(node)
        capped = [job for job, p in placements.items() if p.per_node is not None]
        held: dict[tuple[str, str], int] = {}
        if capped:
            marks = ", ".join("?" * len(capped))
            for table in ("blocks", "checks"):
                query = _HELD.format(table=table, jobs=marks)
                for node, job, n in self.db.execute(query, (now, *capped)):
                    held[(node, job)] = held.get((node, job), 0) + n
        return RoomLimits(placements, members, held, unplaced=unplaced)

    def _take(
        self, node: str, count: int, now: float, until: float, limits: NodeLimits
    ) -> list[Assignment]:
        """Up to ``count`` blocks for ``node`` within ``limits``: a job whose cap cut
        the choice short is closed and the choice made again for the rest."""
        got: list[Assignment] = []
        closed, caps = list(limits.closed), dict(limits.caps)
        while len(got) < count:
            taken, full = self._take_once(node, count - len(got), now, until, closed, caps)
            got += taken
            if not full:
                break
            closed += full
        return got

    def _take_once(
        self,
        node: str,
        count: int,
        now: float,
        until: float,
        closed: Sequence[str],
        caps: dict[str, int],
    ) -> tuple[list[Assignment], list[str]]:
        """Choose and lease up to ``count`` blocks of the jobs not ``closed``, at most
        ``caps[job]`` of a job (taken off the caps). Returns them, and the jobs that had
        more to give than their cap allowed."""
        if count <= 0:
            return [], []
        taken: list[_Candidate] = []
        clause, params = _not_in(closed)
        params.update(node=node, count=count, now=now)
        for query, order, kind in _CANDIDATES:
            rows = self.db.execute(query + clause + order, params)
            taken += [_Candidate._make((*row, kind)) for row in rows]
        fresh = 0
        for row in self.db.execute(
            _INFO_QUERY + "WHERE state = 'running' AND next_block < blocks ORDER BY created"
        ):
            info = JobInfo(*row)
            if info.job in closed:
                continue
            more = min(count - fresh, caps.get(info.job, count))
            for block in range(info.next_block, min(info.blocks, info.next_block + more)):
                lo, hi = info.block_range(block)
                taken.append(
                    _Candidate(info.created, block, info.job, lo, hi, info.keep, None, "new")
                )
                fresh += 1
            if fresh >= count:
                break
        taken.sort(key=lambda t: (t.created, t.block, t.kind == "check"))
        chosen: list[_Candidate] = []
        full: list[str] = []
        for t in taken:
            if len(chosen) == count:
                break
            cap = caps.get(t.job)
            if cap is None:
                chosen.append(t)
            elif cap > 0:
                caps[t.job] = cap - 1
                chosen.append(t)
            elif t.job not in full:
                full.append(t.job)
        self._lease(node, chosen, until)
        return [
            Assignment(t.job, t.block, t.lo, t.hi, until, t.keep, t.kind == "check") for t in chosen
        ], full

    def _lease(self, node: str, taken: list[_Candidate], until: float) -> None:
        """Lease the chosen blocks to ``node`` (rows, checks and new blocks)."""
        self.db.executemany(  # the node of a lease that ran out may still deliver
            "INSERT OR IGNORE INTO leases VALUES (?, ?, ?)",
            [(t.job, t.block, t.holder) for t in taken if t.holder is not None],
        )
        self.db.executemany(
            "UPDATE blocks SET state = 'leased', node = ?, lease_until = ?, "
            "attempts = attempts + 1 WHERE job = ? AND block = ?",
            [(node, until, t.job, t.block) for t in taken if t.kind == "row"],
        )
        self.db.executemany(
            "UPDATE checks SET state = 'leased', node = ?, lease_until = ? "
            "WHERE job = ? AND block = ?",
            [(node, until, t.job, t.block) for t in taken if t.kind == "check"],
        )
        new = [(t.job, t.block, t.lo, t.hi, node, until) for t in taken if t.kind == "new"]
        self.db.executemany(
            "INSERT INTO blocks (job, block, lo, hi, state, node, lease_until, attempts) "
            "VALUES (?, ?, ?, ?, 'leased', ?, ?, 1)",
            new,
        )
        cursors: dict[str, int] = {}
        for job, block, *_ in new:
            cursors[job] = max(cursors.get(job, 0), block + 1)
        self.db.executemany(
            "UPDATE jobs SET next_block = ? WHERE id = ?", [(c, j) for j, c in cursors.items()]
        )

    def _remember_holders(self, where: str, params: tuple[object, ...]) -> None:
        """Before blocks are taken from their nodes: those nodes may still deliver them."""
        self.db.execute(
            "INSERT OR IGNORE INTO leases SELECT job, block, node FROM blocks "  # noqa: S608
            f"WHERE node IS NOT NULL AND {where}",  # (our own fragments)
            params,
        )

    def _reopen(self, where: str, params: tuple[object, ...]) -> int:
        """Leased blocks back in the pool (node gone, lease never delivered)."""
        self._remember_holders(f"state = 'leased' AND {where}", params)
        cur = self.db.execute(
            "UPDATE blocks SET state = 'pending', node = NULL, lease_until = NULL "  # noqa: S608
            f"WHERE state = 'leased' AND {where}",  # (our own fragments)
            params,
        )
        return cur.rowcount

    def next_expiry(self) -> float | None:
        """When the earliest lease runs out (``None``: no leases)."""
        row = self.db.execute(
            "SELECT MIN(lease_until) FROM blocks WHERE state = 'leased'"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def leased_to(self, node: str) -> list[tuple[str, int]]:
        """The ``(job, block)`` pairs ``node`` holds a lease on."""
        rows = self.db.execute(
            "SELECT job, block FROM blocks WHERE node = ? AND state = 'leased' ORDER BY job, block",
            (node,),
        )
        return [(job, block) for job, block in rows]

    def release_orphans(self, node: str, holding: set[tuple[str, int]], before: float) -> int:
        """Give back ``node``'s leases that run out before ``before`` (taken by an earlier
        coordinator) and are not in ``holding``: their assignment never reached the node.
        Returns how many."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(
                "SELECT job, block FROM blocks WHERE node = ? AND state = 'leased' "
                "AND lease_until < ?",
                (node, before),
            ).fetchall()
            orphans = [(job, block) for job, block in rows if (job, block) not in holding]
            for job, block in orphans:
                self._reopen("job = ? AND block = ?", (job, block))
        return len(orphans)

    def release_node(self, node: str) -> int:
        """A node went offline: its leased blocks are open again, and a job for "any N"
        nodes may take another in its place. Returns how many blocks."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM members WHERE node = ?", (node,))
            return self._reopen("node = ?", (node,))

    def members(self, job: str) -> list[str]:
        """The nodes a job for "any N" nodes runs on now."""
        rows = self.db.execute("SELECT node FROM members WHERE job = ? ORDER BY node", (job,))
        return [r[0] for r in rows]

    # -- results ------------------------------------------------------------------------

    def claim(self, job: str, block: int, node: str) -> Claim | None:
        """Whether ``node`` may deliver this block: its :class:`Claim`, or ``None`` when
        the block is already stored (a duplicate). Raises :class:`ProtocolError` for a
        result that cannot be taken: unknown job or block, a node that never held the
        block's lease, a job that is not running."""
        row = self.db.execute(
            "SELECT b.lo, b.hi, b.state, b.node, j.state, j.keep FROM blocks b "
            "JOIN jobs j ON j.id = b.job WHERE b.job = ? AND b.block = ?",
            (job, block),
        ).fetchone()
        if row is None:
            info = self.db.execute("SELECT blocks FROM jobs WHERE id = ?", (job,)).fetchone()
            if info is None or not 0 <= block < info[0]:
                raise ProtocolError(f"no block {block} in job {job}")
            raise ProtocolError(f"block {block} of job {job} was never given to {node}")
        lo, hi, block_state, holder, job_state, keep = row
        if block_state == "done" and holder != node:  # maybe a second node's, to compare
            check = self.db.execute(
                "SELECT state, node FROM checks WHERE job = ? AND block = ?", (job, block)
            ).fetchone()
            if check is not None and check[1] == node:
                if check[0] == "leased" and job_state == "running":
                    return Claim(job, block, node, lo, hi, keep, check=True)
                return None  # a check already decided without it
        if (
            holder != node
            and self.db.execute(
                "SELECT 1 FROM leases WHERE job = ? AND block = ? AND node = ?", (job, block, node)
            ).fetchone()
            is None
        ):
            raise ProtocolError(f"block {block} of job {job} was never given to {node}")
        if block_state == "done":
            return None
        if job_state != "running":
            raise ProtocolError(f"job {job} is {job_state}")
        return Claim(job, block, node, lo, hi, keep)

    @staticmethod
    def check(claim: Claim, data: bytes) -> Checked:
        """Check a claimed result's payload (pure CPU, no database: any thread may run
        it). It must be what the job keeps: a summary (count-only) or the primes."""
        if is_summary(data) != (claim.keep == "counts"):
            want = "a summary" if claim.keep == "counts" else "its primes"
            raise ProtocolError(f"job {claim.job} keeps {claim.keep}: send {want}")
        return Checked(claim, check_result(data, claim.lo, claim.hi), data)

    @staticmethod
    def check_summary(claim: Claim, summary: BlockSummary) -> Checked:
        """:meth:`check` for a summary that came with others (already parsed)."""
        if claim.keep != "counts":
            raise ProtocolError(f"job {claim.job} keeps primes: send its primes")
        s = check_summary(summary, claim.lo, claim.hi)
        return Checked(claim, s, encode_summary(s))

    def store_checked(
        self, batch: Sequence[Checked], now: float
    ) -> tuple[list[tuple[Outcome, str | None]], list[JobInfo]]:
        """Store checked results in one commit: per result ``(outcome, error)``, and the
        jobs that ended (every block stored and double-checked: ``done``). Each job's row
        is read once and written once a batch."""
        outcomes: list[tuple[Outcome, str | None]] = []
        jobs: dict[str, JobInfo] = {}
        ended: list[JobInfo] = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for item in batch:
                job = item.claim.job
                if job not in jobs:
                    try:
                        jobs[job] = self.info(job)
                    except KeyError:
                        outcomes.append(("rejected", f"no job {job}"))
                        continue
                outcome, error, jobs[job] = self._store(item, jobs[job], now)
                outcomes.append((outcome, error))
            for info in jobs.values():
                ends = (
                    info.state == "running"
                    and info.blocks_done >= info.blocks
                    and (info.checks_open <= 0)
                )
                if ends:
                    ended.append(dataclasses.replace(info, state="done", finished=now))
                self.db.execute(
                    "UPDATE jobs SET blocks_done = ?, primes = ?, largest = ?, twins = ?, "
                    "gap = ?, gap_at = ?, checks_open = ?, checked = ?, mismatches = ?, "
                    "wrong = ?, state = ?, finished = ? WHERE id = ?",
                    (
                        info.blocks_done,
                        info.primes,
                        info.largest,
                        info.twins,
                        info.gap,
                        info.gap_at,
                        info.checks_open,
                        info.checked,
                        info.mismatches,
                        info.wrong,
                        "done" if ends else info.state,
                        now if ends else info.finished,
                        info.job,
                    ),
                )
        return outcomes, ended

    def _store(
        self, item: Checked, info: JobInfo, now: float
    ) -> tuple[Outcome, str | None, JobInfo]:
        """One result into the batch's transaction; ``info`` is its job's row so far, the
        row with this result is returned (written once, by :meth:`store_checked`)."""
        c, s = item.claim, item.summary
        if info.state != "running":
            return "rejected", f"job {c.job} is {info.state}", info
        if c.check:
            return self._store_check(item, info, now)
        row = self.db.execute(
            "SELECT state, node FROM blocks WHERE job = ? AND block = ?", (c.job, c.block)
        ).fetchone()
        if row is None:
            return "rejected", f"job {c.job} is not running", info  # cancelled since the claim
        if row[0] == "done":
            return "duplicate", None, info
        if row[1] is not None and row[1] != c.node:  # it may still deliver: a duplicate
            self.db.execute(
                "INSERT OR IGNORE INTO leases VALUES (?, ?, ?)", (c.job, c.block, row[1])
            )
        self.db.execute(
            "UPDATE blocks SET state = 'done', node = ?, lease_until = NULL "
            "WHERE job = ? AND block = ?",
            (c.node, c.job, c.block),
        )
        self.db.execute(
            "INSERT INTO results (job, block, node, count, first, last, crc32, data, stored,"
            " twins, gap, gap_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                c.job,
                c.block,
                c.node,
                s.count,
                s.first,
                s.last,
                s.crc32,
                item.data,
                now,
                s.twins,
                s.gap,
                s.gap_at,
            ),
        )
        twins, gap, gap_at = s.twins, s.gap, s.gap_at
        for block, count, first, last in self.db.execute(
            "SELECT block, count, first, last FROM results WHERE job = ? AND block IN (?, ?)",
            (c.job, c.block - 1, c.block + 1),
        ).fetchall():
            between = edge((count, last), s) if block < c.block else edge(s, (count, first))
            twins += between.twin
            gap, gap_at = larger_gap(gap, gap_at, between.gap, between.gap_at)
        largest = info.largest
        if s.count and (largest is None or s.last > largest):
            largest = s.last
        total_gap, total_at = info.gap, info.gap_at
        if total_gap is not None and total_at is not None:
            total_gap, total_at = larger_gap(total_gap, total_at, gap, gap_at)
        checks_open = info.checks_open
        if info.double_check and double_checked(c.job, c.block, info.double_check):
            self.db.execute(
                "INSERT OR IGNORE INTO checks (job, block, state, since) "
                "VALUES (?, ?, 'pending', ?)",
                (c.job, c.block, now),
            )
            checks_open += 1
        info = dataclasses.replace(
            info,
            blocks_done=info.blocks_done + 1,
            primes=info.primes + s.count,
            largest=largest,
            twins=None if info.twins is None else info.twins + twins,
            gap=total_gap,
            gap_at=total_at,
            checks_open=checks_open,
        )
        return "stored", None, info

    def _end_if_done(self, job: str, now: float) -> bool:
        """A running job whose every block is stored and double-checked (or waived) is
        done; whether it ended now."""
        cur = self.db.execute(
            "UPDATE jobs SET state = 'done', finished = ? WHERE id = ? AND state = 'running' "
            "AND blocks_done >= blocks AND checks_open <= 0",
            (now, job),
        )
        return cur.rowcount > 0

    def _store_check(
        self, item: Checked, info: JobInfo, now: float
    ) -> tuple[Outcome, str | None, JobInfo]:
        """A second (or third) node's result of a stored block, compared with the others.

        Two nodes with the same count and CRC decide: the block is agreed, and a node that
        said otherwise is named wrong. If the stored result is the odd one out, the
        agreed one replaces it and the job's totals are counted again. Two that disagree,
        with no third to side with either, send the block to another node."""
        c, s = item.claim, item.summary
        check = self.db.execute(
            "SELECT state, node FROM checks WHERE job = ? AND block = ?", (c.job, c.block)
        ).fetchone()
        if check is None or check[0] != "leased" or check[1] != c.node:
            return "duplicate", None, info  # decided (or handed to another node) meanwhile
        self.db.execute(
            "INSERT OR IGNORE INTO check_results VALUES (?, ?, ?, ?, ?, ?, ?)",
            (c.job, c.block, c.node, s.count, s.crc32, item.data, now),
        )
        self.db.execute("INSERT OR IGNORE INTO leases VALUES (?, ?, ?)", (c.job, c.block, c.node))
        first = self.db.execute(
            "SELECT node, count, crc32 FROM results WHERE job = ? AND block = ?", (c.job, c.block)
        ).fetchone()
        votes = [(first[0], (first[1], first[2]))] + [
            (node, (count, crc))
            for node, count, crc in self.db.execute(
                "SELECT node, count, crc32 FROM check_results WHERE job = ? AND block = ? "
                "ORDER BY stored, node",
                (c.job, c.block),
            )
        ]
        said: dict[tuple[int, int], list[str]] = {}
        for node, value in votes:
            said.setdefault(value, []).append(node)
        mismatches = info.mismatches + (len(votes) == 2 and len(said) == 2)
        agreed = next((value for value, nodes in said.items() if len(nodes) >= 2), None)
        if agreed is None:
            log.warning(
                "job %s block %d: %s disagree: computing it again on another node",
                c.job,
                c.block,
                " and ".join(node for node, _v in votes),
            )
            self.db.execute(
                "UPDATE checks SET state = 'pending', node = NULL, lease_until = NULL, since = ? "
                "WHERE job = ? AND block = ?",
                (now, c.job, c.block),
            )
            return "stored", None, dataclasses.replace(info, mismatches=mismatches)
        wrong = [node for node, value in votes if value != agreed]
        if wrong:
            log.warning(
                "job %s block %d: %s agree, %s wrong",
                c.job,
                c.block,
                " and ".join(said[agreed]),
                ", ".join(wrong),
            )
        if first[0] in wrong:
            info = self._replace_result(c, said[agreed][0], info)
        known = list(info.wrong_nodes)
        known += [node for node in wrong if node not in known]
        self.db.execute(
            "UPDATE checks SET state = 'agreed' WHERE job = ? AND block = ?", (c.job, c.block)
        )
        return (
            "stored",
            None,
            dataclasses.replace(
                info,
                checks_open=info.checks_open - 1,
                checked=info.checked + 1,
                mismatches=mismatches,
                wrong=",".join(known[-MAX_WRONG:]),
            ),
        )

    def _replace_result(self, c: Claim, node: str, info: JobInfo) -> JobInfo:
        """The stored result of a block was outvoted: ``node``'s (a check result) takes
        its place, and the job's totals are counted again from its blocks."""
        (data,) = self.db.execute(
            "SELECT data FROM check_results WHERE job = ? AND block = ? AND node = ?",
            (c.job, c.block, node),
        ).fetchone()
        s = check_result(data, c.lo, c.hi)
        self.db.execute(
            "UPDATE results SET node = ?, count = ?, first = ?, last = ?, crc32 = ?, data = ?, "
            "twins = ?, gap = ?, gap_at = ? WHERE job = ? AND block = ?",
            (
                node,
                s.count,
                s.first,
                s.last,
                s.crc32,
                data,
                s.twins,
                s.gap,
                s.gap_at,
                c.job,
                c.block,
            ),
        )
        self.db.execute(
            "UPDATE blocks SET node = ? WHERE job = ? AND block = ?", (node, c.job, c.block)
        )
        t = self._totals(c.job)
        counted = info.twins is not None  # (None: a job from before they were counted)
        return dataclasses.replace(
            info,
            primes=t.primes,
            largest=t.largest,
            twins=t.twins if counted else None,
            gap=t.gap if counted else None,
            gap_at=t.gap_at if counted else None,
        )

    def _totals(self, job: str) -> Totals:
        """The job's answers added up from its stored blocks: once, when a result is
        replaced."""
        totals = Totals()
        for block, *fields in self.db.execute(
            "SELECT block, count, first, last, twins, gap, gap_at, crc32 FROM results "
            "WHERE job = ? ORDER BY block",
            (job,),
        ):
            totals.add(block, BlockSummary(*fields))
        return totals

    def waive_checks(self, before: float, now: float) -> list[str]:
        """Checks no other node took by ``before``, of jobs whose every block is stored,
        are given up (a room with one node cannot double-check): the jobs that ended."""
        rows = self.db.execute(
            "SELECT c.job, c.block FROM checks c JOIN jobs j ON j.id = c.job "
            "WHERE c.state IN ('pending', 'leased') AND j.state = 'running' "  # (an index)
            "AND j.blocks_done >= j.blocks AND c.since < ? "
            "AND (c.state = 'pending' OR c.lease_until < ?)",
            (before, now),
        ).fetchall()
        if not rows:
            return []
        ended = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for job, block in rows:
                self.db.execute(
                    "UPDATE checks SET state = 'waived' WHERE job = ? AND block = ?", (job, block)
                )
                self.db.execute(
                    "UPDATE jobs SET checks_open = checks_open - 1 WHERE id = ?", (job,)
                )
            for job in sorted({job for job, _b in rows}):
                log.warning(
                    "job %s: %d blocks not double-checked: no other node took them",
                    job,
                    sum(1 for j, _b in rows if j == job),
                )
                if self._end_if_done(job, now):
                    ended.append(job)
        return ended

    def store_result(self, job: str, block: int, node: str, data: bytes, now: float) -> Outcome:
        """Claim, check and store one result (raises :class:`ProtocolError` like
        :meth:`claim` and :meth:`check`; stores nothing then)."""
        claim = self.claim(job, block, node)
        if claim is None:
            return "duplicate"
        ((outcome, error),), _ended = self.store_checked([self.check(claim, data)], now)
        if outcome == "rejected":
            raise ProtocolError(error or "rejected")
        return outcome

    # -- reading ------------------------------------------------------------------------

    def info(self, job: str) -> JobInfo:
        row = self.db.execute(_INFO_QUERY + "WHERE id = ?", (job,)).fetchone()
        if row is None:
            raise KeyError(f"no job {job}")
        return JobInfo(*row)

    progress = info

    def contributions(self, job: str) -> Iterator[tuple[int, str, int]]:
        """``(block, node, count)`` of every stored result, in block order."""
        yield from self.db.execute(
            "SELECT block, node, count FROM results WHERE job = ? ORDER BY block", (job,)
        )

    def export(self, job: str) -> Iterator[np.ndarray]:
        """The primes of a job in ascending order, one block at a time (bounded memory)."""
        if self.info(job).keep == "counts":
            raise ValueError(f"job {job} kept counts only: it has no primes to export")
        cursor = self.db.execute("SELECT data FROM results WHERE job = ? ORDER BY block", (job,))
        for (data,) in cursor:
            yield decode_primes(data).primes

    def verify(
        self, job: str, recompute: Callable[[int, int], np.ndarray] | None = None
    ) -> list[str]:
        """Problems found re-reading every stored block (an empty list: all is well).

        Each block's data is checked again and must match what was stored of it; the
        job's totals (primes, twin pairs, largest gap, edges between blocks included)
        are added up again from the blocks. ``recompute(lo, hi)``, when given, lists the
        primes of each block again here: a node can send a list of the right length,
        inside its block, with a CRC that matches it, of numbers that are not the primes
        (or a summary of made-up numbers); only computing them again finds it (and names
        the node)."""
        info = self.info(job)
        problems = []
        totals = Totals()
        rows = self.db.execute(
            "SELECT block, node, count, first, last, twins, gap, gap_at, crc32, data "
            "FROM results WHERE job = ? ORDER BY block",
            (job,),
        )
        for block, node, *stored_fields, data in rows:
            lo, hi = info.block_range(block)
            stored = BlockSummary(*stored_fields)
            try:
                again = check_result(data, lo, hi)
            except ProtocolError as exc:
                problems.append(f"block {block}: {exc}")
                continue
            if again != stored:
                problems.append(f"block {block}: stored count/CRC differ from its data")
            if recompute is not None:
                computed = summarize(recompute(lo, hi))
                if computed != again:
                    problems.append(
                        f"block {block} from {node}: not the primes of [{lo}, {hi}) "
                        f"(recomputed here: {computed.count:,} primes)"
                    )
            totals.add(block, again)
        primes, twins, gap, gap_at = totals.primes, totals.twins, totals.gap, totals.gap_at
        if info.blocks_done != info.blocks:
            problems.append(f"{info.blocks - info.blocks_done} blocks missing")
            return problems
        if primes != info.primes:
            problems.append(f"{primes} primes in the blocks, {info.primes} in the job's total")
        if info.twins is not None and (twins, gap, gap_at) != (info.twins, info.gap, info.gap_at):
            problems.append(
                f"the blocks give {twins} twin pairs and a largest gap of {gap} "
                f"after {gap_at}, the job's totals {info.twins}, {info.gap} "
                f"after {info.gap_at}"
            )
        if info.start <= 2 and info.end in KNOWN_PI and primes != KNOWN_PI[info.end]:
            problems.append(f"{primes} primes found, pi({info.end}) = {KNOWN_PI[info.end]}")
        if info.start <= 3 and info.end in KNOWN_TWINS and twins != KNOWN_TWINS[info.end]:
            problems.append(f"{twins} twin pairs found, {KNOWN_TWINS[info.end]} below {info.end}")
        return problems
