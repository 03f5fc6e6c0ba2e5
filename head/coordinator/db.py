"""The coordinator's SQLite file, opened the one way its stores need."""

import sqlite3
from pathlib import Path
from typing import ClassVar, Self


def connect(path: Path | str, schema: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating the tables of ``schema`` if needed); ``readonly`` for export and
    verify beside a running coordinator (WAL lets readers and the one writer work at once)."""
    if readonly:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    db = sqlite3.connect(str(path), isolation_level=None)
    # Results are ~290 KB blobs: with 16 KiB pages (for a new file; an existing one keeps
    # its size) storing one costs 0.31 ms of system time, against 0.50 ms with 4 KiB.
    db.execute("PRAGMA page_size=16384")
    db.execute("PRAGMA journal_mode=WAL")  # a crash never leaves a half-written commit
    db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
    db.executescript(schema)
    return db


def request_key(submitter: str, request_id: str) -> str:
    """How a request id is stored: prefixed with who sent it, so ids are per submitter
    (nobody can claim another user's id ahead of it)."""
    return f"{submitter}/{request_id}"


def add_column(db: sqlite3.Connection, table: str, column: str, declaration: str) -> bool:
    """Give a table made by an older piswarm a column that newer code writes; whether
    it was missing."""
    names = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if column in names:
        return False
    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    return True


class Store:
    """An SQLite file opened with the subclass's ``schema``; one thread uses it."""

    schema: ClassVar[str]
    name: ClassVar[str]  # for the error when it is used unopened
    jobs_table: ClassVar[str]  # one row a job, with request_id, state and submitter

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self, *, readonly: bool = False) -> Self:
        """Open (creating it if needed); ``readonly`` beside a running coordinator."""
        self._db = connect(self.path, self.schema, readonly=readonly)
        if not readonly:
            self.migrate(self._db)
        return self

    def migrate(self, db: sqlite3.Connection) -> None:
        """Bring a file written by an older piswarm up to ``schema``: the submitter column."""
        add_column(db, self.jobs_table, "submitter", "TEXT NOT NULL DEFAULT ''")

    def submitted(self, submitter: str, request_id: str) -> str | None:
        """The job ``submitter`` already started with ``request_id``, if any (a retry)."""
        if not request_id:
            return None
        row = self.db.execute(
            f"SELECT id FROM {self.jobs_table} WHERE request_id = ?",  # noqa: S608 - a ClassVar
            (request_key(submitter, request_id),),
        ).fetchone()
        return None if row is None else str(row[0])

    def running_count(self, submitter: str) -> int:
        """How many of ``submitter``'s jobs are running (its quota counts them)."""
        row = self.db.execute(
            f"SELECT COUNT(*) FROM {self.jobs_table} "  # noqa: S608 - a ClassVar
            "WHERE state = 'running' AND submitter = ?",
            (submitter,),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self.name} is not open")
        return self._db
