"""Retention (the layer-wise protocol's rule): past a limit, the oldest run by last update goes; past the per-run
step limit, the run's oldest steps go. A managed run or job that is queued or running is never evicted, and does
not count against `max_runs`."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

# Runs in these states are owned by a live training job and must outlive any retention pass.
PROTECTED_STATES = ("created", "queued", "running")


@dataclass(frozen=True, slots=True)
class Retention:
    max_runs: int
    max_steps_per_run: int
    max_db_bytes: int


def enforce(conn: sqlite3.Connection, limits: Retention, touched: list[int]) -> list[str]:
    """Apply the limits inside the caller's transaction; returns the run ids evicted."""
    _trim_steps(conn, limits.max_steps_per_run, touched)
    # `max_runs` bounds the runs retention may evict: queued and running managed runs and jobs do not count, or a
    # long queue would push out every run the moment it ended (1,000 queued jobs against the default limit). Runs
    # written in this batch are spared by both checks: evicting what we just acknowledged helps nobody.
    evicted: list[str] = []
    states = ",".join("?" * len(PROTECTED_STATES))
    evictable = conn.execute(
        f"SELECT count(*) FROM runs WHERE NOT (kind IN ('managed', 'job') AND status IN ({states}))", PROTECTED_STATES
    ).fetchone()[0]
    excess = evictable - limits.max_runs
    if excess > 0:
        evicted += _evict_oldest(conn, excess, spare=touched)
    while _used_bytes(conn) > limits.max_db_bytes:
        gone = _evict_oldest(conn, 1, spare=touched)
        if not gone:
            break
        evicted += gone
    return evicted


def _trim_steps(conn: sqlite3.Connection, max_steps: int, refs: list[int]) -> None:
    over = (
        conn.execute(
            f"SELECT id FROM runs WHERE step_count > ? AND id IN ({','.join('?' * len(refs))})",
            (max_steps, *refs),
        ).fetchall()
        if refs
        else []
    )
    for (ref,) in over:
        conn.execute(
            """DELETE FROM steps WHERE run = ?1 AND step < (
                   SELECT step FROM steps WHERE run = ?1 ORDER BY step DESC LIMIT 1 OFFSET ?2)""",
            (ref, max_steps - 1),
        )  # the delete trigger brings step_count down to max_steps


def _evict_oldest(conn: sqlite3.Connection, count: int, spare: list[int]) -> list[str]:
    states = ",".join("?" * len(PROTECTED_STATES))
    spared = ",".join("?" * len(spare))
    rows = conn.execute(
        f"""SELECT id, run_id FROM runs
            WHERE NOT (kind IN ('managed', 'job') AND status IN ({states}))
              {f"AND id NOT IN ({spared})" if spare else ""}
            ORDER BY last_update ASC, id ASC LIMIT ?""",
        (*PROTECTED_STATES, *spare, count),
    ).fetchall()
    conn.executemany("DELETE FROM runs WHERE id = ?", [(ref,) for ref, _ in rows])
    return [run_id for _, run_id in rows]


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])
