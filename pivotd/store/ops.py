"""Write operations: each runs inside the writer's batch transaction, on the writer thread."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pivotd.errors import Conflict, NotFound
from pivotd.store import scalarcodec
from pivotd.store.retention import PROTECTED_STATES
from pivotd.store.scalarcodec import Points
from shared.models.runs import SUPERVISED_KINDS, RunState

MAX_EVENTS_PER_RUN = 1000
UNKNOWN_EXPERIMENT = "unknown_experiment"
"""The run event of a write whose `experiment_id` names no experiment."""


@dataclass(frozen=True, slots=True)
class RunFields:
    """Optional run attributes a write may carry (from layer-wise `metadata` or the scalar body)."""

    experiment_id: str | None = None
    group: str | None = None
    tags: list[str] | None = None
    extra: dict[str, Any] | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.experiment_id, self.group, self.tags, self.extra))


class Tx:
    """What an operation may do inside the batch transaction; remembers run ids and touched runs."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.run_refs: dict[str, int] = {}
        self.created: set[str] = set()
        self.revived: set[str] = set()
        """External runs that had ended (finished or lost) and are `running` again: their script sent data."""
        self.steps_written = 0
        """Steps written as JSON, to be packed by the compaction that follows (`store/compaction.py`)."""
        self._series: dict[tuple[int, str], list[Any]] = {}

    def series(self, run_ref: int, name: str) -> list[Any]:
        """[id, last step] of a run's series, made if new; the caller keeps the last step up to date."""
        key = (run_ref, name)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = list(
                self.conn.execute(
                    "INSERT INTO series (run, name) VALUES (?, ?) ON CONFLICT (run, name) DO UPDATE SET name = name "
                    "RETURNING id, last_step",
                    key,
                ).fetchone()
            )
        return series

    def ensure_run(self, run_id: str, fields: RunFields | None = None) -> int:
        ref = self.run_refs.get(run_id)
        if ref is None:
            row = self.conn.execute("SELECT id, kind, status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                ref = self.conn.execute(
                    "INSERT INTO runs (run_id, created_at, last_update) VALUES (?, ?, ?) RETURNING id",
                    (run_id, self.now, self.now),
                ).fetchone()[0]
                self.created.add(run_id)
            else:
                ref, kind, status = row
                if kind == "external" and status != RunState.RUNNING:
                    # Its script is back (resumed with the same run id, or only slow): the run is live again.
                    # A managed run's state is its trainer's alone.
                    self.conn.execute(
                        "UPDATE runs SET status = ?, error = NULL, finished_at = NULL WHERE id = ?",
                        (RunState.RUNNING, ref),
                    )
                    self.revived.add(run_id)
            self.run_refs[run_id] = ref
        if fields is not None and fields.any():
            experiment_id = fields.experiment_id
            if experiment_id is not None and not self._may_join(ref, experiment_id):
                experiment_id = None
            self.conn.execute(
                """UPDATE runs SET experiment_id = coalesce(?, experiment_id),
                                   group_name = coalesce(?, group_name),
                                   tags = coalesce(?, tags),
                                   metadata = json_patch(metadata, ?)
                   WHERE id = ?""",
                (
                    experiment_id,
                    fields.group,
                    None if fields.tags is None else json.dumps(fields.tags),
                    json.dumps(fields.extra or {}),
                    ref,
                ),
            )
        return ref

    def _may_join(self, ref: int, experiment_id: str) -> bool:
        """Whether a write may join its run to `experiment_id`. A missing one is not joined (its id can never
        come to exist: ids are the server's), but the metrics are still stored, and the run's events say so once."""
        if self.conn.execute("SELECT 1 FROM experiments WHERE id = ?", (experiment_id,)).fetchone() is not None:
            return True
        message = f"experiment {experiment_id!r} not found: the run was not joined to it (its metrics are stored)"
        noted = self.conn.execute(
            "SELECT 1 FROM run_events WHERE run = ? AND kind = ? AND message = ?", (ref, UNKNOWN_EXPERIMENT, message)
        ).fetchone()
        if noted is None:
            self.conn.execute(
                "INSERT INTO run_events (run, timestamp, kind, field, message) VALUES (?, ?, ?, ?, ?)",
                (ref, self.now, UNKNOWN_EXPERIMENT, "experiment_id", message),
            )
        return False


class WriteOp(Protocol):
    def apply(self, tx: Tx) -> Any: ...


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One validated layer-wise step, already serialised: stored and broadcast as the same bytes (packed
    later, when the writer is idle: `store/compaction.py`)."""

    run_id: str
    step: int
    timestamp: float
    batch_size: int
    data: bytes
    fields: RunFields = field(default_factory=RunFields)


@dataclass(frozen=True, slots=True)
class PutSteps:
    records: list[StepRecord]

    def apply(self, tx: Tx) -> int:
        rows = []
        for record in self.records:
            ref = tx.ensure_run(record.run_id, record.fields)
            rows.append((ref, record.step, record.timestamp, record.batch_size, record.data))
        tx.conn.executemany(
            """INSERT INTO steps (run, step, timestamp, batch_size, data) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (run, step) DO UPDATE SET timestamp = excluded.timestamp,
                   batch_size = excluded.batch_size, data = excluded.data, shape = NULL""",
            rows,
        )
        tx.steps_written += len(rows)
        return len(rows)


@dataclass(frozen=True, slots=True)
class PutScalars:
    """Points of a run, per series name, in the order sent: a later point of a step replaces an earlier one."""

    run_id: str
    series: Mapping[str, Points]
    fields: RunFields = field(default_factory=RunFields)

    def apply(self, tx: Tx) -> int:
        ref = tx.ensure_run(self.run_id, self.fields)
        count = 0
        for name, sent in self.series.items():
            count += len(sent)
            series = tx.series(ref, name)
            points = scalarcodec.ordered(sent)
            _write_points(tx.conn, series[0], series[1], points)
            top = int(points.steps[-1])
            if series[1] is None or top >= series[1]:
                tx.conn.execute(
                    "UPDATE series SET last_step = ?, last_value = ? WHERE id = ?",
                    (top, float(points.values[-1]), series[0]),
                )
                series[1] = top
        return count


def _write_points(conn: sqlite3.Connection, series: int, last_step: int | None, points: Points) -> None:
    """Store ordered points of a series, keeping its chunks apart in steps (`store/scalarcodec.py`): points after
    the last stored step are a new chunk, or extend a small last chunk; points among stored steps are merged into
    the chunks whose steps they overlap."""
    if last_step is None:
        replaced: list[tuple[Any, ...]] = []
    elif int(points.steps[0]) > last_step:
        tail = conn.execute(
            "SELECT id, count FROM scalar_chunks WHERE series = ? ORDER BY last_step DESC LIMIT 1", (series,)
        ).fetchone()
        replaced = []
        if tail is not None and tail[1] < scalarcodec.GROW_BELOW:
            replaced = conn.execute(
                f"SELECT id, {scalarcodec.COLUMNS} FROM scalar_chunks WHERE id = ?", (tail[0],)
            ).fetchall()
    else:
        replaced = conn.execute(
            f"SELECT id, {scalarcodec.COLUMNS} FROM scalar_chunks "
            "WHERE series = ? AND last_step >= ? AND first_step <= ? ORDER BY last_step",
            (series, int(points.steps[0]), int(points.steps[-1])),
        ).fetchall()
    if replaced:
        conn.executemany("DELETE FROM scalar_chunks WHERE id = ?", [(row[0],) for row in replaced])
        points = scalarcodec.merge(scalarcodec.decode([row[1:] for row in replaced]), points)
    conn.executemany(
        "INSERT INTO scalar_chunks (series, first_step, last_step, count, steps, vals, epochs, timestamps) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(series, *scalarcodec.encode(piece)) for piece in scalarcodec.pieces(points)],
    )


@dataclass(frozen=True, slots=True)
class PutEvent:
    run_id: str
    kind: str
    message: str
    step: int | None = None
    field_name: str | None = None

    def apply(self, tx: Tx) -> int:
        ref = tx.ensure_run(self.run_id)
        event_id: int = tx.conn.execute(
            "INSERT INTO run_events (run, timestamp, kind, step, field, message) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            (ref, tx.now, self.kind, self.step, self.field_name, self.message),
        ).fetchone()[0]
        # A run that sends NaN every step must not grow its event log without bound.
        tx.conn.execute("DELETE FROM run_events WHERE run = ? AND id <= ?", (ref, event_id - MAX_EVENTS_PER_RUN))
        return event_id


@dataclass(frozen=True, slots=True)
class DeleteRun:
    run_id: str

    def apply(self, tx: Tx) -> None:
        row = tx.conn.execute("SELECT id, kind, status FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()
        if row is None:
            raise NotFound(f"run {self.run_id!r} not found")
        ref, kind, status = row
        if kind in SUPERVISED_KINDS and status in PROTECTED_STATES:
            raise Conflict(f"run {self.run_id!r} is {status}; cancel it before deleting it")
        tx.conn.execute("DELETE FROM runs WHERE id = ?", (ref,))
