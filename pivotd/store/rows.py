"""A run as stored: one column list and one parser, used by the reader and the writer alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

RUN_COLUMNS = (
    "id, run_id, kind, status, created_at, last_update, step_count, latest_step, experiment_id, group_name, tags, "
    "metadata"
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


def run_row(row: Any) -> RunRow:
    return RunRow(
        ref=row[0], run_id=row[1], kind=row[2], status=row[3], created_at=row[4], last_update=row[5],
        step_count=row[6], latest_step=row[7], experiment_id=row[8], group=row[9],
        tags=json.loads(row[10]), metadata=json.loads(row[11]),
    )  # fmt: skip
