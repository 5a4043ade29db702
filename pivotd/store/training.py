"""Managed training in the store: models, the job fields of runs, params, checkpoints and worker logs.

Write operations run on the writer thread like every other (`await store.writer.submit(op)`); state
transitions check the current state inside the transaction, so a cancel racing a worker's exit is decided
once, by whichever commits first.

Artifact paths (params and checkpoint files, a model's `saved_model_path`, a run's `config.resume_from.path`) are
stored as `Settings.artifact_ref` records them, relative to the data directory, and used through
`Settings.artifact_path`: a data directory that is moved or restored elsewhere keeps finding its own files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from pivotd.errors import Conflict, NotFound
from pivotd.store import scalarcodec
from pivotd.store.ops import Tx
from shared.models.runs import SUPERVISED_KINDS, RunState

MAX_LOG_LINES_PER_RUN = 5000
ACTIVE_STATES = (RunState.QUEUED, RunState.RUNNING)
SUPERVISED = f"kind IN {SUPERVISED_KINDS!r}"
"""SQL: the runs the supervisor queues and runs (the trainer's and jobs)."""
QUEUE_ORDER = "priority DESC, queued_at, id"
"""The order queued runs start in: higher priority first, then first in, first out."""
# Queued runs the dispatcher may start: not held back by a paused or cancelled experiment.
DISPATCHABLE = f"""{SUPERVISED} AND status = 'queued'
    AND NOT EXISTS (SELECT 1 FROM experiments e WHERE e.id = runs.experiment_id
                    AND (e.paused_at IS NOT NULL OR e.cancelled_at IS NOT NULL))"""


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# ---- rows ---------------------------------------------------------------------------------------------------

MODEL_COLUMNS = (
    "model_id, name, description, architecture, hyperparams, trained, saved_model_path, saved_run_id, created_at, "
    "updated_at, last_trained_at"
)


@dataclass(frozen=True, slots=True)
class ModelRow:
    model_id: str
    name: str | None
    description: str | None
    architecture: dict[str, Any] | None
    hyperparams: dict[str, Any] | None
    trained: bool
    saved_model_path: str | None
    saved_run_id: str | None
    created_at: float
    updated_at: float
    last_trained_at: float | None


def model_row(row: Any) -> ModelRow:
    return ModelRow(
        row[0], row[1], row[2], _loads(row[3]), _loads(row[4]), bool(row[5]), row[6], row[7], row[8], row[9], row[10]
    )


JOB_COLUMNS = (
    "id, run_id, kind, status, model_id, name, config, error, created_at, queued_at, started_at, finished_at, "
    "epoch, epochs_total, param_id, tags, last_update, gpus, priority, attempts, exit_code"
)


@dataclass(frozen=True, slots=True)
class JobRow:
    ref: int
    run_id: str
    kind: str
    status: str
    model_id: str | None
    name: str | None
    config: dict[str, Any]
    error: str | None
    created_at: float
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    epoch: int | None
    epochs_total: int | None
    param_id: str | None
    tags: list[str]
    last_update: float
    gpus: list[dict[str, Any]]
    """The GPUs its worker was pinned to (`{index, uuid, name}`), as of its last start; [] for none."""
    priority: int = 0
    attempts: int = 0
    """How many times it started."""
    exit_code: int | None = None

    @property
    def gpus_requested(self) -> int | None:
        """A job's GPU request; None for a built-in run (its `device` hyperparameter decides)."""
        return int(self.config["gpus"]) if self.kind == "job" else None


def _job_row(row: Any) -> JobRow:
    return JobRow(
        row[0], row[1], row[2], row[3], row[4], row[5], _loads(row[6]) or {}, row[7], row[8], row[9], row[10],
        row[11], row[12], row[13], row[14], json.loads(row[15]), row[16], _loads(row[17]) or [], row[18], row[19],
        row[20],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParamsRow:
    param_id: str
    run_id: str
    model_id: str | None
    path: str
    size_bytes: int
    created_at: float


CHECKPOINT_COLUMNS = (
    "c.checkpoint_id, r.run_id, c.epoch, c.metric_name, c.metric_value, c.metrics, c.path, c.size_bytes, c.is_best, "
    "c.source, c.created_at"
)


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    checkpoint_id: str
    run_id: str
    epoch: int | None
    metric_name: str | None
    metric_value: float | None
    metrics: dict[str, Any]
    path: str
    size_bytes: int
    is_best: bool
    source: str
    created_at: float


def _checkpoint_row(row: Any) -> CheckpointRow:
    return CheckpointRow(
        row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7], bool(row[8]), row[9], row[10]
    )


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: float
    level: str
    message: str


# ---- writes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutModel:
    """Create a model, or update the given fields of an existing one. Returns (row, created)."""

    model_id: str
    values: dict[str, Any]
    create_only: bool = False

    def apply(self, tx: Tx) -> tuple[ModelRow, bool]:
        values = {k: json.dumps(v) if k in ("architecture", "hyperparams") and v is not None else v
                  for k, v in self.values.items()}  # fmt: skip
        exists = tx.conn.execute("SELECT 1 FROM models WHERE model_id = ?", (self.model_id,)).fetchone()
        if exists and self.create_only:
            raise Conflict(f"model {self.model_id!r} already exists")
        if exists:
            if values:
                sets = ", ".join(f"{name} = ?" for name in values)
                tx.conn.execute(
                    f"UPDATE models SET {sets}, updated_at = ? WHERE model_id = ?",
                    (*values.values(), tx.now, self.model_id),
                )
        else:
            names = ["model_id", "created_at", "updated_at", *values]
            tx.conn.execute(
                f"INSERT INTO models ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                (self.model_id, tx.now, tx.now, *values.values()),
            )
        row = tx.conn.execute(f"SELECT {MODEL_COLUMNS} FROM models WHERE model_id = ?", (self.model_id,)).fetchone()
        return model_row(row), not exists


@dataclass(frozen=True, slots=True)
class CreateJob:
    run_id: str
    status: str  # created (P sessions) or queued
    config: dict[str, Any]
    epochs_total: int
    model_id: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)

    def apply(self, tx: Tx) -> None:
        ref = tx.conn.execute(
            """INSERT INTO runs (run_id, kind, status, created_at, last_update, model_id, name, config, epochs_total,
                                 tags, queued_at)
               VALUES (?, 'managed', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (
                self.run_id, self.status, tx.now, tx.now, self.model_id, self.name, json.dumps(self.config),
                self.epochs_total, json.dumps(self.tags), tx.now if self.status == RunState.QUEUED else None,
            ),
        ).fetchone()[0]  # fmt: skip
        tx.run_refs[self.run_id] = ref
        tx.created.add(self.run_id)


@dataclass(frozen=True, slots=True)
class QueueJob:
    """Queue a job: a command run as a run of kind `job`, its argv and requests in `config`."""

    run_id: str
    config: dict[str, Any]
    priority: int
    name: str | None
    tags: list[str]
    experiment_id: str | None
    group: str | None

    def apply(self, tx: Tx) -> None:
        ref = tx.conn.execute(
            """INSERT INTO runs (run_id, kind, status, created_at, last_update, name, config, tags, queued_at,
                                 priority, experiment_id, group_name)
               VALUES (?, 'job', 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            (
                self.run_id, tx.now, tx.now, self.name, json.dumps(self.config), json.dumps(self.tags), tx.now,
                self.priority, self.experiment_id, self.group,
            ),
        ).fetchone()[0]  # fmt: skip
        tx.run_refs[self.run_id] = ref
        tx.created.add(self.run_id)


@dataclass(frozen=True, slots=True)
class Transition:
    """Move a managed run or job to `status` if it is in one of `allowed`; raises Conflict otherwise. Starting it
    counts an attempt; ending it records `exit_code` (a job's)."""

    run_id: str
    status: str
    allowed: tuple[str, ...]
    error: str | None = None
    exit_code: int | None = None

    def apply(self, tx: Tx) -> str:
        row = tx.conn.execute(
            f"SELECT id, status FROM runs WHERE run_id = ? AND {SUPERVISED}", (self.run_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"run {self.run_id!r} not found")
        ref, current = row
        if current not in self.allowed:
            raise Conflict(f"run {self.run_id!r} is {current}")
        stamp = {"queued": "queued_at", "running": "started_at"}.get(self.status, "finished_at")
        attempt = ", attempts = attempts + 1" if self.status == RunState.RUNNING else ""
        tx.conn.execute(
            f"UPDATE runs SET status = ?, error = ?, exit_code = ?, {stamp} = ?{attempt} WHERE id = ?",
            (self.status, self.error, self.exit_code, tx.now, ref),
        )
        tx.run_refs[self.run_id] = ref
        return str(current)


@dataclass(frozen=True, slots=True)
class RecoverJobs:
    """At start-up, for runs a dead daemon left `running`: a job with retries left is queued again; with `resume`, a
    run with a trainer checkpoint is queued again to continue from it (`config.resume_from`); every other one fails
    with reason `interrupted`. Returns ([failed run ids], [queued again run ids])."""

    resume: bool = False

    def apply(self, tx: Tx) -> tuple[list[str], list[str]]:
        failed: list[str] = []
        resumed: list[str] = []
        rows = tx.conn.execute(
            f"""SELECT id, run_id, kind, attempts, json_extract(config, '$.retries') FROM runs
                WHERE {SUPERVISED} AND status = 'running'"""
        ).fetchall()
        for ref, run_id, kind, attempts, retries in rows:
            tx.run_refs[run_id] = ref
            if kind == "job":
                retry = attempts <= (retries or 0)
                tx.conn.execute(
                    "UPDATE runs SET status = ?, error = 'interrupted', queued_at = ?, finished_at = ? WHERE id = ?",
                    (RunState.QUEUED if retry else RunState.FAILED, tx.now, None if retry else tx.now, ref),
                )
                (resumed if retry else failed).append(run_id)
                continue
            last = tx.conn.execute(
                """SELECT path, epoch FROM checkpoints WHERE run = ? AND source = 'trainer'
                   ORDER BY epoch DESC LIMIT 1""",
                (ref,),
            ).fetchone()
            if self.resume and last is not None:
                best = tx.conn.execute(
                    "SELECT metric_value FROM checkpoints WHERE run = ? AND is_best AND source = 'trainer'", (ref,)
                ).fetchone()
                resume_from = {"path": last[0], "epoch": last[1], "best": best[0] if best else None}
                tx.conn.execute(
                    """UPDATE runs SET status = 'queued', queued_at = ?, error = NULL,
                                      config = json_set(config, '$.resume_from', json(?)) WHERE id = ?""",
                    (tx.now, json.dumps(resume_from), ref),
                )
                resumed.append(run_id)
            else:
                tx.conn.execute(
                    "UPDATE runs SET status = 'failed', error = 'interrupted', finished_at = ? WHERE id = ?",
                    (tx.now, ref),
                )
                failed.append(run_id)
        return failed, resumed


@dataclass(frozen=True, slots=True)
class SetEpoch:
    run_id: str
    epoch: int

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("UPDATE runs SET epoch = ? WHERE run_id = ?", (self.epoch, self.run_id))


@dataclass(frozen=True, slots=True)
class SetGpus:
    """Record the GPUs a run's worker is pinned to, as it starts."""

    run_id: str
    gpus: list[dict[str, Any]]

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("UPDATE runs SET gpus = ? WHERE run_id = ?", (json.dumps(self.gpus), self.run_id))


@dataclass(frozen=True, slots=True)
class AddParams:
    param_id: str
    run_id: str
    model_id: str | None
    path: str
    size_bytes: int

    def apply(self, tx: Tx) -> None:
        tx.conn.execute(
            "INSERT INTO params (param_id, run_id, model_id, path, size_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (self.param_id, self.run_id, self.model_id, self.path, self.size_bytes, tx.now),
        )
        tx.conn.execute("UPDATE runs SET param_id = ? WHERE run_id = ?", (self.param_id, self.run_id))
        if self.model_id is not None:
            tx.conn.execute("UPDATE models SET last_trained_at = ? WHERE model_id = ?", (tx.now, self.model_id))


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    checkpoint_id: str
    run_id: str
    epoch: int | None
    metric_name: str | None
    metric_value: float | None
    metrics: dict[str, Any]
    path: str
    size_bytes: int
    is_best: bool
    source: str

    def apply(self, tx: Tx) -> None:
        row = tx.conn.execute("SELECT id FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()
        if row is None:
            raise NotFound(f"session {self.run_id!r} not found")
        if self.is_best:
            tx.conn.execute("UPDATE checkpoints SET is_best = 0 WHERE run = ?", (row[0],))
        tx.conn.execute(
            """INSERT INTO checkpoints (checkpoint_id, run, epoch, metric_name, metric_value, metrics, path,
                                        size_bytes, is_best, source, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                self.checkpoint_id, row[0], self.epoch, self.metric_name, self.metric_value,
                json.dumps(self.metrics), self.path, self.size_bytes, int(self.is_best), self.source, tx.now,
            ),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeleteCheckpoint:
    checkpoint_id: str

    def apply(self, tx: Tx) -> str:
        row = tx.conn.execute(
            "DELETE FROM checkpoints WHERE checkpoint_id = ? RETURNING path", (self.checkpoint_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"checkpoint {self.checkpoint_id!r} not found")
        return str(row[0])


@dataclass(frozen=True, slots=True)
class AppendLogs:
    run_id: str
    lines: list[LogLine]

    def apply(self, tx: Tx) -> None:
        row = tx.conn.execute("SELECT id FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()
        if row is None:
            return  # the run was deleted while its worker still talked
        last = None
        for line in self.lines:
            last = tx.conn.execute(
                "INSERT INTO run_logs (run, timestamp, level, message) VALUES (?, ?, ?, ?) RETURNING id",
                (row[0], line.timestamp, line.level, line.message),
            ).fetchone()[0]
        if last is not None:
            tx.conn.execute("DELETE FROM run_logs WHERE run = ? AND id <= ?", (row[0], last - MAX_LOG_LINES_PER_RUN))


# ---- reads --------------------------------------------------------------------------------------------------


class TrainingReader:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def model(self, model_id: str) -> ModelRow | None:
        rows = await self._conn.execute_fetchall(f"SELECT {MODEL_COLUMNS} FROM models WHERE model_id = ?", (model_id,))
        return model_row(rows[0]) if rows else None

    async def models(self) -> list[ModelRow]:
        rows = await self._conn.execute_fetchall(f"SELECT {MODEL_COLUMNS} FROM models ORDER BY id")
        return [model_row(row) for row in rows]

    async def run_counts(self, model_ids: list[str] | None = None) -> dict[str, tuple[int, str | None]]:
        """model_id -> (runs, latest succeeded run id), of every model or of `model_ids`."""
        where, args = "model_id IS NOT NULL", list(model_ids or ())
        if model_ids is not None:
            where = f"model_id IN ({','.join('?' * len(model_ids))})"
        rows = await self._conn.execute_fetchall(
            f"""SELECT model_id, count(*), max(CASE WHEN status = 'succeeded' THEN id END) FROM runs
               WHERE {where} GROUP BY model_id""",
            args,
        )
        latest_refs = [row[2] for row in rows if row[2] is not None]
        names: dict[int, str] = {}
        if latest_refs:
            marks = ",".join("?" * len(latest_refs))
            found = await self._conn.execute_fetchall(f"SELECT id, run_id FROM runs WHERE id IN ({marks})", latest_refs)
            names = {ref: run_id for ref, run_id in found}
        return {row[0]: (row[1], names.get(row[2])) for row in rows}

    async def job(self, run_id: str) -> JobRow | None:
        rows = await self._conn.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM runs WHERE run_id = ? AND {SUPERVISED}", (run_id,)
        )
        return _job_row(rows[0]) if rows else None

    async def jobs(
        self,
        *,
        model_id: str | None = None,
        statuses: tuple[str, ...] | None = None,
        after_ref: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[JobRow]:
        where, args = [SUPERVISED], []
        if model_id is not None:
            where.append("model_id = ?")
            args.append(model_id)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if after_ref is not None:
            where.append("id < ?" if newest_first else "id > ?")
            args.append(after_ref)
        order = "id DESC" if newest_first else "id"
        page = f"LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        rows = await self._conn.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM runs WHERE {' AND '.join(where)} ORDER BY {order} {page}", args
        )
        return [_job_row(row) for row in rows]

    async def count_jobs(self, statuses: tuple[str, ...] | None = None) -> int:
        clause = f"AND status IN ({','.join('?' * len(statuses))})" if statuses else ""
        rows = await self._conn.execute_fetchall(
            f"SELECT count(*) FROM runs WHERE {SUPERVISED} {clause}", statuses or ()
        )
        return int(rows[0][0])

    async def next_queued(self, limit: int = 1) -> list[JobRow]:
        """The first `limit` queued runs in the order they start (priority, then age), skipping those of paused or
        cancelled experiments (they wait; others go first)."""
        rows = await self._conn.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM runs WHERE {DISPATCHABLE} ORDER BY {QUEUE_ORDER} LIMIT ?", (limit,)
        )
        return [_job_row(row) for row in rows]

    async def queue(self) -> tuple[list[JobRow], list[JobRow]]:
        """(running, queued in the order they start): what `GET /api/v1/jobs` shows."""
        running = await self._conn.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM runs WHERE {SUPERVISED} AND status = 'running' ORDER BY started_at, id"
        )
        queued = await self._conn.execute_fetchall(
            f"SELECT {JOB_COLUMNS} FROM runs WHERE {SUPERVISED} AND status = 'queued' ORDER BY {QUEUE_ORDER}"
        )
        return [_job_row(row) for row in running], [_job_row(row) for row in queued]

    async def queue_position(self, job: JobRow) -> int | None:
        """A queued run's place in the queue (1: it starts next, runs of paused experiments aside); None otherwise."""
        if job.status != RunState.QUEUED:
            return None
        rows = await self._conn.execute_fetchall(
            f"""SELECT count(*) FROM runs WHERE {DISPATCHABLE}
                AND (priority > ? OR (priority = ? AND (queued_at < ? OR (queued_at = ? AND id < ?))))""",
            (job.priority, job.priority, job.queued_at, job.queued_at, job.ref),
        )
        return int(rows[0][0]) + 1

    async def slot_demand(self) -> tuple[int, int]:
        """(running, queued and dispatchable) managed runs: what stands between a new run and a free slot.
        Runs held by a paused or cancelled experiment do not count."""
        rows = await self._conn.execute_fetchall(
            f"""SELECT (SELECT count(*) FROM runs WHERE {SUPERVISED} AND status = 'running'),
                       (SELECT count(*) FROM runs WHERE {DISPATCHABLE})"""
        )
        return int(rows[0][0]), int(rows[0][1])

    async def params(self, param_id: str) -> ParamsRow | None:
        rows = await self._conn.execute_fetchall(
            "SELECT param_id, run_id, model_id, path, size_bytes, created_at FROM params WHERE param_id = ?",
            (param_id,),
        )
        return ParamsRow(*rows[0]) if rows else None

    async def checkpoints(self, run_id: str | None = None, limit: int = 100) -> list[CheckpointRow]:
        clause, args = ("WHERE r.run_id = ?", [run_id]) if run_id is not None else ("", [])
        rows = await self._conn.execute_fetchall(
            f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints c JOIN runs r ON r.id = c.run {clause} "
            "ORDER BY c.id LIMIT ?",
            [*args, limit],
        )
        return [_checkpoint_row(row) for row in rows]

    async def checkpoint(self, checkpoint_id: str) -> CheckpointRow | None:
        rows = await self._conn.execute_fetchall(
            f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints c JOIN runs r ON r.id = c.run WHERE c.checkpoint_id = ?",
            (checkpoint_id,),
        )
        return _checkpoint_row(rows[0]) if rows else None

    async def epoch_metrics(
        self, ref: int, names: tuple[str, ...] | None = None
    ) -> list[tuple[str, int, float, float]]:
        """(name, epoch, value, timestamp) of the points logged with an epoch, by epoch then name. Series named
        `epoch` or `timestamp` are left out: an epoch record's own fields have those names."""
        clause, args = "AND s.name NOT IN ('epoch', 'timestamp')", [ref]
        if names:
            clause += f" AND s.name IN ({','.join('?' * len(names))})"
            args.extend(names)
        rows = await self._conn.execute_fetchall(
            f"""SELECT s.name, {scalarcodec.COLUMNS} FROM series s JOIN scalar_chunks c ON c.series = s.id
                WHERE s.run = ? AND c.epochs IS NOT NULL {clause} ORDER BY s.name, c.last_step""",
            args,
        )
        by_name: dict[str, list[Any]] = {}
        for row in rows:
            by_name.setdefault(row[0], []).append(row[1:])
        found: list[tuple[str, int, float, float]] = []
        for name, chunks in by_name.items():
            points = scalarcodec.decode(chunks)
            points = points.take(points.epochs_or_none() != scalarcodec.NO_EPOCH)
            found.extend(
                zip(
                    [name] * len(points),
                    points.epochs_or_none().tolist(),
                    points.values.tolist(),
                    points.timestamp_list(),
                    strict=True,
                )
            )
        return sorted(found, key=lambda point: (point[1], point[0]))  # stable: in step order within an epoch

    async def logs(self, ref: int, limit: int = 200) -> list[LogLine]:
        rows = await self._conn.execute_fetchall(
            "SELECT timestamp, level, message FROM run_logs WHERE run = ? ORDER BY id DESC LIMIT ?", (ref, limit)
        )
        return [LogLine(*row) for row in reversed(list(rows))]
