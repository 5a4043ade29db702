"""Telemetry: batch ingest, queries with filters and paging, aggregates, export."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pivotd.api.body import openapi_body, parse_lenient, read_json_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.query import Cursor, Instant, PageNumber, PerPage
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, json_response, model_response
from pivotd.errors import invalid_field
from pivotd.experiments.paging import DEFAULT_PER_PAGE, encode_cursor, meta, page_request
from pivotd.telemetry.columns import text_form
from pivotd.telemetry.query import AGGS, INTERVALS, AggRow, Filters
from pivotd.telemetry.service import iso_z, wire
from pivotd.telemetry.validate import (
    MAX_KEY_CHARS,
    MAX_PART_CHARS,
    batch_events,
    check_batch_fast,
    check_events,
    instant,
    name_filter,
)
from shared.models.envelopes import PageMeta
from shared.models.telemetry import (
    AggregatedMeta,
    AggregateRow,
    ExportRow,
    TelemetryAggregated,
    TelemetryEvent,
    TelemetryIngestResponse,
    TelemetryPage,
    TelemetryTimeSeries,
    TimeSeriesMeta,
)

router = APIRouter(prefix="/api/v1/telemetry", tags=["telemetry"])
INGEST_EVENT = ("pivot", "ingest", "telemetry")
EVENT_SORTS = ("timestamp", "-timestamp")
_KNOWN_FILTERS = {"event_name", "experiment_id", "model_id", "after", "before"}
Text = Annotated[str | None, Query(max_length=256)]
Agg = Annotated[Annotated[str, Field(json_schema_extra={"enum": list(AGGS)})] | None, Query()]
"""`agg`: one of the aggregations; checked by the route, whose 422 lists them."""
Measure = Annotated[
    Annotated[str, Field(json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_CHARS})] | None, Query()
]
"""A measurement's name (`metric`, `agg_field`); checked by the route, whose 422 says the bounds."""
FieldName = Annotated[str, Field(min_length=1, max_length=140)]


NamePart = Annotated[str, Field(min_length=1, max_length=MAX_PART_CHARS, pattern=r"\S")]
"""One part of an event name, as ingest checks it: not only whitespace."""


class IngestEvent(BaseModel):
    """Documentation of one event; ingest validates events itself (see `pivotd/telemetry/validate.py`)."""

    model_config = ConfigDict(extra="forbid")

    event_name: list[NamePart] | str
    measurements: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    timestamp: str | None = None


class IngestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[IngestEvent], Field(min_length=1)]


def _storable(value: Any) -> Any:
    """Metadata filter values as ingest takes them: a 30-digit integer would fail to encode (and pydantic would
    otherwise turn it into a float that matches nothing), and NaN/infinity are not metadata values."""
    if type(value) is int and not -(2**63) <= value < 2**63:
        raise ValueError("is out of range: integers are 64-bit")
    if type(value) is float and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


MetadataValue = Annotated[str | int | float | bool | None, BeforeValidator(_storable)]


class ExportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_name: Annotated[str, Field(max_length=1100)] | list[str] | None = None
    experiment_id: Annotated[str, Field(max_length=256)] | None = None
    model_id: Annotated[str, Field(max_length=256)] | None = None
    after: Instant | None = None
    before: Instant | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=64)
    """Further metadata equalities, e.g. `{"model": "gpt-4"}`."""


class ExportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "json"] = "json"
    filters: ExportFilters = Field(default_factory=ExportFilters)
    fields: Annotated[list[FieldName], Field(min_length=1, max_length=64)] | None = None


@router.post(
    "/events",
    status_code=202,
    response_model=TelemetryIngestResponse,
    summary="Ingest a batch of events",
    description='`{"events": [{event_name, measurements, metadata, timestamp?}]}`. Each event is checked on its '
    "own: bad ones are counted in `rejected` and described in `errors` (index, field, message; the first 100); "
    "the others are stored. A body that is not an object with a non-empty `events` list, or holds more than "
    "`telemetry_max_batch` events, is a 422.",
    openapi_extra=openapi_body("TelemetryIngest", IngestBody, "A batch of telemetry events"),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 413, 415, 422, 503, 507),
)
async def ingest(request: Request, services: ServicesDep) -> Response:
    settings = services.settings
    body = await read_json_body(request, settings.telemetry_max_body_bytes)
    now = time.time()
    checked = check_batch_fast(body, settings.telemetry_max_batch, now)
    if checked is None:  # something in it is invalid: check event by event to say what, and keep the rest
        checked = check_events(batch_events(parse_lenient(body), settings.telemetry_max_batch), now)
    telemetry = services.telemetry
    if checked.accepted:
        await telemetry.ingest(checked.accepted)
    telemetry.count(INGEST_EVENT, requests=1, events=len(checked.accepted), rejected=checked.rejected)
    data: dict[str, Any] = {"accepted": len(checked.accepted), "rejected": checked.rejected}
    if checked.errors:
        data["errors"] = checked.errors
    return json_response({"data": data}, 202)


def _filters(request: Request) -> Filters:
    """The `filter[...]` parameters; `filter[metadata.<key>]` matches any metadata key."""
    name = None
    after = before = None
    metadata: list[tuple[str, str]] = []
    for param, value in request.query_params.multi_items():
        if not param.startswith("filter["):
            continue
        if not param.endswith("]"):
            raise invalid_field(param, "unknown parameter")
        key = param[len("filter[") : -1]
        if len(value) > 1100:
            raise invalid_field(param, "is too long")
        if key == "event_name":
            name = name_filter(value, param)
        elif key == "after":
            after = instant(value, param)
        elif key == "before":
            before = instant(value, param)
        elif key in ("experiment_id", "model_id"):
            metadata.append((key, value))
        elif key.startswith("metadata.") and 0 < len(key) - len("metadata.") <= MAX_KEY_CHARS:
            metadata.append((key.removeprefix("metadata."), value))
        else:
            known = ", ".join(f"filter[{k}]" for k in sorted(_KNOWN_FILTERS))
            raise invalid_field(param, f"unknown filter; use {known} or filter[metadata.<key>]")
    return Filters(name, after, before, tuple(metadata))


def _measure(metric: str | None, field: str) -> str | None:
    if metric is None:
        return None
    name = metric.removeprefix("measurements.")
    if not 0 < len(name) <= MAX_KEY_CHARS:
        raise invalid_field(field, f"must name a measurement (1..{MAX_KEY_CHARS} characters)")
    return name


def _group(group_by: str | None) -> str | None:
    if group_by is None or group_by == "event_name":
        return group_by
    key = group_by.removeprefix("metadata.")
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise invalid_field("group_by", "must be event_name or a metadata key")
    return key


def _agg(agg: str, metric: str | None, metric_field: str) -> None:
    if agg not in AGGS:
        raise invalid_field("agg", f"unknown aggregation {agg!r}; one of {', '.join(AGGS)}")
    if agg != "count" and metric is None:
        raise invalid_field(metric_field, f"required for agg={agg}")


def _row(row: AggRow, grouped: bool) -> AggregateRow:
    view: dict[str, Any] = {}
    if row.bucket is not None:
        view["timestamp"] = iso_z(row.bucket)
    view["value"] = row.value
    view["count"] = row.count
    if grouped:
        view["group"] = row.group
    return AggregateRow.model_validate(view)  # sent with exclude_unset: `timestamp` and `group` only when they apply


@router.get(
    "/events",
    response_model=TelemetryPage | TelemetryAggregated,
    summary="Query events, or aggregate them with `agg`",
    description="Filters: `filter[event_name]` (exact, dotted `a.b.c`), `filter[experiment_id]`, `filter[model_id]`, "
    "`filter[metadata.<key>]` (equality with the metadata value), `filter[after]` (inclusive), `filter[before]` "
    "(exclusive). `sort` timestamp or -timestamp (default); `page`/`per_page` (at most 100) or `cursor`. With "
    "`agg` (count, avg, sum, min, max, p50, p95, p99), `agg_field` (a measurement) and `group_by` (event_name or "
    "a metadata key), the answer is aggregated rows `{value, count, group?}` over the whole filtered range.",
    responses=error_responses(STRUCTURED_ERRORS, 401, 422),
)
async def query_events(
    request: Request,
    services: ServicesDep,
    event_name: Annotated[str | None, Query(alias="filter[event_name]", max_length=1100)] = None,
    experiment_id: Annotated[str | None, Query(alias="filter[experiment_id]", max_length=1100)] = None,
    model_id: Annotated[str | None, Query(alias="filter[model_id]", max_length=1100)] = None,
    after: Annotated[Instant | None, Query(alias="filter[after]")] = None,
    before: Annotated[Instant | None, Query(alias="filter[before]")] = None,
    agg: Agg = None,
    agg_field: Measure = None,
    group_by: Text = None,
    sort: Annotated[str, Query(json_schema_extra={"enum": ["timestamp", "-timestamp"]})] = "-timestamp",
    page: PageNumber = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    filters = _filters(request)
    telemetry = services.telemetry
    if agg is not None:
        metric = _measure(agg_field, "agg_field")
        _agg(agg, metric, "agg_field")
        grouping = _group(group_by)
        rows = await telemetry.aggregate(filters, agg=agg, metric=metric, group_by=grouping, interval=None)
        aggregated = TelemetryAggregated(
            data=[_row(row, grouping is not None) for row in rows], meta=AggregatedMeta(agg=agg)
        )
        return model_response(aggregated, exclude_unset=True)
    if sort not in EVENT_SORTS:
        raise invalid_field("sort", "must be timestamp or -timestamp")
    paging = page_request(page, per_page, cursor, sort)
    after_key = None
    if paging.cursor is not None:
        value, row_id = paging.cursor
        if not isinstance(value, int | float) or not isinstance(row_id, int):
            raise invalid_field("cursor", "is not a cursor this server issued")
        after_key = (float(value), row_id)
    found = await telemetry.page(
        filters,
        descending=sort.startswith("-"),
        offset=0 if after_key else (paging.page - 1) * paging.per_page,
        limit=paging.per_page,
        after=after_key,
    )
    next_cursor = None
    if found.events:
        last = found.events[-1]
        next_cursor = encode_cursor(sort, last["timestamp"], int(last["id"][4:], 16))
    page = TelemetryPage(
        data=[TelemetryEvent.model_validate(wire(event)) for event in found.events],
        meta=PageMeta.model_validate(meta(paging, found.total, len(found.events), found.has_more, next_cursor)),
    )
    return model_response(page)


@router.get(
    "/aggregate",
    response_model=TelemetryTimeSeries,
    summary="Aggregate a measurement per time bucket (and group)",
    description="`metric` (a measurement; required except for count), `agg` count|avg|sum|min|max|p50|p95|p99 "
    "(default avg, or count without a metric), `interval` 1m|5m|1h|1d (default 1h; buckets aligned to UTC), "
    "`group_by` event_name or a metadata key, and the filters of `GET /api/v1/telemetry/events`. Rows "
    "`{timestamp, value, count, group?}` for each non-empty bucket, by time then group.",
    responses=error_responses(STRUCTURED_ERRORS, 401, 422),
)
async def aggregate_events(
    request: Request,
    services: ServicesDep,
    metric: Measure = None,
    agg: Agg = None,
    group_by: Text = None,
    interval: Annotated[str, Query(json_schema_extra={"enum": list(INTERVALS)})] = "1h",
    event_name: Annotated[str | None, Query(alias="filter[event_name]", max_length=1100)] = None,
    experiment_id: Annotated[str | None, Query(alias="filter[experiment_id]", max_length=1100)] = None,
    after: Annotated[Instant | None, Query(alias="filter[after]")] = None,
    before: Annotated[Instant | None, Query(alias="filter[before]")] = None,
) -> Response:
    filters = _filters(request)
    measure = _measure(metric, "metric")
    how = agg or ("avg" if measure is not None else "count")
    _agg(how, measure, "metric")
    if interval not in INTERVALS:
        raise invalid_field("interval", f"must be one of {', '.join(INTERVALS)}")
    grouping = _group(group_by)
    rows = await services.telemetry.aggregate(
        filters, agg=how, metric=measure, group_by=grouping, interval=INTERVALS[interval]
    )
    series = TelemetryTimeSeries(
        data=[_row(row, grouping is not None) for row in rows],
        meta=TimeSeriesMeta(metric=measure, agg=how, interval=interval, group_by=group_by),
    )
    return model_response(series, exclude_unset=True)


def _export_filters(filters: ExportFilters) -> Filters:
    name = None
    if isinstance(filters.event_name, list):
        name = name_filter(".".join(filters.event_name), "filters.event_name")
        if tuple(filters.event_name) != name:
            raise invalid_field("filters.event_name", "parts must be non-empty strings without dots")
    elif filters.event_name is not None:
        name = name_filter(filters.event_name, "filters.event_name")
    metadata = [(key, value) for key in ("experiment_id", "model_id") if (value := getattr(filters, key)) is not None]
    metadata += [(key, text_form(value)) for key, value in filters.metadata.items()]
    return Filters(
        name,
        instant(filters.after, "filters.after"),
        instant(filters.before, "filters.before"),
        tuple(metadata),
    )


def _check_fields(fields: list[str]) -> None:
    for index, name in enumerate(fields):
        head, _, rest = name.partition(".")
        whole = name in ("id", "timestamp", "event_name", "measurements", "metadata")
        if not whole and not (head in ("measurements", "metadata") and rest):
            raise invalid_field(
                f"fields[{index}]",
                "must be id, timestamp, event_name, measurements, metadata, measurements.<name> or metadata.<key>",
            )


def _pick(event: dict[str, Any], name: str) -> Any:
    if name == "event_name":
        return ".".join(event["event_name"])
    head, _, rest = name.partition(".")
    if rest:
        return event[head].get(rest)
    return event[name]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return text_form(value) if isinstance(value, bool) else value


@router.post(
    "/export",
    response_model=list[TelemetryEvent] | list[ExportRow],
    summary="Download events as CSV or JSON",
    description='`{"format": "csv"|"json", "filters": {event_name, experiment_id, model_id, after, before, '
    'metadata: {key: value}}, "fields": ["timestamp", "event_name", "measurements.duration_ms", ...]}`. Streams '
    "every matching event, oldest first, as a file. CSV: one column per field (event_name dotted; "
    "`measurements`/`metadata` whole as JSON text; a missing value is empty). JSON: an array of the events, "
    "or with `fields` of flat objects keyed by the field names.",
    openapi_extra=openapi_body("TelemetryExport", ExportBody, "Format, filters and fields", required=False),
    responses={
        200: {
            "description": "The events as a file (`Content-Disposition: attachment`): with `fields`, JSON objects "
            "keyed by the field names",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **error_responses(STRUCTURED_ERRORS, 400, 401, 413, 415, 422),
    },
)
async def export_events(request: Request, services: ServicesDep) -> Response:
    body: ExportBody = await read_model(request, ExportBody, services.settings.max_body_bytes, optional=True)
    filters = _export_filters(body.filters)
    fields = body.fields
    if fields is not None:
        _check_fields(fields)
    chunks = services.telemetry.events(filters)
    if body.format == "csv":
        stream = _csv(chunks, fields or ["id", "timestamp", "event_name", "measurements", "metadata"])
    else:
        stream = _json(chunks, fields)
    stamp = iso_z(time.time()).replace(":", "").replace("-", "")[:15]
    return StreamingResponse(
        stream,
        media_type="text/csv; charset=utf-8" if body.format == "csv" else "application/json",
        headers={"Content-Disposition": f'attachment; filename="telemetry-{stamp}.{body.format}"'},
    )


async def _csv(chunks: AsyncIterator[list[dict[str, Any]]], fields: list[str]) -> AsyncIterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    async for events in chunks:
        writer.writerows([[_cell(_pick(event, name)) for name in fields] for event in events])
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue().encode()


async def _json(chunks: AsyncIterator[list[dict[str, Any]]], fields: list[str] | None) -> AsyncIterator[bytes]:
    yield b"["
    first = True
    async for events in chunks:
        objects = events if fields is None else [{name: _pick(event, name) for name in fields} for event in events]
        text = b",\n".join(orjson.dumps(item) for item in objects)
        yield text if first else b",\n" + text
        first = False
    yield b"]\n"
