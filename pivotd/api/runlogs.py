"""`GET /api/v1/runs/{id}/logs` (seed 004's shape, `{"data", "meta"}`): a managed run's worker output with levels."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from pivotd.api.deps import ServicesDep
from pivotd.api.responses import json_response
from pivotd.errors import NotFound
from pivotd.timefmt import iso

router = APIRouter(prefix="/api/v1", tags=["runs"])
LEVELS = ("debug", "info", "warning", "error", "critical")


@router.get("/runs/{run_id}/logs", summary="A managed run's log lines (worker stdout/stderr), oldest first")
async def run_logs(
    run_id: Annotated[str, Path(max_length=128)],
    services: ServicesDep,
    level: Annotated[str | None, Query(pattern="^(debug|info|warning|error|critical)$")] = None,
    since: Annotated[float | None, Query(description="Unix time; lines after it")] = None,
    tail: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Response:
    run = await services.training.reader.job(run_id)
    if run is None:
        raise NotFound(f"managed run {run_id!r} not found")
    lines = await services.training.reader.logs(run.ref, limit=5000 if level or since else tail)
    if level is not None:
        lines = [line for line in lines if LEVELS.index(line.level) >= LEVELS.index(level)]
    if since is not None:
        lines = [line for line in lines if line.timestamp > since]
    lines = lines[-tail:]
    data = [{"timestamp": iso(line.timestamp), "level": line.level, "message": line.message} for line in lines]
    return json_response({"data": data, "meta": {"run_id": run_id, "count": len(data)}})
