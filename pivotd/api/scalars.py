"""Scalar points (`train_loss`, `val_accuracy`, ...): batched ingest and downsampled reads."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import Field, TypeAdapter, ValidationError

from pivotd.api.body import invalid_body, openapi_body, read_json_body
from pivotd.api.deps import RunIdPath, ServicesDep
from pivotd.api.layerwise import find_run
from pivotd.api.query import StepBound
from pivotd.api.responses import json_response, layerwise_errors
from pivotd.errors import field_path, invalid_field
from pivotd.scalar_batch import ScalarColumns, from_document, from_points
from pivotd.services import Services
from pivotd.store import RunFields
from shared.models.scalars import ScalarBatch, ScalarPoint, ScalarsAccepted, ScalarsResponse

Points = Annotated[list[ScalarPoint], Field(min_length=1)]
"""The bare-array form, as documented: an empty one is refused, as `ScalarBatch.points` is."""

router = APIRouter(prefix="/api/v1", tags=["scalars"])
_POINTS = TypeAdapter(list[ScalarPoint])


@router.post(
    "/runs/{run_id}/scalars",
    status_code=202,
    response_model=ScalarsAccepted,
    summary="Record scalar points; creates the run if needed",
    description="Body: a JSON array `[{step, epoch?, timestamp?, values: {name: number}}]`, or an object "
    '`{"points": [...], "experiment_id"?, "group"?, "tags"?}`. Re-sending a (name, step) replaces it. '
    "Values must be finite; a non-finite value is refused and recorded as an event on the run.",
    openapi_extra=openapi_body("ScalarsBody", Points | ScalarBatch, "Points, or an object with points"),
    responses=layerwise_errors(401, 413, 415, 422, 503, 507),
)
async def post_scalars(run_id: RunIdPath, request: Request, services: ServicesDep) -> Response:
    body = await read_json_body(request, services.settings.max_body_bytes)
    try:
        columns = from_document(orjson.loads(body))
    except orjson.JSONDecodeError:  # NaN, say: the models' path words the 422 and records it
        columns = None
    if columns is None:
        columns = await _validated(run_id, body, services)
    count = await services.ingest.scalars(run_id, columns)
    return json_response({"status": "accepted", "run_id": run_id, "points": count}, 202)


async def _validated(run_id: str, body: bytes, services: Services) -> ScalarColumns:
    """The body validated by the models: the contract for what is refused and how the 422 says it."""
    # The bare-array form names its errors as the object form would (`points[3].values.loss`).
    is_array = body.lstrip()[:1] == b"["
    prefix = "points" if is_array else ""
    try:
        if is_array:
            points = _POINTS.validate_json(body)
            fields = RunFields()
        else:
            batch = ScalarBatch.model_validate_json(body)
            points = batch.points
            fields = RunFields(experiment_id=batch.experiment_id, group=batch.group, tags=batch.tags)
    except ValidationError as exc:
        non_finite = [e for e in exc.errors(include_url=False) if e["type"] == "finite_number"]
        if non_finite:
            loc = tuple(non_finite[0]["loc"])
            await services.ingest.record_rejection(run_id, None, field_path(loc, prefix), non_finite[0]["msg"])
        raise invalid_body(exc, body, prefix) from None
    if not points:
        raise invalid_field("points", "at least one point is required", kind="too_short")
    return from_points(points, fields)


@router.get(
    "/runs/{run_id}/scalars",
    response_model=ScalarsResponse,
    summary="Read scalar series, downsampled to at most max_points per series",
    description="Long series are reduced to min/max buckets so spikes survive; first and last points are kept.",
    responses=layerwise_errors(401, 404, 422),
)
async def get_scalars(
    run_id: RunIdPath,
    services: ServicesDep,
    names: Annotated[str | None, Query(description="Comma-separated names; default all", max_length=4096)] = None,
    from_step: StepBound = None,
    to_step: StepBound = None,
    max_points: Annotated[int, Query(ge=10, le=100_000)] = 2000,
) -> Response:
    run = await find_run(services, run_id)
    reader = services.store.reader
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else await reader.scalar_names(run.ref)
    series = {}
    downsampled = False
    for name in wanted:
        rows = await reader.scalar_series(run.ref, name, from_step=from_step, to_step=to_step, max_points=max_points)
        downsampled |= rows.downsampled
        series[name] = {"steps": rows.steps, "values": rows.values, "timestamps": rows.timestamps}
    return json_response({"run_id": run_id, "series": series, "downsampled": downsampled})
