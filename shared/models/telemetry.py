"""Telemetry as `/api/v1/telemetry/*` answers it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shared.models.envelopes import PageMeta

MetadataValue = str | int | float | bool | None
Number = int | float


class TelemetryEvent(BaseModel):
    id: str = Field(description="`evt_<hex>`")
    timestamp: str = Field(description="ISO 8601 UTC")
    event_name: list[str] = Field(description='The dotted name\'s parts: `llm.request` is `["llm", "request"]`')
    measurements: dict[str, Number]
    metadata: dict[str, MetadataValue]


ExportCell = MetadataValue | list[str] | dict[str, MetadataValue]
"""One value of an export row with `fields`: an id, a timestamp, a measurement or metadata value (null where the
event lacks it), the name's parts, or `measurements`/`metadata` whole."""
ExportRow = dict[str, ExportCell]
"""An event of a JSON export with `fields`: keyed by the field names."""


class IngestProblem(BaseModel):
    index: int = Field(ge=0, description="The event's place in the batch")
    field: str
    message: str


class TelemetryIngested(BaseModel):
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)
    errors: list[IngestProblem] | None = Field(default=None, description="The first 100 rejections; absent if none")


class TelemetryIngestResponse(BaseModel):
    data: TelemetryIngested


class TelemetryPage(BaseModel):
    data: list[TelemetryEvent]
    meta: PageMeta


class AggregateRow(BaseModel):
    """One cell: `timestamp` (the bucket's start) only per time bucket, `group` only with `group_by`."""

    timestamp: str | None = None
    value: Number | None = Field(description="null where no event had the measurement")
    count: int = Field(ge=0)
    group: MetadataValue = Field(default=None, description="The group's value: a dotted event name or a metadata value")


class AggregatedMeta(BaseModel):
    agg: str


class TelemetryAggregated(BaseModel):
    """`GET /api/v1/telemetry/events` with `agg`: rows over the whole filtered range."""

    data: list[AggregateRow]
    meta: AggregatedMeta


class TimeSeriesMeta(BaseModel):
    metric: str | None
    agg: str
    interval: Literal["1m", "5m", "1h", "1d"]
    group_by: str | None


class TelemetryTimeSeries(BaseModel):
    data: list[AggregateRow]
    meta: TimeSeriesMeta
