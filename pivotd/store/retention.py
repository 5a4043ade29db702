"""Retention (the layer-wise protocol's rule): past a limit, the oldest run by last update goes. Past the per-run
step limit, a run's older steps are thinned (or, as the protocol has it, its oldest dropped). A managed run or job
that is queued or running is never evicted, and does not count against `max_runs`."""

from __future__ import annotations

import bisect
import sqlite3
from dataclasses import dataclass
from typing import Literal

StepRetention = Literal["thin", "drop_oldest"]

# Runs in these states are owned by a live training job and must outlive any retention pass.
PROTECTED_STATES = ("created", "queued", "running")


@dataclass(frozen=True, slots=True)
class Retention:
    max_runs: int
    max_steps_per_run: int
    max_db_bytes: int
    steps: StepRetention = "thin"


def enforce(conn: sqlite3.Connection, limits: Retention, touched: list[int]) -> list[str]:
    """Apply the limits inside the caller's transaction; returns the run ids evicted."""
    for ref in _over_step_limit(conn, limits.max_steps_per_run, touched):
        if limits.steps == "thin":
            _thin_steps(conn, limits.max_steps_per_run, ref)
        _trim_steps(conn, limits.max_steps_per_run, ref)
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


def _over_step_limit(conn: sqlite3.Connection, max_steps: int, refs: list[int]) -> list[int]:
    if not refs:
        return []
    marks = ",".join("?" * len(refs))
    rows = conn.execute(f"SELECT id FROM runs WHERE step_count > ? AND id IN ({marks})", (max_steps, *refs))
    return [ref for (ref,) in rows]


def _thin_steps(conn: sqlite3.Connection, max_steps: int, ref: int) -> None:
    """Halve the resolution of the older half of the run's steps until it fits, sparing its first step and
    the steps next to its events (non-finite payloads) and alerts.

    Each pass deletes every second step of the older half, so a region of the run is thinned once more
    each time it is in the older half: the older a step, the sparser its neighbourhood (every 2nd step
    kept, then every 4th, ...), and the whole run stays visible. A pass frees about a quarter of the
    limit, so passes are rare: one per `max_steps / 4` steps written.
    """
    steps = [step for (step,) in conn.execute("SELECT step FROM steps WHERE run = ? ORDER BY step", (ref,))]
    kept = _next_to_marks(conn, ref, steps)
    while len(steps) > max_steps:
        older = steps[: len(steps) // 2]
        doomed = {step for step in older[1::2] if step not in kept}
        if not doomed:
            return  # only marked steps are left to thin: the oldest unmarked ones go instead
        conn.executemany("DELETE FROM steps WHERE run = ? AND step = ?", [(ref, step) for step in doomed])
        steps = [step for step in steps if step not in doomed]


def _next_to_marks(conn: sqlite3.Connection, ref: int, steps: list[int]) -> set[int]:
    """The stored steps nearest to (at, before and after) each step an event or alert of the run names."""
    marked = [
        step
        for (step,) in conn.execute(
            """SELECT step FROM run_events WHERE run = ?1 AND step IS NOT NULL
               UNION SELECT json_extract(data, '$.step') FROM alerts
               WHERE json_extract(data, '$.run_id') = (SELECT run_id FROM runs WHERE id = ?1)
                 AND json_type(data, '$.step') = 'integer'""",
            (ref,),
        )
    ]
    kept = {steps[0]} if steps else set()
    for step in marked:
        at = bisect.bisect_left(steps, step)
        kept.update(steps[max(0, at - 1) : at + 2])
    return kept


def _trim_steps(conn: sqlite3.Connection, max_steps: int, ref: int) -> None:
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
