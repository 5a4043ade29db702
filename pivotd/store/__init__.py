"""The SQLite store: one writer with group commit, one reader connection, migrations, retention."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pivotd.store.experiments import ExperimentsReader
from pivotd.store.monitoring import MonitoringReader
from pivotd.store.ops import DeleteRun, PutEvent, PutScalars, PutSteps, RunFields, StepRecord
from pivotd.store.reader import EventRow, Reader, SeriesRows
from pivotd.store.retention import Retention
from pivotd.store.rows import RunRow
from pivotd.store.schema import SCHEMA_VERSION
from pivotd.store.writer import BatchOutcome, Writer

log = logging.getLogger(__name__)

__all__ = [
    "BatchOutcome",
    "DeleteRun",
    "EventRow",
    "PutEvent",
    "PutScalars",
    "PutSteps",
    "Reader",
    "Retention",
    "RunFields",
    "RunRow",
    "SeriesRows",
    "StepRecord",
    "Store",
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
