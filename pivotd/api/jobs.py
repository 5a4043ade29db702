"""Jobs: any command as a managed run (`/api/v1/jobs*`, errors in the `{"error": ...}` envelope). Submitting and
cancelling need the `jobs` scope (`pivotd.policy`); the queue is readable with `read`. A job's run is also
`GET /api/v1/runs/{id}` (kind `job`) and its output `GET /api/v1/runs/{id}/logs`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, WRITES, error_responses, model_response
from pivotd.store import JobRow
from pivotd.timefmt import iso
from shared.models.envelopes import Data
from shared.models.jobs import JobAccepted, JobQueue, JobSubmit, QueueCounts, QueueEntry

router = APIRouter(prefix="/api/v1/jobs", tags=["Jobs"])
RunIdPath = Annotated[str, Path(max_length=128)]


def _entry(job: JobRow, position: int | None) -> QueueEntry:
    return QueueEntry(
        run_id=job.run_id,
        kind="job" if job.kind == "job" else "managed",
        status="queued" if position is not None else "running",
        name=job.name,
        command=job.config.get("command") if job.kind == "job" else None,
        position=position,
        priority=job.priority,
        gpus_requested=job.gpus_requested,
        gpus=job.gpus,
        queued_at=None if job.queued_at is None else iso(job.queued_at),
        started_at=None if job.started_at is None or position is not None else iso(job.started_at),
    )


async def _accepted(services: ServicesDep, job: JobRow) -> JobAccepted:
    return JobAccepted(
        run_id=job.run_id,
        status=job.status,  # type: ignore[arg-type]  # a job's states are JobStatus's
        position=await services.jobs.position(job),
        gpus_requested=job.gpus_requested or 0,
    )


@router.post(
    "",
    status_code=202,
    response_model=Data[JobAccepted],
    summary="Queue a command as a managed run (a job)",
    description="`command` is an argv list run without a shell in `cwd` (absolute, existing), with `env` added, "
    "`PIVOT_URL`, `PIVOT_RUN_ID` and a run token in `PIVOT_TOKEN`, and `gpus` GPUs in `CUDA_VISIBLE_DEVICES`. "
    "Needs the `jobs` scope; 403 when `jobs_enabled` is false.",
    openapi_extra=openapi_body("JobSubmit", JobSubmit, '{"job": {"command": [...], "cwd": "/abs/dir", ...}}'),
    responses=error_responses(STRUCTURED_ERRORS, 400, 403, 413, 415, 422, *WRITES),
)
async def submit_job(request: Request, services: ServicesDep) -> Response:
    spec = (await read_model(request, JobSubmit, services.settings.max_body_bytes)).job
    job = await services.jobs.submit(spec)
    return model_response(Data(data=await _accepted(services, job)), 202, exclude_unset=True)


@router.get(
    "",
    response_model=JobQueue,
    summary="The queue: running runs, then queued ones in the order they start (jobs and built-in training runs)",
)
async def list_jobs(services: ServicesDep) -> Response:
    running, queued = await services.jobs.queue()
    entries = [_entry(job, None) for job in running] + [_entry(job, n) for n, job in enumerate(queued, 1)]
    counts = QueueCounts(running=len(running), queued=len(queued), slots=services.supervisor.slots)
    return model_response(JobQueue(data=entries, meta=counts))


@router.post(
    "/{run_id}/cancel",
    response_model=Data[JobAccepted],
    summary="Cancel a job: SIGTERM to its process group, SIGKILL after cancel_grace_s; answers once it ended",
    responses=error_responses(STRUCTURED_ERRORS, 404, 409, *WRITES),
)
async def cancel_job(run_id: RunIdPath, services: ServicesDep) -> Response:
    job = await services.jobs.cancel(run_id)
    return model_response(Data(data=await _accepted(services, job)), exclude_unset=True)
