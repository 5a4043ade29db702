"""A run's sub-resources in the `{"data", "meta"}` shape: its log lines and its checkpoints."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import Field

from pivotd.api.checkpoints import FILE
from pivotd.api.deps import RunIdPath, ServicesDep
from pivotd.api.query import Instant
from pivotd.api.responses import api_errors, model_response
from pivotd.errors import NotFound, invalid_field
from pivotd.settings import Settings
from pivotd.store import CheckpointRow
from pivotd.timefmt import iso
from shared.models.checkpoints import RunCheckpoint, RunCheckpoints, RunCheckpointsMeta
from shared.models.logs import LogLevel, RunLogLine, RunLogs, RunLogsMeta

router = APIRouter(prefix="/api/v1", tags=["runs"])


UnixSeconds = Annotated[str, Field(max_length=64, pattern=r"^[+-]?[0-9]+(\.[0-9]*)?$")]


def parse_since(value: str) -> float:
    """An ISO 8601 datetime (no offset: UTC), or finite Unix seconds."""
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):  # nan compares false with every line: an empty answer, not an error
            raise invalid_field("since", f"{value!r} is not a finite number of seconds")
        return seconds
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        message = f"{value!r} is neither an ISO 8601 datetime nor Unix seconds"
        raise invalid_field("since", message) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@router.get(
    "/runs/{run_id}/logs",
    summary="A run's log lines (a managed run's worker stdout/stderr; an external run has none), oldest first",
    response_model=RunLogs,
    responses=api_errors(404, 422),
)
async def run_logs(
    run_id: RunIdPath,
    services: ServicesDep,
    level: Annotated[LogLevel | None, Query(description="This level and worse")] = None,
    since: Annotated[
        Instant | UnixSeconds | None, Query(description="ISO 8601 datetime or Unix seconds; lines after it")
    ] = None,
    tail: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Response:
    after = None if since is None else parse_since(since)
    ref = await _run_ref(services, run_id)
    lines = await services.training.reader.logs(ref, limit=5000 if level or after is not None else tail)
    if level is not None:
        lines = [line for line in lines if LogLevel(line.level).severity >= level.severity]
    if after is not None:
        lines = [line for line in lines if line.timestamp > after]
    data = [RunLogLine(timestamp=iso(line.timestamp), level=line.level, message=line.message) for line in lines[-tail:]]
    return model_response(RunLogs(data=data, meta=RunLogsMeta(run_id=run_id, count=len(data))))


def run_checkpoint(row: CheckpointRow, settings: Settings) -> RunCheckpoint:
    """`{id, epoch, <metric>: value, path}` plus the fields of the checkpoint routes; a metric named like one of
    those fields stays in `metrics` only."""
    view: dict[str, Any] = {k: v for k, v in row.metrics.items() if k not in RunCheckpoint.model_fields}
    if (
        row.metric_name is not None
        and row.metric_value is not None
        and row.metric_name not in RunCheckpoint.model_fields
    ):
        view[row.metric_name] = row.metric_value
    return RunCheckpoint.model_validate({
        **view,
        "id": row.checkpoint_id,
        "epoch": row.epoch,
        "path": str(settings.artifact_path(row.path)),
        "checkpoint_id": row.checkpoint_id,
        "run_id": row.run_id,
        "metric_name": row.metric_name,
        "metric_value": row.metric_value,
        "metrics": row.metrics,
        "size_bytes": row.size_bytes,
        "is_best": row.is_best,
        "source": row.source,
        "created_at": iso(row.created_at),
    })  # fmt: skip


async def _run_ref(services: Any, run_id: str) -> int:
    """The run's row id, whether managed or external; 404 only for a run that does not exist."""
    found = await services.store.experiments.runs_by_id([run_id])
    if not found:
        raise NotFound(f"run {run_id!r} not found")
    return found[run_id].ref


@router.get(
    "/runs/{run_id}/checkpoints",
    summary="A run's checkpoints (trainer-written and uploaded), oldest first",
    response_model=RunCheckpoints,
    responses=api_errors(404, 422),
)
async def run_checkpoints(run_id: RunIdPath, services: ServicesDep) -> Response:
    await _run_ref(services, run_id)
    rows = await services.training.reader.checkpoints(run_id, limit=10_000)
    data = [run_checkpoint(row, services.settings) for row in rows]
    return model_response(RunCheckpoints(data=data, meta=RunCheckpointsMeta(run_id=run_id, total=len(rows))))


@router.get(
    "/runs/{run_id}/checkpoints/{checkpoint_id}/download",
    summary="One of the run's checkpoint files, streamed",
    response_class=FileResponse,
    responses={200: FILE, **api_errors(404, 422)},
)
async def download_run_checkpoint(
    run_id: RunIdPath, checkpoint_id: Annotated[str, Path(min_length=1, max_length=128)], services: ServicesDep
) -> Response:
    row = await services.training.reader.checkpoint(checkpoint_id)
    if row is None or row.run_id != run_id:  # another run's checkpoint is not this run's sub-resource
        raise NotFound(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    path = services.settings.artifact_path(row.path)
    if not path.is_file():
        raise NotFound(f"the file of checkpoint {checkpoint_id!r} is gone from disk")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{checkpoint_id}.pth")
