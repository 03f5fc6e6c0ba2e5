"""The coordinator's memory: jobs, blocks, leases and results, in SQLite.

Everything the coordinator knows lives here, so a restart (even after ``kill -9``) resumes
every unfinished job where it stood. No MQTT and no clock of its own: callers pass
``now``. Memory stays bounded however many primes are found: results are BLOBs on disk,
progress is aggregated by SQL, export streams one block at a time.

A block is ``pending`` until a node leases it, ``leased`` until its result is stored or
its lease runs out (or its node goes offline), then ``pending`` again. Results are keyed
by ``(job, block)``: the first valid one is stored, any later one (a frozen node waking
up, a resend after a reconnect) is a harmless duplicate. Only a node that holds or held
the block's lease may deliver it (``leases`` remembers every node a block was given to):
in a lab any student's Pi can publish a result for any block.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from head.db import Store, request_key
from piswarm.protocol import ProtocolError
from piswarm.protocol.jobs import PrimesRequest
from piswarm.protocol.primes import check_block, checksum, decode_primes

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
    submitter TEXT NOT NULL DEFAULT ''
);
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
    PRIMARY KEY (job, block)
);
"""

Outcome = Literal["stored", "duplicate"]

_REOPEN = "UPDATE blocks SET state = 'pending', node = NULL, lease_until = NULL "
"""A leased block back in the pool (cancel, node gone, lease never delivered)."""

KNOWN_PI = {10**4: 1229, 10**5: 9592, 10**6: 78_498, 10**7: 664_579, 10**8: 5_761_455,
            10**9: 50_847_534, 10**10: 455_052_511}  # fmt: skip
"""pi(x): how many primes are <= x (what a job [1, x] must find)."""


@dataclass(frozen=True)
class Assignment:
    job: str
    block: int
    lo: int  # half-open [lo, hi)
    hi: int
    lease_until: float


@dataclass(frozen=True)
class JobInfo:
    """A job's own row: what was asked and where it stands (no counting of results)."""

    job: str
    name: str
    state: str
    start: int
    end: int
    block_size: int
    blocks: int
    created: float
    finished: float | None


@dataclass(frozen=True)
class Progress:
    job: str
    name: str
    state: str
    start: int
    end: int
    blocks_done: int
    blocks_total: int
    primes: int
    largest: int | None
    created: float
    finished: float | None


class JobStore(Store):
    """One SQLite database; not shared between threads (the coordinator owns it)."""

    schema = SCHEMA
    jobs_table = "jobs"
    name = "job store"

    # -- jobs ---------------------------------------------------------------------------

    def submit(
        self, request: PrimesRequest, now: float, *, submitter: str = ""
    ) -> tuple[str, bool]:
        """Store a validated request and its blocks: ``(job id, True)``.

        A request whose ``request_id`` the same submitter sent before (a retry, a duplicate
        delivery) starts nothing: ``(the first job's id, False)``. Request ids are the
        submitter's own: nobody can claim another user's id ahead of it.
        """
        known = self.submitted(submitter, request.request_id)
        if known is not None:
            return known, False
        job = f"p{time.strftime('%Y%m%d', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"
        rows = ((job, i, *request.block_range(i)) for i in range(request.blocks))
        key = request_key(submitter, request.request_id) if request.request_id else None
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO jobs (id, kind, request_id, name, start, end_, block_size, blocks,"
                " state, created, finished, submitter)"
                " VALUES (?, 'primes', ?, ?, ?, ?, ?, ?, 'running', ?, NULL, ?)",
                (job, key, request.name, request.start, request.end,
                 request.block_size, request.blocks, now, submitter),
            )  # fmt: skip
            self.db.executemany(
                "INSERT INTO blocks (job, block, lo, hi, state) VALUES (?, ?, ?, ?, 'pending')",
                rows,
            )
        return job, True

    def cancel(self, job: str, now: float) -> None:
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
            self.db.execute(
                _REOPEN + "WHERE job = ? AND state = 'leased'",
                (job,),
            )

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

    def jobs(self, limit: int = 50) -> list[Progress]:
        rows = self.db.execute("SELECT id FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        return [self.progress(r[0]) for r in rows.fetchall()]

    # -- leases -------------------------------------------------------------------------

    def lease(self, node: str, now: float, seconds: float, count: int = 1) -> list[Assignment]:
        """Up to ``count`` open blocks, oldest job first, leased to ``node`` in one commit.

        Open means pending, or leased with the lease run out (``lease_until < now``).
        """
        until = now + seconds
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(
                "SELECT b.job, b.block, b.lo, b.hi FROM blocks b JOIN jobs j ON j.id = b.job "
                "WHERE j.state = 'running' AND (b.state = 'pending' "
                "OR (b.state = 'leased' AND b.lease_until < ?)) "
                "ORDER BY j.created, b.block LIMIT ?",
                (now, count),
            ).fetchall()
            self.db.executemany(
                "UPDATE blocks SET state = 'leased', node = ?, lease_until = ?, "
                "attempts = attempts + 1 WHERE job = ? AND block = ?",
                [(node, until, job, block) for job, block, _lo, _hi in rows],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO leases VALUES (?, ?, ?)",
                [(job, block, node) for job, block, _lo, _hi in rows],
            )
        return [Assignment(j, b, lo, hi, until) for j, b, lo, hi in rows]

    def next_expiry(self) -> float | None:
        """When the earliest lease of a running job runs out (``None``: no leases)."""
        row = self.db.execute(
            "SELECT MIN(b.lease_until) FROM blocks b JOIN jobs j ON j.id = b.job "
            "WHERE j.state = 'running' AND b.state = 'leased'"
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
            self.db.executemany(
                _REOPEN + "WHERE job = ? AND block = ? AND state = 'leased'",
                orphans,
            )
        return len(orphans)

    def release_node(self, node: str) -> int:
        """A node went offline: its leased blocks are open again. Returns how many."""
        with self.db:
            cur = self.db.execute(
                _REOPEN + "WHERE node = ? AND state = 'leased'",
                (node,),
            )
        return cur.rowcount

    # -- results ------------------------------------------------------------------------

    def store_result(self, job: str, block: int, node: str, data: bytes, now: float) -> Outcome:
        """Check and store a block's primes; a second result for a block is a duplicate.

        Raises :class:`ProtocolError` (stores nothing) for a result that cannot be right:
        unknown job or block, from a node that never held its lease, corrupt encoding, a
        wrong CRC, primes outside the block or gaps no primes leave (:func:`check_block`,
        which inflates nothing larger than the block can hold).
        """
        row = self.db.execute(
            "SELECT b.lo, b.hi, b.state, b.node, j.state FROM blocks b "
            "JOIN jobs j ON j.id = b.job WHERE b.job = ? AND b.block = ?",
            (job, block),
        ).fetchone()
        if row is None:
            raise ProtocolError(f"no block {block} in job {job}")
        lo, hi, block_state, holder, job_state = row
        if (
            holder != node
            and self.db.execute(
                "SELECT 1 FROM leases WHERE job = ? AND block = ? AND node = ?", (job, block, node)
            ).fetchone()
            is None
        ):
            raise ProtocolError(f"block {block} of job {job} was never given to {node}")
        if block_state == "done":
            return "duplicate"
        if job_state != "running":
            raise ProtocolError(f"job {job} is {job_state}")
        header = check_block(data, lo, hi)
        first = header.first
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            cur = self.db.execute(
                "UPDATE blocks SET state = 'done', node = ?, lease_until = NULL "
                "WHERE job = ? AND block = ? AND state != 'done'",
                (node, job, block),
            )
            if cur.rowcount == 0:  # stored by someone else between our read and now
                return "duplicate"
            self.db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job, block, node, header.count, first, header.last, header.crc32, data, now),
            )  # fmt: skip
            open_blocks = self.db.execute(
                "SELECT COUNT(*) FROM blocks WHERE job = ? AND state != 'done'", (job,)
            ).fetchone()[0]
            if open_blocks == 0:
                self.db.execute(
                    "UPDATE jobs SET state = 'done', finished = ? WHERE id = ?", (now, job)
                )
        return "stored"

    # -- reading ------------------------------------------------------------------------

    def info(self, job: str) -> JobInfo:
        row = self.db.execute(
            "SELECT id, name, state, start, end_, block_size, blocks, created, finished "
            "FROM jobs WHERE id = ?",
            (job,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no job {job}")
        return JobInfo(*row)

    def progress(self, job: str) -> Progress:
        row = self.db.execute(
            "SELECT name, state, start, end_, blocks, created, finished FROM jobs WHERE id = ?",
            (job,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no job {job}")
        name, state, start, end, total, created, finished = row
        done, primes, largest = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(count), 0), MAX(CASE WHEN count > 0 THEN last END) "
            "FROM results WHERE job = ?",
            (job,),
        ).fetchone()
        return Progress(job, name, state, start, end, done, total, primes, largest, created,
                        finished)  # fmt: skip

    def contributions(self, job: str) -> Iterator[tuple[int, str, int, int]]:
        """``(block, node, count, last)`` of every stored result, in block order."""
        yield from self.db.execute(
            "SELECT block, node, count, last FROM results WHERE job = ? ORDER BY block", (job,)
        )

    def export(self, job: str) -> Iterator[np.ndarray]:
        """The primes of a job in ascending order, one block at a time (bounded memory)."""
        self.require(job)
        cursor = self.db.execute("SELECT data FROM results WHERE job = ? ORDER BY block", (job,))
        for (data,) in cursor:
            yield decode_primes(data).primes

    def verify(
        self, job: str, recompute: Callable[[int, int], np.ndarray] | None = None
    ) -> list[str]:
        """Problems found re-reading every stored block (an empty list: all is well).

        ``recompute(lo, hi)``, when given, lists the primes of each block again here: a
        node can send a list of the right length, inside its block, with a CRC that
        matches it, of numbers that are not the primes; only computing them again
        finds it (and names the node)."""
        problems = []
        recounted = 0  # from the data itself, not from the stored counts
        rows = self.db.execute(
            "SELECT r.block, r.node, r.count, r.crc32, r.data, b.lo, b.hi FROM results r "
            "JOIN blocks b ON b.job = r.job AND b.block = r.block WHERE r.job = ? "
            "ORDER BY r.block",
            (job,),
        )
        for block, node, count, crc, data, lo, hi in rows:
            try:
                decoded = decode_primes(data)
            except ProtocolError as exc:
                problems.append(f"block {block}: {exc}")
                continue
            recounted += decoded.count
            if decoded.count != count or decoded.crc32 != crc:
                problems.append(f"block {block}: stored count/CRC differ from its data")
            if decoded.count and (decoded.first < lo or decoded.last >= hi):
                problems.append(f"block {block}: primes outside [{lo}, {hi})")
            if recompute is not None:
                again = recompute(lo, hi)
                if again.size != decoded.count or checksum(again) != decoded.crc32:
                    problems.append(f"block {block} from {node}: not the primes of [{lo}, {hi}) "
                                    f"(recomputed here: {again.size:,} primes)")  # fmt: skip
        progress = self.progress(job)
        if progress.blocks_done != progress.blocks_total:
            problems.append(f"{progress.blocks_total - progress.blocks_done} blocks missing")
        elif progress.start <= 2 and progress.end in KNOWN_PI:
            expected = KNOWN_PI[progress.end]
            if recounted != expected:
                problems.append(f"{recounted} primes found, pi({progress.end}) = {expected}")
        return problems
