"""The SQLite store: one writer with group commit, one reader connection, migrations, retention.

This module is the store's public face for the routes (`pivotd.api`): the row types they show, the filters and
write operations they hand over, and the queries they run. The submodules are internals that only services
import; an import-linter contract in pyproject.toml holds the routes to this.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pivotd.store.experiments import (
    EXPERIMENT_SORTS,
    Aggregate,
    AttachRuns,
    CreateExperiment,
    DeleteExperiment,
    ExperimentFilters,
    ExperimentRow,
    ExperimentsReader,
    MemberRun,
    PutStatResult,
    StatResultRow,
    UpdateExperiment,
)
from pivotd.store.models import DeleteModel, PatchModelExtra, model_extra, model_page
from pivotd.store.monitoring import ClearNotifications, MarkNotificationRead, MonitoringReader, WebhookRow
from pivotd.store.ops import DeleteRun, PutEvent, PutScalars, PutSteps, RunFields, StepRecord
from pivotd.store.reader import SORTABLE, EventRow, Reader, SeriesRows
from pivotd.store.retention import Retention
from pivotd.store.rows import RunRow
from pivotd.store.scalarcodec import Points as SeriesPoints
from pivotd.store.schema import SCHEMA_VERSION
from pivotd.store.training import AddCheckpoint, CheckpointRow, DeleteCheckpoint, JobRow, ModelRow
from pivotd.store.writer import BatchOutcome, Writer

log = logging.getLogger(__name__)

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


class Store:
    def __init__(self, writer: Writer, reader: Reader, path: Path) -> None:
        self.writer = writer
        self.reader = reader
        self.monitoring = MonitoringReader(reader.connection)
        self.experiments = ExperimentsReader(reader.connection)
        self.path = path

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path, retention: Retention) -> AsyncIterator[Store]:
        writer = Writer(path, retention)
        found = await writer.open()
        if found == 0:
            log.info("created database %s (schema %d)", path, SCHEMA_VERSION)
        elif found < SCHEMA_VERSION:
            log.info("database %s upgraded from schema %d to %d", path, found, SCHEMA_VERSION)
        try:
            reader = await Reader.open(path)
            try:
                yield cls(writer, reader, path)
            finally:
                await reader.close()
        finally:
            await writer.close()
