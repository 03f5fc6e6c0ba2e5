"""Life jobs in SQLite: the request, each epoch's layout, checkpoint pieces, whole boards.

Owned by the coordinator's thread (like :class:`~head.coordinator.jobstore.JobStore`, same file). A
checkpoint is kept as pieces, one per strip, until every strip of the epoch has sent its
piece for that generation; then the pieces become one board and the older boards and
pieces go. So at most one whole board per job (plus the pieces in flight) is stored.
"""

import time
import uuid
from dataclasses import dataclass

import numpy as np

from head.coordinator.db import Store, request_key
from head.coordinator.life_board import board_hash, from_blob, to_blob
from piswarm.protocol import ProtocolError
from piswarm.protocol.jobs import encode_request
from piswarm.protocol.life import LifeRequest, decode_request, words_for

SCHEMA = """
CREATE TABLE IF NOT EXISTS life_jobs (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,
    request TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'cancelled', 'failed')),
    epoch INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    finished REAL,
    error TEXT,
    submitter TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS life_layout (
    job TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    strip INTEGER NOT NULL,
    node TEXT NOT NULL,
    row0 INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    PRIMARY KEY (job, epoch, strip)
);
CREATE TABLE IF NOT EXISTS life_pieces (
    job TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    gen INTEGER NOT NULL,
    strip INTEGER NOT NULL,
    row0 INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job, epoch, gen, strip)
);
CREATE TABLE IF NOT EXISTS life_boards (
    job TEXT NOT NULL,
    gen INTEGER NOT NULL,
    population INTEGER NOT NULL,
    hash TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job, gen)
);
"""


@dataclass(frozen=True)
class Strip:
    strip: int
    node: str
    row0: int
    rows: int


@dataclass(frozen=True)
class LifeJob:
    job: str
    request: LifeRequest
    state: str
    epoch: int
    created: float
    finished: float | None
    error: str | None


@dataclass(frozen=True)
class Board:
    gen: int
    population: int
    hash: str
    cells: np.ndarray  # packed


class LifeStore(Store):
    schema = SCHEMA
    jobs_table = "life_jobs"
    name = "life store"

    def submit(
        self, request: LifeRequest, board: np.ndarray, now: float, *, submitter: str = ""
    ) -> tuple[str, bool]:
        """Store a request and its board at generation 0: ``(job, True)``; a ``request_id``
        the same submitter sent before returns ``(its job, False)``."""
        known = self.submitted(submitter, request.request_id)
        if known is not None:
            return known, False
        job = f"l{time.strftime('%Y%m%d', time.gmtime(now))}-{uuid.uuid4().hex[:6]}"
        text = encode_request(request).decode()
        key = request_key(submitter, request.request_id) if request.request_id else None
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO life_jobs (id, request_id, request, state, created, submitter) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                (job, key, text, now, submitter),
            )
            self._put_board(job, 0, board)
        return job, True

    def _put_board(self, job: str, gen: int, board: np.ndarray) -> Board:
        from piswarm.life import population

        found = Board(gen=gen, population=population(board), hash=board_hash(board), cells=board)
        self.db.execute(
            "INSERT OR REPLACE INTO life_boards VALUES (?, ?, ?, ?, ?)",
            (job, gen, found.population, found.hash, to_blob(board)),
        )
        return found

    def has(self, job: str) -> bool:
        """Whether ``job`` is a Life job of this database (ids say nothing of the kind)."""
        row = self.db.execute("SELECT 1 FROM life_jobs WHERE id = ?", (job,)).fetchone()
        return row is not None

    def get(self, job: str) -> LifeJob:
        row = self.db.execute(
            "SELECT request, state, epoch, created, finished, error FROM life_jobs WHERE id = ?",
            (job,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no Life job {job!r}")
        request = decode_request(row[0].encode())
        return LifeJob(job, request, row[1], row[2], row[3], row[4], row[5])

    def running(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM life_jobs WHERE state = 'running'")]

    def ended(self, limit: int) -> list[str]:
        """The ``limit`` Life jobs that ended last, the latest first."""
        rows = self.db.execute(
            "SELECT id FROM life_jobs WHERE state != 'running' ORDER BY finished DESC LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    def ended_beyond(self, keep: int, since: float, limit: int) -> list[tuple[str, float]]:
        """Ended Life jobs older than the ``keep`` that ended last, ended after ``since``:
        ``(job, finished)``, the oldest first, at most ``limit``."""
        rows = self.db.execute(
            "SELECT id, finished FROM (SELECT id, finished FROM life_jobs "
            "WHERE state != 'running' ORDER BY finished DESC LIMIT -1 OFFSET ?) "
            "WHERE finished > ? ORDER BY finished LIMIT ?",
            (keep, since, limit),
        )
        return [(r[0], float(r[1])) for r in rows]

    def board(self, job: str) -> Board:
        """The latest whole board of ``job``."""
        request = self.get(job).request
        row = self.db.execute(
            "SELECT gen, population, hash, data FROM life_boards WHERE job = ? "
            "ORDER BY gen DESC LIMIT 1",
            (job,),
        ).fetchone()
        if row is None:
            raise KeyError(f"Life job {job!r} has no board")
        return Board(row[0], row[1], row[2], from_blob(row[3], request.height, request.width))

    def summary(self, job: str) -> tuple[int, int, str]:
        """Generation, population and hash of the latest board, without reading the board."""
        row = self.db.execute(
            "SELECT gen, population, hash FROM life_boards WHERE job = ? ORDER BY gen DESC LIMIT 1",
            (job,),
        ).fetchone()
        if row is None:
            raise KeyError(f"Life job {job!r} has no board")
        return int(row[0]), int(row[1]), str(row[2])

    def new_epoch(self, job: str, layout: list[Strip], gen: int) -> int:
        with self.db:
            self.db.execute("BEGIN")
            epoch = (
                int(
                    self.db.execute("SELECT epoch FROM life_jobs WHERE id = ?", (job,)).fetchone()[
                        0
                    ]
                )
                + 1
            )
            self.db.execute("UPDATE life_jobs SET epoch = ? WHERE id = ?", (epoch, job))
            self.db.executemany(
                "INSERT INTO life_layout VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job, epoch, s.strip, s.node, s.row0, s.rows, gen) for s in layout],
            )
            self.db.execute("DELETE FROM life_layout WHERE job = ? AND epoch < ?", (job, epoch))
            self.db.execute("DELETE FROM life_pieces WHERE job = ? AND epoch < ?", (job, epoch))
        return epoch

    def layout(self, job: str, epoch: int) -> list[Strip]:
        rows = self.db.execute(
            "SELECT strip, node, row0, rows FROM life_layout WHERE job = ? AND epoch = ? "
            "ORDER BY strip",
            (job, epoch),
        )
        return [Strip(*row) for row in rows]

    def add_piece(
        self, job: str, epoch: int, gen: int, strip: int, row0: int, packed: bytes, strips: int
    ) -> Board | None:
        """Store one strip's checkpoint; when the generation is complete, make it the
        job's board and return it. Pieces that do not tile the board row for row (strips
        that disagree on where their boundaries moved) raise ProtocolError: the pieces of
        that generation are dropped and the job's last board stays."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR IGNORE INTO life_pieces VALUES (?, ?, ?, ?, ?, ?)",
                (job, epoch, gen, strip, row0, packed),
            )
            have = self.db.execute(
                "SELECT COUNT(*) FROM life_pieces WHERE job = ? AND epoch = ? AND gen = ?",
                (job, epoch, gen),
            ).fetchone()[0]
            if have < strips:
                return None
            request = self.get(job).request
            words = words_for(request.width)
            parts, end = [], 0
            for piece_row0, data in self.db.execute(
                "SELECT row0, data FROM life_pieces WHERE job = ? AND epoch = ? AND gen = ? "
                "ORDER BY row0",
                (job, epoch, gen),
            ):
                if piece_row0 != end:
                    break
                parts.append(np.frombuffer(data, dtype="<u8").astype(np.uint64).reshape(-1, words))
                end += parts[-1].shape[0]
            if end == request.height:
                board = self._put_board(job, gen, np.concatenate(parts))
                self.db.execute("DELETE FROM life_pieces WHERE job = ? AND gen <= ?", (job, gen))
                self.db.execute("DELETE FROM life_boards WHERE job = ? AND gen < ?", (job, gen))
                return board
            self.db.execute(
                "DELETE FROM life_pieces WHERE job = ? AND epoch = ? AND gen = ?", (job, epoch, gen)
            )
        raise ProtocolError(
            f"the checkpoint pieces of generation {gen} do not tile the board "
            f"(rows 0 to {end} of {request.height} line up)"
        )

    def finish(self, job: str, state: str, now: float, error: str | None = None) -> None:
        with self.db:
            self.db.execute(
                "UPDATE life_jobs SET state = ?, finished = ?, error = ? WHERE id = ?",
                (state, now, error, job),
            )
            if state != "running":
                self.db.execute("DELETE FROM life_pieces WHERE job = ?", (job,))
