"""`/api/v1/models` fields in the store: the `extra` document beside a model's columns, and deletion."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from pivotd.errors import Conflict, NotFound
from pivotd.store.ops import Tx
from pivotd.store.paging import keyset
from pivotd.store.rows import contains
from pivotd.store.training import ACTIVE_STATES, MODEL_COLUMNS, ModelRow, model_row


@dataclass(frozen=True, slots=True)
class PatchModelExtra:
    """Merge `changes` into the model's extra fields (RFC 7396: a null removes a field); a `config` in
    `changes` replaces the stored one rather than merging into it."""

    model_id: str
    changes: dict[str, Any]

    def apply(self, tx: Tx) -> None:
        changes = dict(self.changes)
        config = changes.pop("config", None)
        if config is not None:
            tx.conn.execute(
                "UPDATE models SET extra = json_set(extra, '$.config', json(?)) WHERE model_id = ?",
                (json.dumps(config), self.model_id),
            )
        updated = tx.conn.execute(
            "UPDATE models SET extra = json_patch(extra, ?), updated_at = ? WHERE model_id = ?",
            (json.dumps(changes), tx.now, self.model_id),
        ).rowcount
        if not updated:
            raise NotFound(f"model {self.model_id!r} not found")


@dataclass(frozen=True, slots=True)
class DeleteModel:
    """Delete a model definition; 409 while one of its runs is queued or running. Its runs and params stay."""

    model_id: str

    def apply(self, tx: Tx) -> None:
        if tx.conn.execute("SELECT 1 FROM models WHERE model_id = ?", (self.model_id,)).fetchone() is None:
            raise NotFound(f"model {self.model_id!r} not found")
        marks = ",".join("?" * len(ACTIVE_STATES))
        active = tx.conn.execute(
            f"SELECT run_id FROM runs WHERE model_id = ? AND kind = 'managed' AND status IN ({marks}) LIMIT 1",
            (self.model_id, *ACTIVE_STATES),
        ).fetchone()
        if active is not None:
            raise Conflict(f"model {self.model_id!r} has an active run ({active[0]}); cancel it first")
        tx.conn.execute("DELETE FROM models WHERE model_id = ?", (self.model_id,))


@dataclass(frozen=True, slots=True)
class ModelEntry:
    ref: int
    """The integer row id: breaks ties between models created in one group commit (same created_at)."""
    model: ModelRow
    extra: dict[str, Any]


async def model_page(
    conn: aiosqlite.Connection, *, after: tuple[float, int] | None, offset: int, limit: int, name: str | None = None
) -> tuple[list[ModelEntry], int, bool]:
    """Models (whose name contains `name`, if given) in (created_at, row id) order after `after` (a cursor) or
    from `offset`: the page, the total matching and whether more follow. The cursor filter and ORDER BY use the
    same key, so a walk sees every model once."""
    matching, match_args = ("1", []) if name is None else contains("name", name)
    condition, args = keyset("created_at", "id", False, after)
    rows = await conn.execute_fetchall(
        f"SELECT id, extra, {MODEL_COLUMNS} FROM models WHERE {matching} AND {condition} "
        "ORDER BY created_at, id LIMIT ? OFFSET ?",
        [*match_args, *args, limit + 1, offset],  # one extra row tells whether more follow
    )
    total = (await conn.execute_fetchall(f"SELECT count(*) FROM models WHERE {matching}", match_args))[0][0]
    entries = [ModelEntry(row[0], model_row(row[2:]), json.loads(row[1])) for row in rows[:limit]]
    return entries, total, len(rows) > limit


async def model_extra(conn: aiosqlite.Connection, model_id: str) -> dict[str, Any]:
    rows = await conn.execute_fetchall("SELECT extra FROM models WHERE model_id = ?", (model_id,))
    return json.loads(rows[0][0]) if rows else {}
