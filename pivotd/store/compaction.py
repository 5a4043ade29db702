"""Packing stored steps (`stepcodec`) while the writer is idle, a chunk per transaction.

Steps are written as the JSON they were sent as, so packing costs the ingest path nothing: a 50-layer
step takes longer to pack than to validate. The writer packs them once nothing has been queued for
`QUIET_S`, `CHUNK` at a time so a request arriving meanwhile waits for one short transaction at most, and
between batches while writes keep coming, taking at most `SHARE` of its time, so a run that never pauses
is packed as well, at a bounded cost to its throughput. Steps of an older version's database are packed
the same way after the upgrade, so opening a large database does not wait for it.
"""

from __future__ import annotations

import sqlite3
import zlib

from pivotd.store import stepcodec

CHUNK = 32
"""Steps packed per transaction: a few milliseconds of work for 50-layer steps."""
QUIET_S = 0.02
SHARE = 0.2
"""Most of the writer's time packing may take while writes keep coming."""
KEPT_AS_JSON = 0
"""The shape of a step that stays JSON: its packed form would not read back identically."""


def compact(conn: sqlite3.Connection, packer: stepcodec.Packer) -> int:
    """Pack up to `CHUNK` steps still stored as JSON, in one transaction; returns how many were found. `packer`
    is the connection's: it remembers each run's latest template from one chunk to the next."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT id, run, step, timestamp, batch_size, data FROM steps WHERE shape IS NULL LIMIT ?", (CHUNK,)
        ).fetchall()
        shapes: dict[tuple[int, bytes], int] = {}
        kept, moved = [], []
        for ref, run, step, timestamp, batch_size, stored in rows:
            data = stored.encode() if isinstance(stored, str) else stored  # an early version's TEXT
            packed = packer.pack(data, run)
            if packed is None:
                kept.append((data, KEPT_AS_JSON, ref))
                continue
            key = (run, packed.digest)
            if key not in shapes:
                shapes[key] = _shape_id(conn, run, packed)
            moved.append((ref, run, step, timestamp, batch_size, shapes[key], packed.values))
        conn.executemany("UPDATE steps SET data = ?, shape = ? WHERE id = ?", kept)
        # Deleted and inserted again under a new id rather than updated: a row shrunk in place stays alone on
        # the page its JSON filled (SQLite merges only nearly empty pages), so the file would hardly shrink;
        # new ids append, and packed steps fill their pages.
        conn.executemany("DELETE FROM steps WHERE id = ?", [(row[0],) for row in moved])
        conn.executemany(
            "INSERT INTO steps (run, step, timestamp, batch_size, shape, data) VALUES (?, ?, ?, ?, ?, ?)",
            [row[1:] for row in moved],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(rows)


def unpacked(conn: sqlite3.Connection) -> int:
    """Steps stored as JSON, to pack (the partial index `steps_unpacked` answers this)."""
    return int(conn.execute("SELECT count(*) FROM steps WHERE shape IS NULL").fetchone()[0])


def _shape_id(conn: sqlite3.Connection, run: int, packed: stepcodec.Packed) -> int:
    """The id of a run's step template, stored (compressed) the first time it is seen."""
    row = conn.execute("SELECT id FROM step_shapes WHERE run = ? AND digest = ?", (run, packed.digest)).fetchone()
    if row is not None:
        return int(row[0])
    return int(
        conn.execute(
            "INSERT INTO step_shapes (run, digest, template) VALUES (?, ?, ?) RETURNING id",
            (run, packed.digest, zlib.compress(packed.template)),
        ).fetchone()[0]
    )
