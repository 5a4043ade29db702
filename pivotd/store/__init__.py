"""The SQLite store: one writer with group commit, one reader connection, migrations, retention.

This module is the store's public face for the routes (`pivotd.api`): the row types they show, the filters and
write operations they hand over, and the queries they run. The submodules are internals that only services
import; an import-linter contract in pyproject.toml holds the routes to this.

The names are loaded when first used (PEP 562): `pivotd backup`, `pivotd restore` and a start that is refused
need `pivotd.store.integrity` alone (sqlite3 and the schema version), not the store's pydantic models and numpy,
which cost them about 0.4 s of CPU each. The daemon itself uses them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pivotd.store.experiments import (
        EXPERIMENT_SORTS,
        Aggregate,
        AttachRuns,
        CreateExperiment,
        DeleteExperiment,
        ExperimentFilters,
        ExperimentRow,
        MemberRun,
        PutStatResult,
        StatResultRow,
        UpdateExperiment,
    )
    from pivotd.store.models import DeleteModel, PatchModelExtra, model_extra, model_page
    from pivotd.store.monitoring import ClearNotifications, MarkNotificationRead, WebhookRow
    from pivotd.store.ops import DeleteRun, PutEvent, PutScalars, PutSteps, RunFields, StepRecord
    from pivotd.store.reader import SORTABLE, EventRow, Reader, SeriesRows
    from pivotd.store.retention import Retention
    from pivotd.store.rows import RunRow
    from pivotd.store.scalarcodec import Points as SeriesPoints
    from pivotd.store.store import Store
    from pivotd.store.training import AddCheckpoint, CheckpointRow, DeleteCheckpoint, JobRow, ModelRow
    from pivotd.store.writer import BatchOutcome

_SOURCES = {
    "EXPERIMENT_SORTS": "experiments",
    "SORTABLE": "reader",
    "AddCheckpoint": "training",
    "Aggregate": "experiments",
    "AttachRuns": "experiments",
    "BatchOutcome": "writer",
    "CheckpointRow": "training",
    "ClearNotifications": "monitoring",
    "CreateExperiment": "experiments",
    "DeleteCheckpoint": "training",
    "DeleteExperiment": "experiments",
    "DeleteModel": "models",
    "DeleteRun": "ops",
    "EventRow": "reader",
    "ExperimentFilters": "experiments",
    "ExperimentRow": "experiments",
    "JobRow": "training",
    "MarkNotificationRead": "monitoring",
    "MemberRun": "experiments",
    "ModelRow": "training",
    "PatchModelExtra": "models",
    "PutEvent": "ops",
    "PutScalars": "ops",
    "PutStatResult": "experiments",
    "PutSteps": "ops",
    "Reader": "reader",
    "Retention": "retention",
    "RunFields": "ops",
    "RunRow": "rows",
    "SeriesPoints": "scalarcodec",
    "SeriesRows": "reader",
    "StatResultRow": "experiments",
    "StepRecord": "ops",
    "Store": "store",
    "UpdateExperiment": "experiments",
    "WebhookRow": "monitoring",
    "model_extra": "models",
    "model_page": "models",
}
"""Where each name of the public face lives: `pivotd.store.<module>`."""

__all__ = [
    "EXPERIMENT_SORTS",
    "SORTABLE",
    "AddCheckpoint",
    "Aggregate",
    "AttachRuns",
    "BatchOutcome",
    "CheckpointRow",
    "ClearNotifications",
    "CreateExperiment",
    "DeleteCheckpoint",
    "DeleteExperiment",
    "DeleteModel",
    "DeleteRun",
    "EventRow",
    "ExperimentFilters",
    "ExperimentRow",
    "JobRow",
    "MarkNotificationRead",
    "MemberRun",
    "ModelRow",
    "PatchModelExtra",
    "PutEvent",
    "PutScalars",
    "PutStatResult",
    "PutSteps",
    "Reader",
    "Retention",
    "RunFields",
    "RunRow",
    "SeriesPoints",
    "SeriesRows",
    "StatResultRow",
    "StepRecord",
    "Store",
    "UpdateExperiment",
    "WebhookRow",
    "model_extra",
    "model_page",
]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pivotd.store.{module}"), "Points" if name == "SeriesPoints" else name)
    globals()[name] = value  # later lookups find it without coming here
    return value
