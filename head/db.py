"""The coordinator's SQLite file, opened the one way its stores need."""

import sqlite3
from pathlib import Path


def connect(path: Path | str, schema: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating the tables of ``schema`` if needed); ``readonly`` for export and
    verify beside a running coordinator (WAL lets readers and the one writer work at once)."""
    if readonly:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # a crash never leaves a half-written commit
    db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
    db.executescript(schema)
    return db
