"""A run as stored: one column list and one parser, used by the reader and the writer alike."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

RUN_COLUMNS = (
    "id, run_id, kind, status, created_at, last_update, step_count, latest_step, experiment_id, group_name, tags, "
    "metadata, error"
)


@dataclass(frozen=True, slots=True)
class RunRow:
    ref: int
    run_id: str
    kind: str
    status: str
    created_at: float
    last_update: float
    step_count: int
    latest_step: int | None
    experiment_id: str | None
    group: str | None
    tags: list[str]
    metadata: dict[str, Any]
    error: str | None = None
    """Why the run failed, was cancelled or was lost."""
    latest: dict[str, float] = field(default_factory=dict)
    """Last value of each scalar series, by name."""


def run_row(row: Any, latest: dict[str, float] | None = None) -> RunRow:
    return RunRow(
        ref=row[0], run_id=row[1], kind=row[2], status=row[3], created_at=row[4], last_update=row[5],
        step_count=row[6], latest_step=row[7], experiment_id=row[8], group=row[9],
        tags=json.loads(row[10]), metadata=json.loads(row[11]), error=row[12], latest=latest or {},
    )  # fmt: skip


def latest_query(refs: list[int] | None) -> tuple[str, list[int]]:
    """Last value of every series of `refs` (None: of every run)."""
    where = f"AND run IN ({','.join('?' * len(refs))})" if refs is not None else ""
    return f"SELECT run, name, last_value FROM series WHERE last_value IS NOT NULL {where}", refs or []


def latest_by_run(rows: Iterable[Any]) -> dict[int, dict[str, float]]:
    found: dict[int, dict[str, float]] = defaultdict(dict)
    for run, name, value in rows:
        found[run][name] = value
    return found


def contains(column: str, text: str) -> tuple[str, list[str]]:
    """SQL condition: `column` contains `text`, case-insensitively (ASCII); `%` and `_` in `text` are literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{column} LIKE ? ESCAPE '\\'", [f"%{escaped}%"]
