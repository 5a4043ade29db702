"""`Store`: the database opened, with its one writer and its reader connection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pivotd.store.experiments import ExperimentsReader
from pivotd.store.monitoring import MonitoringReader
from pivotd.store.reader import Reader
from pivotd.store.retention import Retention
from pivotd.store.schema import SCHEMA_VERSION
from pivotd.store.writer import Writer

log = logging.getLogger("pivotd.store")


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
