"""How external runs end in the store: a script's own word (`FinishRun`), or its silence (`MarkLost`).

Both decide inside the writer's transaction, so a finish racing the lost check, or data racing either, is settled
by whichever commits first. Data arriving for an ended external run takes it back to `running` (`Tx.ensure_run`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pivotd.errors import Conflict
from pivotd.store.ops import Tx
from pivotd.store.rows import RUN_COLUMNS, RunRow, latest_by_run, latest_query, run_row
from shared.models.runs import SUPERVISED_KINDS, RunState

# What a script says about its run; `lost` is only pivotd's guess, so the script's word replaces it.
_SAID = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True, slots=True)
class FinishRun:
    """End an external run as its script says; creates it if the script ended before sending anything.

    Returns whether the run changed: the same end sent again changes nothing. 409 for a managed run (its trainer
    owns its state) and for a run that already ended otherwise."""

    run_id: str
    status: RunState
    error: str | None

    def apply(self, tx: Tx) -> bool:
        row = tx.conn.execute("SELECT id, kind, status FROM runs WHERE run_id = ?", (self.run_id,)).fetchone()
        if row is None:
            ref = tx.ensure_run(self.run_id)
        else:
            ref, kind, status = row
            if kind in SUPERVISED_KINDS:
                raise Conflict(f"run {self.run_id!r} is {kind}: pivotd decides when it ends (its process's exit)")
            if status == self.status:
                return False
            if status in _SAID:
                raise Conflict(
                    f"run {self.run_id!r} already ended as {status}; new data for it would make it running again"
                )
        tx.conn.execute(
            "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
            (self.status, self.error, tx.now, ref),
        )
        tx.run_refs[self.run_id] = ref  # touched: its last update moves and `runs` hears of it
        return True


@dataclass(frozen=True, slots=True)
class MarkLost:
    """Mark `lost` every external run still `running` whose last data is older than `before`; returns them.

    Their `last_update` stays when the data stopped (so `finished_at` is that time too), which is why the runs are
    not registered as touched: the caller announces them."""

    before: float
    reason: str

    def apply(self, tx: Tx) -> list[RunRow]:
        refs = [
            ref
            for (ref,) in tx.conn.execute(
                """UPDATE runs SET status = ?, error = ?, finished_at = last_update
                   WHERE kind = 'external' AND status = ? AND last_update < ? RETURNING id""",
                (RunState.LOST, self.reason, RunState.RUNNING, self.before),
            )
        ]
        if not refs:
            return []
        marks = ",".join("?" * len(refs))
        rows = tx.conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks}) ORDER BY id", refs).fetchall()
        latest = latest_by_run(tx.conn.execute(*latest_query(refs)))
        return [run_row(row, latest.get(row[0])) for row in rows]
