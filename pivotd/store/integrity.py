"""Checks a database before pivotd opens it: a damaged or too-new file is refused whole, never half-opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pivotd.store.schema import SCHEMA_VERSION

_SHOWN_PROBLEMS = 5


class DatabaseUnusable(RuntimeError):
    """The database must not be opened; the message says why and how to recover."""


def check_database(path: Path) -> int | None:
    """The schema version of the database at `path` (None when there is none yet), after `PRAGMA quick_check`.

    Raises DatabaseUnusable when SQLite cannot read it, the check finds damage, or a newer pivotd wrote it.
    quick_check reads every page (about a second per GB) but skips the slower index cross-checks."""
    if not path.exists():
        return None
    try:
        # Opened as the daemon opens it, but only read: a WAL a killed daemon left is part of what is checked.
        # (A read-only open would leave behind -wal and -shm files it cannot remove.)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            problems = [row[0] for row in conn.execute(f"PRAGMA quick_check({_SHOWN_PROBLEMS})")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseUnusable(_damaged(path, str(exc))) from exc
    if problems != ["ok"]:
        raise DatabaseUnusable(_damaged(path, "; ".join(problems)))
    if version > SCHEMA_VERSION:
        raise DatabaseUnusable(
            f"the database {path} was written by a newer pivotd (schema {version}; this pivotd knows up to "
            f"{SCHEMA_VERSION}). Run the newer pivotd, or restore a backup taken before the upgrade: "
            f"pivotd restore BACKUP --data-dir {path.parent} --force"
        )
    return version


def _damaged(path: Path, detail: str) -> str:
    return (
        f"the database {path} is damaged ({detail}); pivotd will not open it. Restore your latest backup with "
        f"`pivotd restore BACKUP --data-dir {path.parent} --force`, or move {path.name} (and any {path.name}-wal) "
        "aside to start with an empty database."
    )
