"""Experiments: CRUD, membership of runs, their listing, and the sweep lifecycle (start, pause, resume, cancel)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pivotd.api.body import JsonObject, never_null, openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.query import Cursor, Instant, PageNumber, PerPage, only_filters
from pivotd.api.responses import WRITES, api_errors, model_response
from pivotd.auth import principal_of
from pivotd.errors import invalid_field
from pivotd.experiments import sweep
from pivotd.experiments.lifecycle import eta_seconds
from pivotd.experiments.paging import DEFAULT_PER_PAGE, encode_cursor, meta, page_request
from pivotd.ids import new_id
from pivotd.services import Services
from pivotd.store import (
    AttachRuns,
    CreateExperiment,
    DeleteExperiment,
    ExperimentFilters,
    ExperimentRow,
    MemberRun,
    UpdateExperiment,
)
from pivotd.timefmt import iso
from shared.models.envelopes import Data, Page, PageMeta
from shared.models.experiments import (
    FINAL_EXPERIMENT_STATUSES,
    AttachedMeta,
    BestRun,
    ExperimentDetail,
    ExperimentFacts,
    ExperimentPublic,
    ExperimentRun,
    ExperimentRunRef,
    ExperimentRunStatus,
    ExperimentStatus,
    ResultsSummary,
    RunsAttached,
    count_by_status,
)
from shared.models.layerwise import RunId

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])
IdPath = Annotated[str, Path(min_length=1, max_length=64)]


def _shown_name(name: str) -> str:
    """A name a list can show: not only whitespace, and no NUL (which cuts it short in C-string clients)."""
    if not name.strip():
        raise ValueError("must not be only whitespace")
    if "\x00" in name:
        raise ValueError("must not contain NUL (\\u0000)")
    return name


# The pattern only documents what `_shown_name` checks (its messages are the clearer ones): a non-space, no NUL.
_SHOWN_NAME = {"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"}
Name = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=_SHOWN_NAME), AfterValidator(_shown_name)]
Description = Annotated[str, Field(max_length=10_000)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(max_length=64)]
ExperimentSort = Literal[
    "name", "-name", "created_at", "-created_at", "updated_at", "-updated_at", "status", "-status"
]  # fmt: skip


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

    # Null is refused where it would erase what the experiment needs (a 422 naming the field), so the schema
    # offers it only for `description`.
    name: Name | None = Field(default=None, json_schema_extra=never_null)
    description: Description | None = None
    config: JsonObject | None = Field(default=None, json_schema_extra=never_null)
    tags: Tags | None = Field(default=None, json_schema_extra=never_null)


class ExperimentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiment: ExperimentChanges


class AttachBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_ids: Annotated[list[RunId], Field(min_length=1, max_length=1000)]
    group: Annotated[str, Field(min_length=1, max_length=256)] | None = None


def experiment_public(row: ExperimentRow) -> ExperimentPublic:
    return ExperimentPublic(**_facts(row), config=row.config)


def experiment_facts(row: ExperimentRow) -> ExperimentFacts:
    return ExperimentFacts(**_facts(row))


def _facts(row: ExperimentRow) -> dict[str, Any]:
    final = row.status in FINAL_EXPERIMENT_STATUSES
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "tags": row.tags,
        "total_runs": row.total_runs,
        "started_at": None if row.started_at is None else iso(row.started_at),
        "completed_at": iso(row.finished_at) if final and row.finished_at is not None else None,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def experiment_run(run: MemberRun, experiment_id: str) -> ExperimentRun:
    return ExperimentRun(
        id=run.run_id,
        experiment_id=experiment_id,
        group=run.group,
        kind=run.kind,
        status=run.status,
        state=run.state,
        progress=run.progress,
        hyperparameters=run.hyperparameters,
        metadata=run.metadata,
        metrics=run.latest,
        created_at=iso(run.created_at),
        started_at=None if run.started_at is None else iso(run.started_at),
        finished_at=None if run.finished_at is None else iso(run.finished_at),
    )


def _instant(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_field(field, f"{value!r} is not an ISO 8601 datetime") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


_ISO = "ISO 8601; without an offset, UTC"


@router.get(
    "",
    summary="List experiments",
    description="Filters `filter[status]`, `filter[name]` (partial), `filter[created_after]`, "
    "`filter[created_before]`; "
    "`sort` one of name, created_at, updated_at, status (`-` for descending; default `-created_at`); `page`, "
    "`per_page` (at most 100) or `cursor` (from `meta.next_cursor`).",
    response_model=Page[ExperimentPublic],
    responses=api_errors(422),
)
async def list_experiments(
    services: ServicesDep,
    _: Annotated[
        None,
        only_filters("filter[status]", "filter[name]", "filter[created_after]", "filter[created_before]"),
    ],
    status: Annotated[ExperimentStatus | None, Query(alias="filter[status]")] = None,
    name: Annotated[str | None, Query(alias="filter[name]", max_length=200)] = None,
    created_after: Annotated[Instant | None, Query(alias="filter[created_after]", description=_ISO)] = None,
    created_before: Annotated[Instant | None, Query(alias="filter[created_before]", description=_ISO)] = None,
    sort: Annotated[ExperimentSort, Query()] = "-created_at",
    page: PageNumber = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    filters = ExperimentFilters(
        status,
        name,
        _instant(created_after, "filter[created_after]"),
        _instant(created_before, "filter[created_before]"),
    )
    request = page_request(page, per_page, cursor, sort)
    rows, total, has_more = await services.store.experiments.list(filters, sort, request)
    column = sort.removeprefix("-")
    next_cursor = encode_cursor(sort, getattr(rows[-1], column), rows[-1].id) if rows else None
    paging = PageMeta(**meta(request, total, len(rows), has_more, next_cursor))
    return model_response(Page[ExperimentPublic](data=[experiment_public(row) for row in rows], meta=paging))


@router.post(
    "",
    status_code=201,
    summary="Create an experiment",
    openapi_extra=openapi_body(
        "ExperimentCreate", ExperimentCreate, '`{"experiment": {name, description, config, tags}}`'
    ),
    response_model=Data[ExperimentPublic],
    responses=api_errors(400, 413, 415, 422, *WRITES),
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
    return model_response(Data[ExperimentPublic](data=experiment_public(row)), 201)


@router.get(
    "/{experiment_id}",
    summary="One experiment with its runs and a results summary",
    response_model=Data[ExperimentDetail],
    responses=api_errors(404, 422),
)
async def get_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.store.experiments.get(experiment_id))


async def results_summary(services: Services, row: ExperimentRow) -> ResultsSummary:
    """Run counts by status and by state, and the best run by the metric the experiment is judged by."""
    reader = services.store.experiments
    by_state = await reader.state_counts(row.id)
    summary: dict[str, Any] = {
        "total_runs": row.total_runs,
        "runs_by_status": count_by_status(by_state),
        "runs_by_state": by_state,
    }
    metric = sweep.judged_metric(row.config)
    if metric is not None:
        best = await reader.best_run(row.id, metric)
        summary |= {
            "metric": metric,
            f"best_{metric}": None if best is None else best[2],  # the name the experiments API documents
            "best_run": None if best is None else BestRun(run_id=best[0], group=best[1], value=best[2]),
        }
    return ResultsSummary.model_validate(summary)


async def experiment_detail(services: Services, row: ExperimentRow) -> ExperimentDetail:
    """The experiment with its first 100 runs, `results_summary`, `progress` and the time left."""
    reader = services.store.experiments
    runs, _, _ = await reader.runs(row.id, page_request(1, 100, None, "created_at"))
    progress = await reader.progress(row.id)
    epoch_fraction = progress.epoch_fraction
    return ExperimentDetail(
        **_facts(row),
        config=row.config,
        runs=[
            ExperimentRunRef(id=run.run_id, status=run.status, state=run.state, progress=run.progress, group=run.group)
            for run in runs
        ],
        results_summary=await results_summary(services, row),
        progress=round(progress.fraction, 4),
        epoch_progress=None if epoch_fraction is None else round(epoch_fraction, 4),
        eta_seconds=eta_seconds(row, progress, time.time()),
    )


@router.patch(
    "/{experiment_id}",
    summary="Update name, description, config or tags",
    openapi_extra=openapi_body("ExperimentPatch", ExperimentPatch, '`{"experiment": {...fields to change}}`'),
    response_model=Data[ExperimentPublic],
    responses=api_errors(400, 404, 413, 415, 422, *WRITES),
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
    row = await services.store.experiments.get(experiment_id)
    return model_response(Data[ExperimentPublic](data=experiment_public(row)))


@router.delete(
    "/{experiment_id}",
    status_code=204,
    summary="Delete an experiment and its statistical results (its runs stay, detached)",
    responses=api_errors(404, 422, *WRITES),
)
async def delete_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    await services.store.writer.submit(DeleteExperiment(experiment_id))
    return Response(status_code=204)


@router.post(
    "/{experiment_id}/runs",
    summary="Attach existing runs to the experiment, optionally under a group label",
    openapi_extra=openapi_body("AttachRuns", AttachBody, '`{"run_ids": [...], "group"?: "..."}`'),
    response_model=RunsAttached,
    responses=api_errors(400, 404, 413, 415, 422, *WRITES),
)
async def attach_runs(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    body: AttachBody = await read_model(request, AttachBody, services.settings.max_body_bytes)
    run_ids = list(dict.fromkeys(body.run_ids))
    await services.store.writer.submit(AttachRuns(experiment_id, run_ids, body.group))
    await services.experiments.cancel_stranded(experiment_id)  # queued runs joining a cancelled experiment
    found = await services.store.experiments.runs_by_id(run_ids)
    attached = [experiment_run(found[run_id], experiment_id) for run_id in run_ids]
    return model_response(RunsAttached(data=attached, meta=AttachedMeta(attached=len(run_ids))))


@router.get(
    "/{experiment_id}/runs",
    summary="The experiment's runs, oldest first, with group, status and latest metrics",
    description="Filters `filter[status]` (pending, running, completed, failed, cancelled) and `filter[group]`; "
    "`page`/`per_page` or `cursor`.",
    response_model=Page[ExperimentRun],
    responses=api_errors(404, 422),
)
async def list_runs(
    experiment_id: IdPath,
    services: ServicesDep,
    _: Annotated[None, only_filters("filter[status]", "filter[group]")],
    status: Annotated[ExperimentRunStatus | None, Query(alias="filter[status]")] = None,
    group: Annotated[str | None, Query(alias="filter[group]", max_length=256)] = None,
    sort: Annotated[Literal["created_at"], Query(description="The one order: oldest first")] = "created_at",
    page: PageNumber = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    reader = services.store.experiments
    await reader.get(experiment_id)  # 404 for an unknown experiment rather than an empty list
    request = page_request(page, per_page, cursor, sort)
    runs, total, has_more = await reader.runs(experiment_id, request, status, group)
    next_cursor = encode_cursor("created_at", runs[-1].created_at, runs[-1].ref) if runs else None
    paging = PageMeta(**meta(request, total, len(runs), has_more, next_cursor))
    return model_response(Page[ExperimentRun](data=[experiment_run(run, experiment_id) for run in runs], meta=paging))


class CloneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    """Defaults to the source's name with ` (copy)`."""


_ACTION: dict[str, Any] = {
    "response_model": Data[ExperimentDetail],
    "responses": api_errors(404, 409, 422, *WRITES),
}


async def _detail(services: Services, row: ExperimentRow, status: int = 200) -> Response:
    return model_response(Data[ExperimentDetail](data=await experiment_detail(services, row)), status)


@router.post(
    "/{experiment_id}/start",
    summary="Start a sweep: queue one managed run (or, for a command sweep, one job) per grid point",
    description="Only a config of type `sweep` can be started (others: 422 naming `config.type`); starting twice "
    "is a 409. A command sweep needs the `jobs` scope (403 without, or when `jobs_enabled` is false). Answers the "
    "experiment as `GET` does.",
    response_model=Data[ExperimentDetail],
    responses=api_errors(403, 404, 409, 422, *WRITES),
)
async def start_experiment(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    may_run_commands = "jobs" in principal_of(request.scope).grants  # a command sweep's runs are jobs
    return await _detail(services, await services.experiments.start(experiment_id, may_run_commands))


@router.post(
    "/{experiment_id}/pause", summary="Stop dequeuing the experiment's queued runs (running ones finish)", **_ACTION
)
async def pause_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.control(experiment_id, "pause"))


@router.post("/{experiment_id}/resume", summary="Let a paused experiment's runs start again", **_ACTION)
async def resume_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.control(experiment_id, "resume"))


@router.post("/{experiment_id}/cancel", summary="Cancel the experiment's queued and running runs", **_ACTION)
async def cancel_experiment(experiment_id: IdPath, services: ServicesDep) -> Response:
    return await _detail(services, await services.experiments.control(experiment_id, "cancel"))


@router.post(
    "/{experiment_id}/clone",
    status_code=201,
    summary="Copy config, description and tags into a new pending experiment (no runs)",
    openapi_extra=openapi_body("ExperimentClone", CloneBody, '`{"name"?: "..."}`', required=False),
    response_model=Data[ExperimentDetail],
    responses=api_errors(400, 404, 413, 415, 422, *WRITES),
)
async def clone_experiment(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    body: CloneBody = await read_model(request, CloneBody, services.settings.max_body_bytes, optional=True)
    return await _detail(services, await services.experiments.clone(experiment_id, body.name), 201)
