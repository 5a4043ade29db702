"""Experiments (family C, seed 004): CRUD, membership of runs, and their listing in C's envelope."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pivotd.api.body import JsonObject, openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.query import only_filters
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, json_response
from pivotd.errors import invalid_field
from pivotd.experiments import sweep
from pivotd.experiments.lifecycle import eta_seconds
from pivotd.experiments.paging import DEFAULT_PER_PAGE, encode_cursor, meta, page_request
from pivotd.ids import new_id
from pivotd.services import Services
from pivotd.store import (
    EXPERIMENT_SORTS,
    AttachRuns,
    CreateExperiment,
    DeleteExperiment,
    ExperimentFilters,
    ExperimentRow,
    MemberRun,
    UpdateExperiment,
)
from pivotd.timefmt import iso
from shared.models.experiment_status import C_TO_INTERNAL, EXPERIMENT_STATUSES
from shared.models.layerwise import RunId

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments (seed 004)"])
IdPath = Annotated[str, Path(max_length=64)]


def _shown_name(name: str) -> str:
    """A name a list can show: not only whitespace, and no NUL (which cuts it short in C-string clients)."""
    if not name.strip():
        raise ValueError("must not be only whitespace")
    if "\x00" in name:
        raise ValueError("must not contain NUL (\\u0000)")
    return name


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_shown_name)]
Description = Annotated[str, Field(max_length=10_000)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=64)]
Page = Annotated[int, Query()]
PerPage = Annotated[int, Query()]
Cursor = Annotated[str | None, Query(max_length=512)]


class ExperimentFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    config: JsonObject = Field(default_factory=dict)
    """Stored and returned as given."""
    tags: Tags = Field(default_factory=list)


class ExperimentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiment: ExperimentFields


class ExperimentChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    config: JsonObject | None = None
    tags: Tags | None = None


class ExperimentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiment: ExperimentChanges


class AttachBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_ids: Annotated[list[RunId], Field(min_length=1, max_length=1000)]
    group: Annotated[str, Field(min_length=1, max_length=256)] | None = None


def experiment_view(row: ExperimentRow) -> dict[str, Any]:
    finished = row.status in ("completed", "failed", "cancelled")
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "config": row.config,
        "tags": row.tags,
        "total_runs": row.total_runs,
        "started_at": None if row.started_at is None else iso(row.started_at),
        "completed_at": iso(row.finished_at) if finished and row.finished_at is not None else None,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def run_view(run: MemberRun, experiment_id: str) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "experiment_id": experiment_id,
        "group": run.group,
        "kind": run.kind,
        "status": run.status,
        "progress": run.progress,
        "hyperparameters": run.hyperparameters,
        "metadata": run.metadata,
        "metrics": run.latest,
        "created_at": iso(run.created_at),
        "started_at": None if run.started_at is None else iso(run.started_at),
        "finished_at": None if run.finished_at is None else iso(run.finished_at),
    }


def _instant(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_field(field, f"{value!r} is not an ISO 8601 datetime") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _status(value: str | None, known: tuple[str, ...] = tuple(C_TO_INTERNAL)) -> str | None:
    if value is not None and value not in known:
        raise invalid_field("filter[status]", f"unknown status {value!r}; one of {', '.join(known)}")
    return value


@router.get(
    "",
    summary="List experiments",
    description="Filters `filter[status]`, `filter[name]` (partial), `filter[created_after]`, "
    "`filter[created_before]`; "
    "`sort` one of name, created_at, updated_at, status (`-` for descending; default `-created_at`); `page`, "
    "`per_page` (at most 100) or `cursor` (from `meta.next_cursor`).",
    responses=error_responses(STRUCTURED_ERRORS, 401, 422),
)
async def list_experiments(
    services: ServicesDep,
    _: Annotated[
        None,
        only_filters("filter[status]", "filter[name]", "filter[created_after]", "filter[created_before]"),
    ],
    status: Annotated[str | None, Query(alias="filter[status]", max_length=32)] = None,
    name: Annotated[str | None, Query(alias="filter[name]", max_length=200)] = None,
    created_after: Annotated[str | None, Query(alias="filter[created_after]", max_length=64)] = None,
    created_before: Annotated[str | None, Query(alias="filter[created_before]", max_length=64)] = None,
    sort: Annotated[str, Query(max_length=32)] = "-created_at",
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    if sort.removeprefix("-") not in EXPERIMENT_SORTS:
        raise invalid_field("sort", f"cannot sort by {sort!r}; one of {', '.join(EXPERIMENT_SORTS)}, optionally with -")
    filters = ExperimentFilters(
        _status(status, EXPERIMENT_STATUSES), name, _instant(created_after, "filter[created_after]"),
        _instant(created_before, "filter[created_before]"),
    )  # fmt: skip
    request = page_request(page, per_page, cursor, sort)
    rows, total, has_more = await services.store.experiments.list(filters, sort, request)
    column = sort.removeprefix("-")
    next_cursor = encode_cursor(sort, getattr(rows[-1], column), rows[-1].id) if rows else None
    return json_response(
        {"data": [experiment_view(row) for row in rows], "meta": meta(request, total, len(rows), has_more, next_cursor)}
    )


@router.post(
    "",
    status_code=201,
    summary="Create an experiment",
    openapi_extra=openapi_body(
        "ExperimentCreate", ExperimentCreate, '`{"experiment": {name, description, config, tags}}`'
    ),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 413, 415, 422),
)
async def create_experiment(request: Request, services: ServicesDep) -> Response:
    body: ExperimentCreate = await read_model(request, ExperimentCreate, services.settings.max_body_bytes)
    fields = body.experiment
    await services.experiments.check(fields.config, "experiment.")
    experiment_id = new_id("exp")
    await services.store.writer.submit(
        CreateExperiment(experiment_id, fields.name, fields.description, fields.config, fields.tags)
    )
    row = await services.store.experiments.get(experiment_id)
    return json_response({"data": experiment_view(row), "meta": {}}, 201)


@router.get(
    "/{experiment_id}",
    summary="One experiment with its runs and a results summary",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def get_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.store.experiments.get(experiment_id))


async def detail_view(services: Services, row: ExperimentRow) -> dict[str, Any]:
    """The experiment with its first 100 runs, `results_summary` and `progress` (seed 004's Get Experiment)."""
    reader = services.store.experiments
    runs, _, _ = await reader.runs(row.id, page_request(1, 100, None, "created_at"))
    by_status = await reader.status_counts(row.id)
    summary: dict[str, Any] = {"total_runs": row.total_runs, "runs_by_status": by_status}
    metric = sweep.judged_metric(row.config)
    if metric is not None:
        best = await reader.best_run(row.id, metric)
        summary |= {
            "metric": metric,
            f"best_{metric}": None if best is None else best[2],
            "best_run": None if best is None else {"run_id": best[0], "group": best[1], "value": best[2]},
        }
    progress = await reader.progress(row.id)
    epoch_fraction = progress.epoch_fraction
    return experiment_view(row) | {
        "runs": [
            {"id": run.run_id, "status": run.status, "progress": run.progress, "group": run.group} for run in runs
        ],
        "results_summary": summary,
        "progress": round(progress.fraction, 4),
        "epoch_progress": None if epoch_fraction is None else round(epoch_fraction, 4),
        "eta_seconds": eta_seconds(row, progress, time.time()),
    }


@router.patch(
    "/{experiment_id}",
    summary="Update name, description, config or tags",
    openapi_extra=openapi_body("ExperimentPatch", ExperimentPatch, '`{"experiment": {...fields to change}}`'),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 404, 413, 415, 422),
)
async def update_experiment(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    body: ExperimentPatch = await read_model(request, ExperimentPatch, services.settings.max_body_bytes)
    changes = body.experiment.model_dump(exclude_unset=True)
    for field in ("name", "config", "tags"):
        if field in changes and changes[field] is None:
            raise invalid_field(f"experiment.{field}", "cannot be null")
    if "config" in changes:
        await services.store.experiments.get(experiment_id)  # 404 before any 422 about its config
        await services.experiments.check(changes["config"], "experiment.")
    await services.store.writer.submit(UpdateExperiment(experiment_id, changes))
    return json_response({"data": experiment_view(await services.store.experiments.get(experiment_id)), "meta": {}})


@router.delete(
    "/{experiment_id}",
    status_code=204,
    summary="Delete an experiment and its statistical results (its runs stay, detached)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def delete_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    await services.store.writer.submit(DeleteExperiment(experiment_id))
    return Response(status_code=204)


@router.post(
    "/{experiment_id}/runs",
    summary="Attach existing runs to the experiment, optionally under a group label",
    openapi_extra=openapi_body("AttachRuns", AttachBody, '`{"run_ids": [...], "group"?: "..."}`'),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 404, 413, 415, 422),
)
async def attach_runs(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    body: AttachBody = await read_model(request, AttachBody, services.settings.max_body_bytes)
    run_ids = list(dict.fromkeys(body.run_ids))
    await services.store.writer.submit(AttachRuns(experiment_id, run_ids, body.group))
    await services.experiments.cancel_stranded(experiment_id)  # queued runs joining a cancelled experiment
    found = await services.store.experiments.runs_by_id(run_ids)
    return json_response(
        {"data": [run_view(found[run_id], experiment_id) for run_id in run_ids], "meta": {"attached": len(run_ids)}}
    )


@router.get(
    "/{experiment_id}/runs",
    summary="The experiment's runs, oldest first, with group, status and latest metrics",
    description="Filters `filter[status]` (pending, running, completed, failed, cancelled) and `filter[group]`; "
    "`page`/`per_page` or `cursor`.",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404, 422),
)
async def list_runs(
    experiment_id: IdPath,
    services: ServicesDep,
    _: Annotated[None, only_filters("filter[status]", "filter[group]")],
    status: Annotated[str | None, Query(alias="filter[status]", max_length=32)] = None,
    group: Annotated[str | None, Query(alias="filter[group]", max_length=256)] = None,
    sort: Annotated[Literal["created_at"], Query(description="The one order: oldest first")] = "created_at",
    page: Page = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    reader = services.store.experiments
    await reader.get(experiment_id)  # 404 for an unknown experiment rather than an empty list
    request = page_request(page, per_page, cursor, sort)
    runs, total, has_more = await reader.runs(experiment_id, request, _status(status), group)
    next_cursor = encode_cursor("created_at", runs[-1].created_at, runs[-1].ref) if runs else None
    return json_response(
        {
            "data": [run_view(run, experiment_id) for run in runs],
            "meta": meta(request, total, len(runs), has_more, next_cursor),
        }
    )


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    """Defaults to the source's name with ` (copy)`."""


_ACTION_ERRORS = error_responses(STRUCTURED_ERRORS, 401, 404, 409)


async def _detail(services: Services, row: ExperimentRow, status: int = 200) -> Response:
    return json_response({"data": await detail_view(services, row), "meta": {}}, status)


@router.post(
    "/{experiment_id}/start",
    summary="Start a sweep: queue one managed run per grid point",
    description="Only a config of type `sweep` can be started (others: 422 naming `config.type`); starting twice "
    "is a 409. Answers the experiment as `GET` does.",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404, 409, 422),
)
async def start_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.start(experiment_id))


@router.post(
    "/{experiment_id}/pause",
    summary="Stop dequeuing the experiment's queued runs (running ones finish)",
    responses=_ACTION_ERRORS,
)
async def pause_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.control(experiment_id, "pause"))


@router.post("/{experiment_id}/resume", summary="Let a paused experiment's runs start again", responses=_ACTION_ERRORS)
async def resume_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.control(experiment_id, "resume"))


@router.post(
    "/{experiment_id}/cancel", summary="Cancel the experiment's queued and running runs", responses=_ACTION_ERRORS
)
async def cancel_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.control(experiment_id, "cancel"))


@router.post(
    "/{experiment_id}/clone",
    status_code=201,
    summary="Copy config, description and tags into a new pending experiment (no runs)",
    openapi_extra=openapi_body("ExperimentClone", CloneBody, '`{"name"?: "..."}`', required=False),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 404, 413, 415, 422),
)
async def clone_experiment(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    body: CloneBody = await read_model(request, CloneBody, services.settings.max_body_bytes, optional=True)
    return await _detail(services, await services.experiments.clone(experiment_id, body.name), 201)
