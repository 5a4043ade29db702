"""Layer-wise metrics ingest and run reads, in the layer-wise protocol's exact shapes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import Field, TypeAdapter, ValidationError

from pivotd.api.body import invalid_body, openapi_body, read_json_body
from pivotd.api.deps import RunIdPath, ServicesDep
from pivotd.api.query import StepBound, only_filters
from pivotd.api.responses import json_response, layerwise_errors, raw_json_response
from pivotd.errors import NotFound, PivotError, field_path, invalid_field, invalid_param
from pivotd.experiments.paging import MAX_PAGE
from pivotd.ingest import lite_steps, run_id_of, run_summary
from pivotd.layerwise_decoder import StepPayload, decode_batch, decode_step
from pivotd.services import Services
from pivotd.store import SORTABLE, RunRow
from pivotd.timefmt import iso
from shared.models.experiments import RUN_STATES
from shared.models.layerwise import LayerwisePayload, Step, normalise_layer_id
from shared.models.runs import Accepted, BatchAccepted, LiteRunDetail, RunDetail, RunState, RunSummary

router = APIRouter(prefix="/api/v1", tags=["layer-wise metrics"])
LAYERWISE_PATH = "/api/v1/metrics/layerwise"
"""Answered by `pivotd.api.ingest_route` for plain JSON bodies, by `post_layerwise` for the rest."""
_BATCH = TypeAdapter(list[LayerwisePayload])
Batch = Annotated[list[LayerwisePayload], Field(min_length=1)]
"""The batch route's body as documented; the route refuses an empty one with a 422 of its own."""
RUN_SORTS = [prefix + key for key in sorted(SORTABLE) for prefix in ("", "-")]
"""`sort` of the run list: a sortable column, `-` first for descending."""
RUN_STATUS_FILTER = {**RUN_STATES, **{state: (state,) for state in RunState}}
"""`filter[status]`: a run's own state (what this listing shows; `failed` is not `lost`), or the experiments
routes' word for it (`completed`, `pending`)."""


async def reject(services: Services, exc: ValidationError, body: bytes, *, batch: bool) -> PivotError:
    """Turn a validation failure into the 4xx to send, recording any non-finite value on its run first."""
    error = invalid_body(exc, body)
    non_finite = [e for e in exc.errors(include_url=False, include_input=False) if e["type"] == "finite_number"]
    if non_finite:
        document = json.loads(body)  # the stdlib parser accepts NaN/Infinity, which is what we are reporting
        seen: set[tuple[str, int | None]] = set()
        for item in non_finite:
            loc = tuple(item["loc"])
            target = document[loc[0]] if batch and isinstance(document, list) else document
            run_id, step = run_id_of(target)
            if run_id is None or (run_id, step) in seen:
                continue
            seen.add((run_id, step))
            where = loc[1:] if batch else loc
            await services.ingest.record_rejection(
                run_id, step, field_path(where), item["msg"], layer_id=_layer_id_at(target, where)
            )
    return error


def _layer_id_at(document: Any, loc: tuple[Any, ...]) -> str | None:
    """The (normalised) id of the layer a `layer_statistics[i]...` location points into, if it has one."""
    if len(loc) < 2 or loc[0] != "layer_statistics" or not isinstance(loc[1], int):
        return None
    try:
        layer_id = document["layer_statistics"][loc[1]]["layer_id"]
    except (KeyError, IndexError, TypeError):
        return None
    return normalise_layer_id(layer_id) if isinstance(layer_id, str) else None


@router.post(
    "/metrics/layerwise",
    status_code=202,
    response_model=Accepted,
    summary="Submit one step of layer-wise metrics",
    description="Validated, committed to SQLite, then broadcast on /ws as `new_metrics`. "
    "A 202 means the step is durable: a daemon killed right after still has it.",
    openapi_extra=openapi_body("LayerwisePayload", LayerwisePayload, "One monitored training step"),
    responses=layerwise_errors(401, 413, 415, 422, 503, 507),
)
async def post_layerwise(request: Request, services: ServicesDep) -> Response:
    return raw_json_response(
        await accept_step(services, await read_json_body(request, services.settings.max_body_bytes)), 202
    )


async def accept_step(services: Services, body: bytes) -> bytes:
    """Validate, commit and announce one step; the body of the 202 to answer with, or the `PivotError` to
    render."""
    payload: StepPayload | None = decode_step(body)
    if payload is None:  # invalid, or valid in a form only pydantic reads: it decides, and names any error
        try:
            payload = LayerwisePayload.model_validate_json(body)
        except ValidationError as exc:
            raise await reject(services, exc, body, batch=False) from None
    await services.ingest.layerwise([payload])
    return orjson.dumps({"status": "accepted", "run_id": payload.metadata.run_id})


@router.post(
    "/metrics/layerwise/batch",
    status_code=202,
    response_model=BatchAccepted,
    summary="Submit several steps (of one or more runs) in one request",
    description="A JSON array of layer-wise payloads, committed atomically: if any item is invalid, "
    "nothing is stored and the 422 names the item (`[3].metadata.run_id`).",
    openapi_extra=openapi_body("LayerwiseBatch", Batch, "Array of layer-wise payloads"),
    responses=layerwise_errors(401, 413, 415, 422, 503, 507),
)
async def post_layerwise_batch(request: Request, services: ServicesDep) -> Response:
    body = await read_json_body(request, services.settings.max_body_bytes)
    payloads: Sequence[StepPayload] | None = decode_batch(body)
    if payloads is None:  # an item invalid, or valid in a form only pydantic reads: it decides, and names any error
        try:
            payloads = _BATCH.validate_json(body)
        except ValidationError as exc:
            raise await reject(services, exc, body, batch=True) from None
    if not payloads:
        raise invalid_field("body", "the batch is empty; send at least one payload", kind="too_short")
    run_ids = await services.ingest.layerwise(payloads)
    return json_response({"status": "accepted", "accepted": len(payloads), "run_ids": sorted(set(run_ids))}, 202)


async def find_run(services: Services, run_id: str) -> RunRow:
    run = await services.store.reader.get_run(run_id)
    if run is None:
        raise NotFound(f"Run {run_id!r} not found")  # the layer-wise protocol's words
    return run


@router.get(
    "/runs",
    response_model=dict[str, RunSummary],
    summary="List runs (a map keyed by run_id)",
    description="Without paging parameters every run is returned. With `page`/`per_page` the body keeps "
    "its map shape and paging goes in `X-Total-Count` and `Link` headers.",
    responses=layerwise_errors(401, 422),
)
async def list_runs(
    request: Request,
    services: ServicesDep,
    _: Annotated[None, only_filters("filter[status]", "filter[experiment_id]")],
    status: Annotated[
        Annotated[str, Field(max_length=32, json_schema_extra={"enum": list(RUN_STATUS_FILTER)})] | None,
        Query(alias="filter[status]"),
    ] = None,
    experiment_id: Annotated[str | None, Query(alias="filter[experiment_id]", max_length=128)] = None,
    sort: Annotated[
        str, Query(description="'-' prefix for descending", json_schema_extra={"enum": RUN_SORTS})
    ] = "created_at",
    page: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
    per_page: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> Response:
    if sort.removeprefix("-") not in SORTABLE:
        raise invalid_param("sort", f"must be one of {', '.join(sorted(SORTABLE))} (optionally prefixed with '-')")
    if status is not None and status not in RUN_STATUS_FILTER:
        raise invalid_param("filter[status]", f"unknown status {status!r}; one of {', '.join(RUN_STATUS_FILTER)}")
    paged = page is not None or per_page is not None
    size = per_page or 25
    number = page or 1
    runs, total = await services.store.reader.list_runs(
        statuses=None if status is None else RUN_STATUS_FILTER[status],
        experiment_id=experiment_id,
        sort=sort,
        limit=size if paged else None,
        offset=(number - 1) * size,
    )
    headers = {"X-Total-Count": str(total)}
    if paged:
        links = []
        if number * size < total:
            links.append(f'<{request.url.include_query_params(page=number + 1, per_page=size)}>; rel="next"')
        if number > 1:
            links.append(f'<{request.url.include_query_params(page=number - 1, per_page=size)}>; rel="prev"')
        if links:
            headers["Link"] = ", ".join(links)
    return json_response({run.run_id: run_summary(run) for run in runs}, headers=headers)


@router.get(
    "/runs/{run_id}",
    response_model=RunDetail | LiteRunDetail,  # compact layers with `lite=true`
    summary="A run with its step history",
    description="`created_at`, `last_update`, `steps` plus run fields. `steps=none|latest|all` "
    "and `from_step`/`to_step` bound the payload; `lite=true` returns compact layers.",
    responses=layerwise_errors(401, 404, 422),
)
async def get_run(
    run_id: RunIdPath,
    services: ServicesDep,
    steps: Literal["none", "latest", "all"] = "all",
    from_step: StepBound = None,
    to_step: StepBound = None,
    lite: bool = False,
) -> Response:
    reader = services.store.reader
    run = await find_run(services, run_id)
    events = await reader.events(run.ref)
    head = run_summary(run) | {
        "run_id": run.run_id,
        "metadata": run.metadata,
        "scalar_names": await reader.scalar_names(run.ref),
        "events": [
            {
                "timestamp": iso(e.timestamp),
                "kind": e.kind,
                "step": e.step,
                "field": e.field,
                "message": e.message,
            }
            for e in events
        ],
    }
    if run.kind == "managed":
        head |= await services.training.managed_fields(run_id)
    elif run.kind == "job":
        head |= await services.jobs.run_fields(run_id)
    if steps == "none":
        return json_response(head)
    if steps == "latest":
        latest = await reader.latest_step(run.ref)
        documents = [latest] if latest is not None else []
    else:
        documents = await reader.steps(run.ref, from_step=from_step, to_step=to_step)
        if lite:
            documents = await lite_steps(documents)
    # Stored steps are already JSON: splice them in rather than parse and re-encode them.
    body = orjson.dumps(head)[:-1] + b',"steps":[' + b",".join(documents) + b"]}"
    return raw_json_response(body)


@router.get(
    "/runs/{run_id}/latest",
    response_model=Step,
    summary="The most recent step of a run",
    responses=layerwise_errors(401, 404, 422),
)
async def get_latest(run_id: RunIdPath, services: ServicesDep) -> Response:
    run = await find_run(services, run_id)
    latest = await services.store.reader.latest_step(run.ref)
    if latest is None:
        raise NotFound(f"Run {run_id!r} has no layer-wise steps yet")
    return raw_json_response(latest)


@router.delete(
    "/runs/{run_id}",
    status_code=204,
    summary="Delete a run and everything recorded for it",
    responses=layerwise_errors(401, 404, 409, 422),
)
async def delete_run(run_id: RunIdPath, services: ServicesDep) -> Response:
    await services.ingest.delete_run(run_id)
    return Response(status_code=204)
