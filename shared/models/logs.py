"""A managed run's log lines (its worker's stdout and stderr), as `GET /api/v1/runs/{id}/logs` answers them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from shared.models.timestamps import Timestamp


class LogLevel(StrEnum):
    """In increasing severity: `level=warning` asks for warnings and worse."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def severity(self) -> int:
        return _ORDER.index(self)


_ORDER = list(LogLevel)


class RunLogLine(BaseModel):
    timestamp: Timestamp
    level: LogLevel
    message: str


class RunLogsMeta(BaseModel):
    run_id: str
    count: int = Field(ge=0)


class RunLogs(BaseModel):
    data: list[RunLogLine] = Field(description="Oldest first")
    meta: RunLogsMeta
