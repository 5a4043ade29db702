"""`POST /api/v1/runs/{run_id}/finish`: a training script says how its run ended (family L's errors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import LAYERWISE_ERRORS, error_responses, json_response
from pivotd.errors import invalid_field
from pivotd.ingest import run_summary
from shared.models.layerwise import RUN_ID_PATTERN, is_valid_run_id
from shared.models.runs import FinishedRun, RunEnd

router = APIRouter(prefix="/api/v1", tags=["layer-wise metrics (seed 000)"])


@router.post(
    "/runs/{run_id}/finish",
    response_model=FinishedRun,
    summary="End a script's run: succeeded, failed (with the error) or cancelled",
    description="For external runs (the SDK calls it in `finish()`/`close()` and at interpreter exit). Creates the "
    "run if the script ended before sending anything. The same end again changes nothing; 409 for a managed run "
    "(pivotd's trainer owns its state) or a run that already ended otherwise. Answers the run as it now stands.",
    openapi_extra=openapi_body("RunEnd", RunEnd, "How the run ended"),
    responses=error_responses(LAYERWISE_ERRORS, 400, 401, 409, 413, 415, 422, 503),
)
async def finish_run(run_id: Annotated[str, Path(max_length=128)], request: Request, services: ServicesDep) -> Response:
    if not is_valid_run_id(run_id):
        raise invalid_field("run_id", f"must match {RUN_ID_PATTERN} and be 1..128 characters")
    end = await read_model(request, RunEnd, services.settings.max_body_bytes)
    run = await services.run_ends.finish(run_id, end)
    return json_response({"run_id": run.run_id, **run_summary(run)})
