"""Jobs: people's own commands as runs of kind `job`, queued and run by the supervisor like the trainer's runs.

Submitting one runs code as the daemon's user: only the owner or a key with the `jobs` scope gets here
(`pivotd.policy`), and `jobs_enabled = false` refuses every submission. What only the daemon's machine can
answer (does `cwd` exist, are there that many GPUs) is checked here, as a 422 naming the field.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pivotd.errors import Conflict, Forbidden, NotFound, invalid_field
from pivotd.ids import new_id
from pivotd.jobs.supervisor import Supervisor
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.training import ACTIVE_STATES, JobRow, QueueJob, TrainingReader
from pivotd.timefmt import iso
from shared.models.jobs import JobInfo, JobSpec


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else iso(stamp)


class Jobs:
    def __init__(self, settings: Settings, store: Store, supervisor: Supervisor) -> None:
        self._settings = settings
        self._store = store
        self._supervisor = supervisor
        self.reader: TrainingReader = supervisor.reader

    async def submit(self, spec: JobSpec) -> JobRow:
        """Queue the command (and start it if a slot and its GPUs are free)."""
        if not self._settings.jobs_enabled:
            raise Forbidden("jobs are disabled on this daemon (jobs_enabled = false)")
        if not await asyncio.to_thread(Path(spec.cwd).is_dir):
            raise invalid_field("job.cwd", f"{spec.cwd!r} is not a directory on the daemon's machine")
        visible = len(await asyncio.to_thread(self._supervisor.gpus.inventory))
        # Under torchrun each process of a node wants a GPU of its own (NCCL refuses two ranks on one).
        gpus = spec.gpus if spec.gpus is not None else min(visible, spec.nproc_per_node)
        if gpus > visible:
            raise invalid_field("job.gpus", f"asks for {gpus} GPU(s); NVML lists {visible} that pivotd may use")
        config: dict[str, Any] = {
            "command": spec.command,
            "cwd": spec.cwd,
            "env": spec.env,
            "gpus": gpus,
            "nproc_per_node": spec.nproc_per_node,
            "rendezvous": None if spec.rendezvous is None else spec.rendezvous.model_dump(),
            "max_runtime_s": spec.max_runtime_s,
            "retries": spec.retries,
        }
        run_id = new_id("r")
        await self._store.writer.submit(
            QueueJob(run_id, config, spec.priority, spec.name, spec.tags, spec.experiment_id, spec.group)
        )
        await self._supervisor.dispatch()
        return await self.get(run_id)

    async def get(self, run_id: str) -> JobRow:
        job = await self.reader.job(run_id)
        if job is None or job.kind != "job":
            raise NotFound(f"job {run_id!r} not found")
        return job

    async def cancel(self, run_id: str) -> JobRow:
        """Stop a queued or running job; a running one's process group gets SIGTERM, then SIGKILL after
        `cancel_grace_s`. Answers once it ended (or the grace and a little more passed)."""
        job = await self.get(run_id)
        if job.status not in ACTIVE_STATES:
            raise Conflict(f"job {run_id!r} is {job.status}; only queued or running jobs can be cancelled")
        await self._supervisor.cancel(run_id, wait=True)
        return await self.get(run_id)

    async def queue(self) -> tuple[list[JobRow], list[JobRow]]:
        return await self.reader.queue()

    async def position(self, job: JobRow) -> int | None:
        return await self.reader.queue_position(job)

    async def run_fields(self, run_id: str) -> dict[str, Any]:
        """What `GET /api/v1/runs/{id}` adds for a job."""
        job = await self.get(run_id)
        config = job.config
        info = JobInfo(
            command=config["command"],
            cwd=config["cwd"],
            env=sorted(config.get("env") or {}),
            gpus_requested=int(config["gpus"]),
            nproc_per_node=int(config.get("nproc_per_node", 1)),
            rendezvous=config.get("rendezvous"),
            priority=job.priority,
            max_runtime_s=config.get("max_runtime_s"),
            retries=int(config.get("retries", 0)),
            attempts=job.attempts,
            queued_at=_iso(job.queued_at),
            started_at=_iso(job.started_at),
            finished_at=_iso(job.finished_at),
        )
        return {
            "job": info.model_dump(mode="json"),
            "exit_code": job.exit_code,
            "gpus": job.gpus,
            "error": job.error,
        }
