"""`POST /api/v1/runs/{run_id}/finish`: a training script says how its run ended (layer-wise errors)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import RunIdPath, ServicesDep
from pivotd.api.responses import layerwise_errors, model_response
from pivotd.ingest import run_summary
from shared.models.runs import FinishedRun, RunEnd

router = APIRouter(prefix="/api/v1", tags=["layer-wise metrics"])


@router.post(
    "/runs/{run_id}/finish",
    response_model=FinishedRun,
    summary="End a script's run: succeeded, failed (with the error) or cancelled",
    description="For external runs (the SDK calls it in `finish()`/`close()` and at interpreter exit). Creates the "
    "run if the script ended before sending anything. The same end again changes nothing; 409 for a managed run "
    "(pivotd's trainer owns its state) or a run that already ended otherwise. Answers the run as it now stands.",
    openapi_extra=openapi_body("RunEnd", RunEnd, "How the run ended"),
    responses=layerwise_errors(401, 409, 413, 415, 422, 503, 507),
)
async def finish_run(run_id: RunIdPath, request: Request, services: ServicesDep) -> Response:
    end = await read_model(request, RunEnd, services.settings.max_body_bytes)
    run = await services.run_ends.finish(run_id, end)
    return model_response(FinishedRun.model_validate({"run_id": run.run_id, **run_summary(run)}))
