"""Experiments and statistical results in the store: write operations and the reader's queries.

An experiment's status is not stored: it is derived from its runs in SQL (`_EXPERIMENTS`), so it can never
disagree with them, and `filter[status]` and `sort=status` work on it like on any column.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import aiosqlite

from pivotd.errors import Conflict, NotFound
from pivotd.store import scalarcodec
from pivotd.store.ops import Tx
from pivotd.store.paging import PageRequest, keyset
from pivotd.store.rows import contains, latest_by_run, latest_query
from pivotd.store.training import CreateJob, QueueJob
from shared.models.experiments import (
    RUN_STATES,
    Aggregate,
    ExperimentRunStatus,
    ExperimentStatus,
    RunKind,
    experiment_run_status,
)
from shared.models.runs import FINAL_STATES, LIVE_STATES, RunState


def _sql_words(words: Iterable[str]) -> str:
    """Words as an SQL list of string literals: `'created', 'queued'` (they are the enums' own values)."""
    return ", ".join(f"'{word}'" for word in words)


_FINAL = _sql_words(sorted(FINAL_STATES))
_WAITING = _sql_words(RUN_STATES[ExperimentRunStatus.PENDING])
_FAILED = _sql_words(RUN_STATES[ExperimentRunStatus.FAILED])
_LIVE = _sql_words(sorted(LIVE_STATES))
EXPERIMENT_SORTS = ("name", "created_at", "updated_at", "status")

# Cancelled (by `cancel`): cancelled, even while its runs wind down. No runs: pending. Paused with runs still
# waiting or running: paused. Any run running, or some waiting while others finished: running. All waiting:
# pending. All finished: failed if any failed, cancelled if all were cancelled, else completed.
_S = ExperimentStatus
_EXPERIMENTS = f"""
SELECT * FROM (
  SELECT e.id, e.name, e.description, e.config, e.tags, e.created_at, e.updated_at,
    CASE WHEN e.cancelled_at IS NOT NULL THEN '{_S.CANCELLED}'
         WHEN c.total IS NULL THEN '{_S.PENDING}'
         WHEN e.paused_at IS NOT NULL AND c.running + c.waiting > 0 THEN '{_S.PAUSED}'
         WHEN c.running > 0 THEN '{_S.RUNNING}'
         WHEN c.waiting = c.total THEN '{_S.PENDING}'
         WHEN c.waiting > 0 THEN '{_S.RUNNING}'
         WHEN c.failed > 0 THEN '{_S.FAILED}'
         WHEN c.cancelled = c.total THEN '{_S.CANCELLED}'
         ELSE '{_S.COMPLETED}' END AS status,
    coalesce(c.total, 0) AS total_runs, coalesce(e.launched_at, c.started_at) AS started_at,
    coalesce(e.cancelled_at, c.finished_at) AS finished_at, e.launched_at, e.paused_at, e.cancelled_at
  FROM experiments e LEFT JOIN (
    SELECT experiment_id, count(*) AS total, sum(status = '{RunState.RUNNING}') AS running,
           sum(status IN ({_WAITING})) AS waiting, sum(status IN ({_FAILED})) AS failed,
           sum(status = '{RunState.CANCELLED}') AS cancelled, min(coalesce(started_at, created_at)) AS started_at,
           max(coalesce(finished_at, last_update)) AS finished_at
    FROM runs WHERE experiment_id IS NOT NULL GROUP BY experiment_id
  ) c ON c.experiment_id = e.id
)"""


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    id: str
    name: str
    description: str | None
    config: dict[str, Any]
    tags: list[str]
    created_at: float
    updated_at: float
    status: ExperimentStatus
    total_runs: int
    started_at: float | None
    finished_at: float | None
    launched_at: float | None
    """When `start` enqueued its sweep; None if never started."""
    paused_at: float | None
    cancelled_at: float | None
    """When `cancel` ran; None if never cancelled."""


def _experiment(row: Any) -> ExperimentRow:
    return ExperimentRow(
        row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]), row[5], row[6], ExperimentStatus(row[7]),
        row[8], row[9], row[10], row[11], row[12], row[13],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class MemberRun:
    ref: int
    run_id: str
    kind: RunKind
    state: RunState
    group: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    epoch: int | None
    epochs_total: int | None
    config: dict[str, Any]
    metadata: dict[str, Any]
    latest: dict[str, float]

    @property
    def status(self) -> ExperimentRunStatus:
        """The experiments routes' word for the run's state."""
        return experiment_run_status(self.state)

    @property
    def progress(self) -> float | None:
        if self.state == RunState.SUCCEEDED:
            return 1.0
        if self.epoch is not None and self.epochs_total:
            return min(1.0, self.epoch / self.epochs_total)
        return None

    @property
    def hyperparameters(self) -> dict[str, Any]:
        hyperparams = self.config.get("hyperparams")
        return hyperparams if isinstance(hyperparams, dict) else {}


_MEMBER_COLUMNS = (
    "id, run_id, kind, status, group_name, created_at, started_at, finished_at, epoch, epochs_total, config, metadata"
)


def _member(row: Any, latest: dict[str, float]) -> MemberRun:
    return MemberRun(
        row[0], row[1], row[2], RunState(row[3]), row[4], row[5], row[6], row[7], row[8], row[9],
        json.loads(row[10]) if row[10] else {}, json.loads(row[11]), latest,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RunProgress:
    total: int
    finished: int
    epochs_total: int | None
    """Epochs over the runs that declare them (managed runs); None when none do."""
    epochs_done: int | None
    run_spans: tuple[tuple[float, float | None], ...] = ()
    """(started_at, finished_at or None while running) of each run that has started."""

    def active_seconds(self, now: float) -> float:
        """Wall time during which at least one run trained: the union of the runs' spans, so time paused or
        waiting in the queue behind other work does not count."""
        total, reached = 0.0, float("-inf")
        for start, end in sorted((start, now if end is None else end) for start, end in self.run_spans):
            if end > reached:
                total += end - max(start, reached)
                reached = end
        return total

    @property
    def fraction(self) -> float:
        """Runs finished (completed, failed or cancelled) over all runs; 0 with no runs."""
        return self.finished / self.total if self.total else 0.0

    @property
    def epoch_fraction(self) -> float | None:
        if not self.epochs_total:
            return None
        return min(1.0, (self.epochs_done or 0) / self.epochs_total)


@dataclass(frozen=True, slots=True)
class StatResultRow:
    id: str
    experiment_id: str
    created_at: float
    data: dict[str, Any]


# ---- writes -------------------------------------------------------------------------------------------------


def _require_experiment(tx: Tx, experiment_id: str) -> None:
    if tx.conn.execute("SELECT 1 FROM experiments WHERE id = ?", (experiment_id,)).fetchone() is None:
        raise NotFound(f"experiment {experiment_id!r} not found")


@dataclass(frozen=True, slots=True)
class CreateExperiment:
    experiment_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    tags: list[str]

    def apply(self, tx: Tx) -> None:
        tx.conn.execute(
            "INSERT INTO experiments (id, name, description, config, tags, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self.experiment_id, self.name, self.description, json.dumps(self.config), json.dumps(self.tags),
             tx.now, tx.now),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class UpdateExperiment:
    """Set the given fields (`name`, `description`, `config`, `tags`); `config` is replaced as given."""

    experiment_id: str
    changes: dict[str, Any]

    def apply(self, tx: Tx) -> None:
        _require_experiment(tx, self.experiment_id)
        encoded = {k: json.dumps(v) if k in ("config", "tags") else v for k, v in self.changes.items()}
        assignments = "".join(f"{column} = ?, " for column in encoded)
        tx.conn.execute(
            f"UPDATE experiments SET {assignments}updated_at = ? WHERE id = ?",
            [*encoded.values(), tx.now, self.experiment_id],
        )


@dataclass(frozen=True, slots=True)
class DeleteExperiment:
    """Delete an experiment and its statistical results; its runs stay, detached (they are data, not config)."""

    experiment_id: str

    def apply(self, tx: Tx) -> None:
        _require_experiment(tx, self.experiment_id)
        tx.conn.execute(
            "UPDATE runs SET experiment_id = NULL, group_name = NULL WHERE experiment_id = ?", (self.experiment_id,)
        )
        tx.conn.execute("DELETE FROM experiments WHERE id = ?", (self.experiment_id,))


@dataclass(frozen=True, slots=True)
class AttachRuns:
    """Move existing runs into an experiment (a run belongs to at most one), setting their group if given."""

    experiment_id: str
    run_ids: list[str]
    group: str | None

    def apply(self, tx: Tx) -> None:
        _require_experiment(tx, self.experiment_id)
        marks = ",".join("?" * len(self.run_ids))
        found = {row[0] for row in tx.conn.execute(f"SELECT run_id FROM runs WHERE run_id IN ({marks})", self.run_ids)}
        missing = [run_id for run_id in self.run_ids if run_id not in found]
        if missing:
            raise NotFound(f"run(s) not found: {', '.join(missing)}", details={"run_ids": missing})
        tx.conn.execute(
            f"UPDATE runs SET experiment_id = ?, group_name = coalesce(?, group_name) WHERE run_id IN ({marks})",
            [self.experiment_id, self.group, *self.run_ids],
        )


@dataclass(frozen=True, slots=True)
class SweepRun:
    run_id: str
    config: dict[str, Any]
    epochs_total: int
    group: str
    name: str


def _status_in_tx(tx: Tx, experiment_id: str) -> ExperimentRow:
    row = tx.conn.execute(f"{_EXPERIMENTS} WHERE id = ?", (experiment_id,)).fetchone()
    if row is None:
        raise NotFound(f"experiment {experiment_id!r} not found")
    return _experiment(row)


@dataclass(frozen=True, slots=True)
class LaunchExperiment:
    """`start`: queue every run of the sweep, joined to the experiment, in one transaction. Only once. A command
    sweep's runs are jobs (no model)."""

    experiment_id: str
    model_id: str | None
    runs: list[SweepRun] | list[QueueJob]

    def apply(self, tx: Tx) -> None:
        experiment = _status_in_tx(tx, self.experiment_id)
        if experiment.launched_at is not None:
            raise Conflict(f"experiment {self.experiment_id!r} was already started; clone it to run it again")
        if experiment.cancelled_at is not None:  # cancelled while this start was checking the sweep
            raise Conflict(f"experiment {self.experiment_id!r} was cancelled; clone it to run it")
        for run in self.runs:
            if isinstance(run, QueueJob):
                run.apply(tx)
            else:
                CreateJob(run.run_id, RunState.QUEUED, run.config, run.epochs_total, self.model_id, run.name).apply(tx)
        tx.conn.executemany(
            "UPDATE runs SET experiment_id = ?, group_name = ? WHERE run_id = ?",
            [(self.experiment_id, run.group, run.run_id) for run in self.runs],
        )
        tx.conn.execute(
            "UPDATE experiments SET launched_at = ?, updated_at = ? WHERE id = ?", (tx.now, tx.now, self.experiment_id)
        )


ControlAction = Literal["pause", "resume", "cancel"]
_PAST: dict[ControlAction, str] = {"pause": "paused", "resume": "resumed"}


@dataclass(frozen=True, slots=True)
class ControlExperiment:
    """pause / resume / cancel, checked against the derived status inside the transaction.

    Returns the managed runs to cancel (queued or running) for `cancel`, else an empty list. 409 for a
    transition the current status does not allow, with a message saying why.
    """

    experiment_id: str
    action: ControlAction

    def apply(self, tx: Tx) -> list[str]:
        experiment = _status_in_tx(tx, self.experiment_id)
        status, name = experiment.status, f"experiment {self.experiment_id!r}"
        if experiment.launched_at is None and self.action != "cancel":  # a never-started one can be called off
            raise Conflict(f"{name} has not been started; only a started experiment can be {_PAST[self.action]}")
        if self.action == "pause":
            if status not in (ExperimentStatus.PENDING, ExperimentStatus.RUNNING):
                raise Conflict(f"{name} is {status}; only a pending or running experiment can be paused")
            tx.conn.execute("UPDATE experiments SET paused_at = ? WHERE id = ?", (tx.now, self.experiment_id))
            return []
        if self.action == "resume":
            if status != ExperimentStatus.PAUSED:
                raise Conflict(f"{name} is {status}; only a paused experiment can be resumed")
            tx.conn.execute("UPDATE experiments SET paused_at = NULL WHERE id = ?", (self.experiment_id,))
            return []
        if status not in (ExperimentStatus.PENDING, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
            raise Conflict(f"{name} is {status}; only a pending, running or paused experiment can be cancelled")
        tx.conn.execute(
            "UPDATE experiments SET cancelled_at = ?, paused_at = NULL WHERE id = ?", (tx.now, self.experiment_id)
        )
        rows = tx.conn.execute(
            f"""SELECT run_id FROM runs WHERE experiment_id = ? AND kind IN ('managed', 'job') AND status IN ({_LIVE})
                ORDER BY id""",
            (self.experiment_id,),
        ).fetchall()
        return [row[0] for row in rows]


@dataclass(frozen=True, slots=True)
class PutStatResult:
    result_id: str
    experiment_id: str
    test_type: str
    created_at: float
    data: dict[str, Any]

    def apply(self, tx: Tx) -> None:
        _require_experiment(tx, self.experiment_id)  # it may have been deleted while the test ran
        tx.conn.execute(
            "INSERT INTO statistical_results (id, experiment_id, test_type, created_at, data) VALUES (?, ?, ?, ?, ?)",
            (self.result_id, self.experiment_id, self.test_type, self.created_at, json.dumps(self.data)),
        )


# ---- reads --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExperimentFilters:
    status: ExperimentStatus | None = None
    name: str | None = None
    created_after: float | None = None
    created_before: float | None = None


class ExperimentsReader:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def _count(self, query: str, args: list[Any]) -> int:
        rows = await self._conn.execute_fetchall(f"SELECT count(*) FROM ({query})", args)
        count: int = next(iter(rows))[0]
        return count

    async def _page(
        self, select: str, clause: str, args: list[Any], column: str, descending: bool, page: PageRequest
    ) -> tuple[list[Any], int, bool]:
        """One page of `select WHERE clause` in (`column`, id) order: keyset after a cursor, else by page
        number. Returns the page's rows, the total matching, and whether more rows follow."""
        total = await self._count(f"{select} WHERE {clause}", args)
        after, after_args = keyset(column, "id", descending, page.cursor)
        direction = "DESC" if descending else "ASC"
        offset = 0 if page.cursor is not None else (page.page - 1) * page.per_page
        rows = list(
            await self._conn.execute_fetchall(
                f"{select} WHERE {clause} AND {after} ORDER BY {column} {direction}, id {direction} LIMIT ? OFFSET ?",
                [*args, *after_args, page.per_page + 1, offset],  # one extra row tells whether more follow
            )
        )
        return rows[: page.per_page], total, len(rows) > page.per_page

    async def get(self, experiment_id: str) -> ExperimentRow:
        rows = await self._conn.execute_fetchall(f"{_EXPERIMENTS} WHERE id = ?", (experiment_id,))
        if not rows:
            raise NotFound(f"experiment {experiment_id!r} not found")
        return _experiment(next(iter(rows)))

    async def list(
        self, filters: ExperimentFilters, sort: str, page: PageRequest
    ) -> tuple[list[ExperimentRow], int, bool]:
        """One page in `sort` order, the total matching the filters, and whether more rows follow."""
        where, args = ["1"], []
        if filters.status is not None:
            where.append("status = ?")
            args.append(filters.status)
        if filters.name is not None:
            condition, name_args = contains("name", filters.name)
            where.append(condition)
            args.extend(name_args)
        # Compared at the millisecond precision timestamps are shown in: passing back an experiment's own
        # created_at excludes it.
        if filters.created_after is not None:
            where.append("CAST(created_at * 1000 AS INTEGER) > ?")
            args.append(round(filters.created_after * 1000))
        if filters.created_before is not None:
            where.append("CAST(created_at * 1000 AS INTEGER) < ?")
            args.append(round(filters.created_before * 1000))
        column, descending = sort.removeprefix("-"), sort.startswith("-")
        if column not in EXPERIMENT_SORTS:  # it becomes SQL below
            raise ValueError(f"cannot sort experiments by {sort!r}")
        rows, total, more = await self._page(_EXPERIMENTS, " AND ".join(where), args, column, descending, page)
        return [_experiment(row) for row in rows], total, more

    async def runs(
        self,
        experiment_id: str,
        page: PageRequest,
        status: ExperimentRunStatus | None = None,
        group: str | None = None,
    ) -> tuple[list[MemberRun], int, bool]:
        """The experiment's runs, oldest first."""
        where, args = ["experiment_id = ?"], [experiment_id]
        if status is not None:
            states = RUN_STATES[status]
            where.append(f"status IN ({','.join('?' * len(states))})")
            args.extend(states)
        if group is not None:
            where.append("group_name = ?")
            args.append(group)
        select = f"SELECT {_MEMBER_COLUMNS} FROM runs"
        rows, total, more = await self._page(select, " AND ".join(where), args, "created_at", False, page)
        latest = latest_by_run(await self._conn.execute_fetchall(*latest_query([row[0] for row in rows])))
        return [_member(row, latest.get(row[0], {})) for row in rows], total, more

    async def group_runs(self, experiment_id: str, group: str) -> list[MemberRun]:
        rows = await self._conn.execute_fetchall(
            f"SELECT {_MEMBER_COLUMNS} FROM runs WHERE experiment_id = ? AND group_name = ? ORDER BY created_at, id",
            (experiment_id, group),
        )
        return [_member(row, {}) for row in rows]

    async def runs_by_id(self, run_ids: list[str]) -> dict[str, MemberRun]:
        marks = ",".join("?" * len(run_ids))
        rows = list(
            await self._conn.execute_fetchall(f"SELECT {_MEMBER_COLUMNS} FROM runs WHERE run_id IN ({marks})", run_ids)
        )
        latest = latest_by_run(await self._conn.execute_fetchall(*latest_query([row[0] for row in rows])))
        return {row[1]: _member(row, latest.get(row[0], {})) for row in rows}

    async def metric_values(self, refs: list[int], metric: str, aggregate: Aggregate) -> dict[int, float]:
        """One value of scalar `metric` per run that has it: its last point, best point or mean."""
        marks = ",".join("?" * len(refs))
        if aggregate == "last":
            query = f"SELECT run, last_value FROM series WHERE name = ? AND last_value IS NOT NULL AND run IN ({marks})"
            rows = await self._conn.execute_fetchall(query, [metric, *refs])
            return {row[0]: row[1] for row in rows if row[1] is not None}
        rows = await self._conn.execute_fetchall(
            f"SELECT s.run, {scalarcodec.COLUMNS} FROM series s JOIN scalar_chunks c ON c.series = s.id "
            f"WHERE s.name = ? AND s.run IN ({marks}) ORDER BY s.run, c.last_step",
            [metric, *refs],
        )
        by_run: dict[int, list[Any]] = {}
        for row in rows:
            by_run.setdefault(row[0], []).append(row[1:])
        found: dict[int, float] = {}
        for ref, chunks in by_run.items():
            values = scalarcodec.decode(chunks).values.tolist()
            if aggregate == "mean":  # summed in step order, as SQL's avg() over the rows did
                found[ref] = sum(values) / len(values)
            else:  # best: the minimum for a loss (lower is better), the maximum for anything else
                found[ref] = min(values) if "loss" in metric.lower() else max(values)
        return found

    async def best_run(self, experiment_id: str, metric: str) -> tuple[str, str | None, float] | None:
        """(run id, group, value) of the run whose last `metric` is best: lowest for a loss, else highest.
        Only runs whose values are results count, as in exports (`report.counts`): succeeded runs and external runs
        still running (their script has not said otherwise); a failed, cancelled or lost run's partial value is not."""
        direction = "ASC" if "loss" in metric.lower() else "DESC"
        rows = await self._conn.execute_fetchall(
            "SELECT r.run_id, r.group_name, s.last_value FROM series s JOIN runs r ON r.id = s.run "
            "WHERE r.experiment_id = ? AND s.name = ? AND s.last_value IS NOT NULL "
            f"AND (r.status = '{RunState.SUCCEEDED}' OR (r.kind = 'external' AND r.status = '{RunState.RUNNING}')) "
            f"ORDER BY s.last_value {direction}, r.id LIMIT 1",
            (experiment_id, metric),
        )
        return next(((row[0], row[1], row[2]) for row in rows), None)

    async def stranded_runs(self, experiment_id: str | None = None) -> list[str]:
        """Managed runs still waiting in the queue of a cancelled experiment (of one, or of any): a daemon that
        died between the cancel and its run cancellations, or runs attached after the cancel, leave them."""
        rows = await self._conn.execute_fetchall(
            f"""SELECT r.run_id FROM runs r JOIN experiments e ON e.id = r.experiment_id
               WHERE e.cancelled_at IS NOT NULL AND r.kind IN ('managed', 'job') AND r.status IN ({_WAITING})
                 AND (? IS NULL OR e.id = ?) ORDER BY r.id""",
            (experiment_id, experiment_id),
        )
        return [row[0] for row in rows]

    async def state_counts(self, experiment_id: str) -> dict[RunState, int]:
        """Runs of the experiment by state."""
        rows = await self._conn.execute_fetchall(
            "SELECT status, count(*) FROM runs WHERE experiment_id = ? GROUP BY status ORDER BY status",
            (experiment_id,),
        )
        return {RunState(state): count for state, count in rows}

    async def progress(self, experiment_id: str) -> RunProgress:
        rows = await self._conn.execute_fetchall(
            f"""SELECT count(*), coalesce(sum(status IN ({_FINAL})), 0),
                      sum(epochs_total),
                      sum(CASE WHEN status IN ({_FINAL}) THEN epochs_total
                               ELSE min(coalesce(epoch, 0), epochs_total) END)
               FROM runs WHERE experiment_id = ?""",
            (experiment_id,),
        )
        total, finished, epochs_total, epochs_done = next(iter(rows))
        spans = await self._conn.execute_fetchall(
            "SELECT started_at, finished_at FROM runs WHERE experiment_id = ? AND started_at IS NOT NULL",
            (experiment_id,),
        )
        return RunProgress(total, finished, epochs_total, epochs_done, tuple((row[0], row[1]) for row in spans))

    async def membership(self, run_id: str) -> tuple[str, str | None] | None:
        """(experiment id, group) of a run that belongs to an experiment."""
        rows = await self._conn.execute_fetchall(
            "SELECT experiment_id, group_name FROM runs WHERE run_id = ? AND experiment_id IS NOT NULL", (run_id,)
        )
        return next(((row[0], row[1]) for row in rows), None)

    async def all_runs(self, experiment_id: str) -> list[MemberRun]:
        """Every run of the experiment with its latest scalar values, oldest first (for exports)."""
        rows = list(
            await self._conn.execute_fetchall(
                f"SELECT {_MEMBER_COLUMNS} FROM runs WHERE experiment_id = ? ORDER BY created_at, id", (experiment_id,)
            )
        )
        latest = latest_by_run(await self._conn.execute_fetchall(*latest_query([row[0] for row in rows])))
        return [_member(row, latest.get(row[0], {})) for row in rows]

    async def results(
        self, page: PageRequest, experiment_id: str | None = None, test_type: str | None = None
    ) -> tuple[list[StatResultRow], int, bool]:
        """Stored statistical results, newest first."""
        where, args = ["1"], []
        if experiment_id is not None:
            where.append("experiment_id = ?")
            args.append(experiment_id)
        if test_type is not None:
            where.append("test_type = ?")
            args.append(test_type)
        select = "SELECT id, experiment_id, created_at, data FROM statistical_results"
        rows, total, more = await self._page(select, " AND ".join(where), args, "created_at", True, page)
        return [StatResultRow(row[0], row[1], row[2], json.loads(row[3])) for row in rows], total, more

    async def result(self, result_id: str) -> StatResultRow:
        rows = await self._conn.execute_fetchall(
            "SELECT id, experiment_id, created_at, data FROM statistical_results WHERE id = ?", (result_id,)
        )
        if not rows:
            raise NotFound(f"statistical result {result_id!r} not found")
        row = next(iter(rows))
        return StatResultRow(row[0], row[1], row[2], json.loads(row[3]))

    async def summary(self, since: float) -> tuple[int, int]:
        """How many experiments are running, and how many completed at or after `since` (Unix seconds)."""
        rows = await self._conn.execute_fetchall(
            f"SELECT coalesce(sum(status = '{_S.RUNNING}'), 0), "
            f"coalesce(sum(status = '{_S.COMPLETED}' AND finished_at >= ?), 0) FROM ({_EXPERIMENTS})",
            (since,),
        )
        active, completed = next(iter(rows))
        return int(active), int(completed)
