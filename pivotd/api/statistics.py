"""Statistical results: run a test over an experiment's runs, store it, read it back."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.query import Cursor, PageNumber, PerPage, only_filters
from pivotd.api.responses import WRITES, api_errors, model_response
from pivotd.errors import invalid_field
from pivotd.experiments.compare import Comparison, compare
from pivotd.experiments.paging import DEFAULT_PER_PAGE, encode_cursor, meta, page_request
from pivotd.ids import new_id
from pivotd.services import Services
from pivotd.store import PutStatResult, StatResultRow
from pivotd.timefmt import iso
from shared.models.envelopes import Data, Page, PageMeta
from shared.models.experiments import Aggregate, Alternative, StatisticalResult
from shared.models.layerwise import RunId

router = APIRouter(prefix="/api/v1", tags=["statistics"])
IdPath = Annotated[str, Path(min_length=1, max_length=64)]
Label = Annotated[str, Field(min_length=1, max_length=256)]


class TestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    alternative: Alternative = "two_sided"
    aggregate: Aggregate = "last"
    """Each run's value: its last point, its best point (min for a name containing `loss`, else max) or mean."""


class TestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment_id: Annotated[str, Field(max_length=64)] | None = None
    test_type: Annotated[str, Field(min_length=1, max_length=64)]
    groups: Annotated[list[Label], Field(min_length=1, max_length=50)] | dict[Label, list[RunId]]
    metric: Annotated[str, Field(min_length=1, max_length=256)]
    options: TestOptions = Field(default_factory=TestOptions)


class TestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    test: TestSpec


def statistical_result(row: StatResultRow) -> StatisticalResult:
    return StatisticalResult.model_validate(
        {"id": row.id, "experiment_id": row.experiment_id, **row.data, "created_at": iso(row.created_at)}
    )


async def _run(services: Services, request: Request, experiment_id: str | None) -> Response:
    spec = (await read_model(request, TestBody, services.settings.max_body_bytes)).test
    if experiment_id is None:
        if spec.experiment_id is None:
            raise invalid_field("test.experiment_id", "required")
        experiment_id = spec.experiment_id
    elif spec.experiment_id not in (None, experiment_id):
        message = f"names {spec.experiment_id}, but the path names {experiment_id}"
        raise invalid_field("test.experiment_id", message)
    reader = services.store.experiments
    await reader.get(experiment_id)  # 404 before any 422 about its groups
    options = spec.options
    comparison = Comparison(
        spec.test_type, spec.groups, spec.metric, options.alpha, options.alternative, options.aggregate
    )
    document = await compare(reader, experiment_id, comparison)
    result_id, now = new_id("stat"), time.time()
    test = document["test"]
    await services.store.writer.submit(PutStatResult(result_id, experiment_id, test, now, document))
    result = statistical_result(StatResultRow(result_id, experiment_id, now, document))
    return model_response(Data[StatisticalResult](data=result), 201)


_POST = {
    "status_code": 201,
    "openapi_extra": openapi_body("StatisticalTest", TestBody, '`{"test": {test_type, groups, metric, options}}`'),
    "response_model": Data[StatisticalResult],
    "responses": api_errors(400, 404, 409, 413, 415, 422, *WRITES),
}


@router.post("/statistical-results", summary="Run a statistical test (experiment named in the body)", **_POST)
async def run_test(request: Request, services: ServicesDep) -> Response:
    return await _run(services, request, None)


@router.post("/experiments/{experiment_id}/statistical-results", summary="Run a statistical test", **_POST)
async def run_experiment_test(experiment_id: IdPath, request: Request, services: ServicesDep) -> Response:
    return await _run(services, request, experiment_id)


async def _list(
    services: Services,
    experiment_id: str | None,
    test: str | None,
    sort: str,
    page: int,
    per_page: int,
    cursor: str | None,
) -> Response:
    request = page_request(page, per_page, cursor, sort)
    rows, total, has_more = await services.store.experiments.results(request, experiment_id, test)
    next_cursor = encode_cursor(sort, rows[-1].created_at, rows[-1].id) if rows else None
    paging = PageMeta(**meta(request, total, len(rows), has_more, next_cursor))
    return model_response(Page[StatisticalResult](data=[statistical_result(row) for row in rows], meta=paging))


TestFilter = Annotated[str | None, Query(alias="filter[test_type]", max_length=64)]
NewestFirst = Annotated[Literal["-created_at"], Query(description="The one order: newest first")]


@router.get(
    "/statistical-results",
    summary="Stored statistical results, newest first",
    description="Filters `filter[experiment_id]`, `filter[test_type]`; `page`/`per_page` or `cursor`.",
    response_model=Page[StatisticalResult],
    responses=api_errors(422),
)
async def list_results(
    services: ServicesDep,
    _: Annotated[None, only_filters("filter[experiment_id]", "filter[test_type]")],
    experiment_id: Annotated[str | None, Query(alias="filter[experiment_id]", max_length=64)] = None,
    test_type: TestFilter = None,
    sort: NewestFirst = "-created_at",
    page: PageNumber = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    return await _list(services, experiment_id, test_type, sort, page, per_page, cursor)


@router.get(
    "/experiments/{experiment_id}/statistical-results",
    summary="An experiment's stored statistical results, newest first",
    response_model=Page[StatisticalResult],
    responses=api_errors(404, 422),
)
async def list_experiment_results(
    experiment_id: IdPath,
    services: ServicesDep,
    _: Annotated[None, only_filters("filter[test_type]")],
    test_type: TestFilter = None,
    sort: NewestFirst = "-created_at",
    page: PageNumber = 1,
    per_page: PerPage = DEFAULT_PER_PAGE,
    cursor: Cursor = None,
) -> Response:
    await services.store.experiments.get(experiment_id)
    return await _list(services, experiment_id, test_type, sort, page, per_page, cursor)


@router.get(
    "/statistical-results/{result_id}",
    summary="One stored statistical result",
    response_model=Data[StatisticalResult],
    responses=api_errors(404, 422),
)
async def get_result(result_id: IdPath, services: ServicesDep) -> Response:
    result = statistical_result(await services.store.experiments.result(result_id))
    return model_response(Data[StatisticalResult](data=result))
