"""Models in the `{"data", "meta"}` form (`/api/v1/models`): the same table as `/api/models`, structured errors.

A model shows `provider`, `type`, `config` and `status`. For PIVOT's own models (those with an architecture)
they are derived unless the client set them: provider `pivot`, type `cnn` (any conv2d layer) or `mlp`, config
`{architecture, hyperparams}`, status `active` once
it has trained weights and `untrained` before. Other fields of `config`
and any provider/type/status a client sends are stored in the model's `extra` document and returned as sent.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pivotd.api.body import JsonObject, never_null, openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.query import Cursor, PageNumber, PerPage, only_filters
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.errors import ValidationFailed, fields_failed, invalid_field
from pivotd.experiments.paging import DEFAULT_PER_PAGE, encode_cursor, meta, page_request
from pivotd.jobs.service import InvalidDefinition
from pivotd.services import Services
from pivotd.store import DeleteModel, ModelRow, PatchModelExtra, model_extra, model_page
from pivotd.timefmt import iso
from shared.models.envelopes import Data, Page, PageMeta
from shared.models.registry import ModelPeriod, ModelPublic, ModelStatistics, ModelStatus

router = APIRouter(prefix="/api/v1/models", tags=["models"])
IdPath = Annotated[str, Path(max_length=128)]
Short = Annotated[str, Field(min_length=1, max_length=100)]
PERIODS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
_COLUMNS = ("architecture", "hyperparams")
Status = ModelStatus


class ModelFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=10_000)] | None = None
    provider: Short | None = None
    type: Short | None = None
    status: Status | None = None
    config: JsonObject = Field(default_factory=dict)
    """`architecture` and `hyperparams` are validated and trainable; other keys are stored as given."""


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ModelFields


class ModelChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A null name or config is refused (a 422 naming the field), so the schema does not offer it.
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(default=None, json_schema_extra=never_null)
    description: Annotated[str, Field(max_length=10_000)] | None = None
    provider: Short | None = None
    type: Short | None = None
    status: Status | None = None
    config: JsonObject | None = Field(default=None, json_schema_extra=never_null)


class ModelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: ModelChanges


def model_view(model: ModelRow, extra: dict[str, Any], runs_total: int) -> ModelPublic:
    architecture = model.architecture
    config = dict(extra.get("config") or {})
    derived_type = None
    if architecture is not None:
        config |= {"architecture": architecture, "hyperparams": model.hyperparams}
        layers = architecture.get("layers") or []
        derived_type = "cnn" if any(layer.get("type") == "conv2d" for layer in layers) else "mlp"
    elif model.hyperparams is not None:  # stored without an architecture (yet): still the client's config
        config["hyperparams"] = model.hyperparams
    trained = model.trained or model.last_trained_at is not None  # saved, or some run of it produced weights
    own_status = ("active" if trained else "untrained") if architecture is not None else "active"
    return ModelPublic(
        id=model.model_id,
        name=model.name,
        description=model.description,
        provider=extra.get("provider") or ("pivot" if architecture is not None else None),
        type=extra.get("type") or derived_type,
        config=config,
        status=extra.get("status") or own_status,
        trained=model.trained,
        runs_total=runs_total,
        last_trained_at=None if model.last_trained_at is None else iso(model.last_trained_at),
        created_at=iso(model.created_at),
        updated_at=iso(model.updated_at),
    )


async def _view(services: Services, model_id: str) -> ModelPublic:
    training = services.training
    model = await training.get_model(model_id)
    extra = await model_extra(services.store.reader.connection, model_id)
    runs_total = (await training.reader.run_counts([model_id])).get(model_id, (0, None))[0]
    return model_view(model, extra, runs_total)


async def _put(services: Services, model_id: str | None, values: dict[str, Any]) -> str:
    try:
        model, _ = await services.training.put_model(model_id, values)
    except InvalidDefinition as exc:  # every invalid field is a 422 validation_error here
        raise _in_config(exc) from None
    return model.model_id


def _in_config(exc: InvalidDefinition) -> ValidationFailed:
    """The training routes' error as a 422 whose message and details both name fields from `model.config`."""
    if exc.details is None:  # layers that do not chain: "architecture.layers[7] (linear): expects ..."
        return invalid_field("model.config.architecture", exc.message.removeprefix("architecture."))
    return fields_failed([{**item, "field": f"model.config.{item['field']}"} for item in exc.details])


def _split(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(column values, extra fields) of a `/api/v1/models` body."""
    values = {name: fields[name] for name in ("name", "description") if name in fields}
    extra = {name: fields[name] for name in ("provider", "type", "status") if name in fields}
    config = fields.get("config")
    if config is not None:
        values |= {name: config[name] for name in _COLUMNS if name in config}
        extra["config"] = {key: value for key, value in config.items() if key not in _COLUMNS}
    return values, extra


@router.get(
    "",
    summary="List models",
    description="Oldest first (`sort` accepts only `created_at`); `filter[name]` (partial, case-insensitive); "
    "`page`/`per_page` (at most 100) or `cursor` from `meta.next_cursor`.",
    response_model=Page[ModelPublic],
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 422, 429),
)
async def list_models(
    services: ServicesDep,
    _: Annotated[None, only_filters("filter[name]")],
    name: Annotated[str | None, Query(alias="filter[name]", max_length=200)] = None,
    sort: Annotated[Literal["created_at"], Query()] = "created_at",
    page: PageNumber = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    request = page_request(page, per_page, cursor, sort)
    after = None
    if request.cursor is not None:
        created, ref = request.cursor
        if not isinstance(created, int | float) or not isinstance(ref, int):
            raise invalid_field("cursor", "is not a cursor this server issued")
        after = (float(created), ref)
    entries, total, has_more = await model_page(
        services.store.reader.connection,
        after=after,
        offset=0 if after else (request.page - 1) * request.per_page,
        limit=request.per_page,
        name=name,
    )
    counts = await services.training.reader.run_counts([entry.model.model_id for entry in entries])
    data = [model_view(e.model, e.extra, counts.get(e.model.model_id, (0, None))[0]) for e in entries]
    next_cursor = encode_cursor("created_at", entries[-1].model.created_at, entries[-1].ref) if entries else None
    page_meta = PageMeta.model_validate(meta(request, total, len(entries), has_more, next_cursor))
    return model_response(Page[ModelPublic](data=data, meta=page_meta))


@router.post(
    "",
    status_code=201,
    summary="Create a model",
    openapi_extra=openapi_body(
        "ModelCreate", ModelCreate, '`{"model": {name, provider?, type?, status?, description?, config?}}`'
    ),
    response_model=Data[ModelPublic],
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 403, 413, 415, 422, 429, 507),
)
async def create_model(request: Request, services: ServicesDep) -> Response:
    body: ModelCreate = await read_model(request, ModelCreate, services.settings.max_body_bytes)
    values, extra = _split(body.model.model_dump(exclude_unset=True))
    model_id = await _put(services, None, values)
    if extra:
        await services.store.writer.submit(PatchModelExtra(model_id, extra))
    return model_response(Data[ModelPublic](data=await _view(services, model_id)), 201)


@router.get(
    "/{model_id}",
    summary="One model",
    response_model=Data[ModelPublic],
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 422, 429),
)
async def get_model(model_id: IdPath, services: ServicesDep) -> Response:
    return model_response(Data[ModelPublic](data=await _view(services, model_id)))


@router.patch(
    "/{model_id}",
    summary="Update a model's fields",
    description="`config` replaces the stored config; its `architecture`/`hyperparams` update the trainable "
    "definition. A null provider, type or status goes back to the derived value.",
    openapi_extra=openapi_body("ModelPatch", ModelPatch, '`{"model": {...fields to change}}`'),
    response_model=Data[ModelPublic],
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 403, 404, 413, 415, 422, 429, 507),
)
async def update_model(model_id: IdPath, request: Request, services: ServicesDep) -> Response:
    body: ModelPatch = await read_model(request, ModelPatch, services.settings.max_body_bytes)
    changes = body.model.model_dump(exclude_unset=True)
    for field in ("name", "config"):
        if field in changes and changes[field] is None:
            raise invalid_field(f"model.{field}", "cannot be null")
    await services.training.get_model(model_id)
    values, extra = _split(changes)
    if values:
        await _put(services, model_id, values)
    if extra:
        await services.store.writer.submit(PatchModelExtra(model_id, extra))
    return model_response(Data[ModelPublic](data=await _view(services, model_id)))


@router.delete(
    "/{model_id}",
    status_code=204,
    summary="Delete a model (409 while it has a queued or running run)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 409, 422, 429, 507),
)
async def delete_model(model_id: IdPath, services: ServicesDep) -> Response:
    await services.store.writer.submit(DeleteModel(model_id))
    return Response(status_code=204)


@router.get(
    "/{model_id}/statistics",
    summary="Inference statistics of a model over a period",
    description="From pivotd's own `pivot.model.inference` telemetry events of the model (one per `/api/infer` "
    "request): total_requests, success_rate, avg_latency_ms, p99_latency_ms, total_tokens (sum of a `tokens` "
    "measurement; 0 for PIVOT's classifiers) and error_breakdown by error code. With no requests, the rate and "
    "latencies are null.",
    response_model=Data[ModelStatistics],
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 422, 429),
)
async def model_statistics(
    model_id: IdPath,
    services: ServicesDep,
    period: Annotated[ModelPeriod, Query()] = "24h",
) -> Response:
    await services.training.get_model(model_id)
    stats = await services.telemetry.model_statistics(model_id, time.time() - PERIODS[period])
    total = stats.total_requests
    data = ModelStatistics(
        model_id=model_id,
        period=period,
        total_requests=total,
        success_rate=stats.successes / total if total else None,
        avg_latency_ms=stats.avg_latency_ms,
        p99_latency_ms=stats.p99_latency_ms,
        total_tokens=int(stats.total_tokens) if float(stats.total_tokens).is_integer() else stats.total_tokens,
        error_breakdown=stats.error_breakdown,
    )
    return model_response(Data[ModelStatistics](data=data))
