"""Resource monitoring: the latest sample and the sample history."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, json_response, raw_json_response
from shared.models.monitor import RecentResources, ResourceSample, StoredResources

router = APIRouter(prefix="/api/v1/monitor", tags=["monitoring"])


@router.get(
    "/resources",
    summary="The latest resource sample: CPU, memory, swap, disk, load, GPUs",
    response_model=ResourceSample,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 429),
)
async def resources(services: ServicesDep) -> Response:
    sample = services.monitor.latest or await services.monitor.sample_now()
    # Checked against the model, sent as sampled: a counter the machine could not read stays absent, not null.
    ResourceSample.model_validate(sample)
    return json_response(sample)


@router.get(
    "/resources/history",
    summary="Resource history: stored averages (default) or the recent full-resolution samples",
    description="`resolution=stored`: one averaged point per `resource_history_step_s`, kept for "
    "`resource_history_hours`. `resolution=recent`: the in-memory ring buffer of raw samples.",
    response_model=RecentResources | StoredResources,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 422, 429),
)
async def history(
    services: ServicesDep,
    resolution: Literal["stored", "recent"] = "stored",
    since: Annotated[float | None, Query(description="Unix seconds", ge=0, allow_inf_nan=False)] = None,
    until: Annotated[float | None, Query(description="Unix seconds", ge=0, allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1440,
) -> Response:
    lo = since if since is not None else 0.0
    hi = until if until is not None else time.time() + 1
    settings = services.settings
    if resolution == "recent":
        samples = [s for s in services.monitor.recent if lo <= s["time"] <= hi][-limit:]
        body = {"resolution": "recent", "step_seconds": settings.sample_interval_s, "samples": samples}
        RecentResources.model_validate(body)  # sent as sampled, like /resources
        return json_response(body)
    rows = await services.store.monitoring.resource_history(lo, hi, limit)  # StoredResources, spliced unparsed
    head = f'{{"resolution":"stored","step_seconds":{settings.resource_history_step_s},"samples":['.encode()
    return raw_json_response(head + b",".join(rows) + b"]}")
