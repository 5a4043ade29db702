"""Jobs: people's own commands run by pivotd as managed runs (`/api/v1/jobs*`), on the built-in trainer's queue
and GPUs. The request is validated here once; what needs the daemon's machine (does `cwd` exist, are there that
many GPUs) is checked by the daemon."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationInfo, field_validator

MAX_ARGV = 4096
MAX_ARG_CHARS = 32_768
MAX_ENV = 256
MAX_PATH_CHARS = 4096
MAX_GPUS = 64
MAX_RUNTIME_S = 30 * 24 * 3600
MAX_RETRIES = 10
MAX_NODES = 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_ENV = frozenset({"PIVOT_URL", "PIVOT_RUN_ID", "PIVOT_TOKEN", "CUDA_VISIBLE_DEVICES"})
"""Set by pivotd for each job: a job may not choose its own run, credential or GPUs."""


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path (it is resolved on the daemon's machine, not relative to it)")
    return value


def _env_names(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name[:64]!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most 128 characters)")
        if name in RESERVED_ENV:
            raise ValueError(f"{name} is set by pivotd for each job")
    return env


Arg = Annotated[StrictStr, Field(max_length=MAX_ARG_CHARS), AfterValidator(_no_nul)]
Label = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]


class Rendezvous(BaseModel):
    """One node of a multi-node torchrun job: every node's job names the same `endpoint` (on the first node) and
    `id`; `pivotctl submit --nodes N --host A --host B` writes these."""

    model_config = ConfigDict(extra="forbid")

    nnodes: Annotated[StrictInt, Field(ge=2, le=MAX_NODES)]
    node_rank: Annotated[StrictInt, Field(ge=0, lt=MAX_NODES)]
    endpoint: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._\-\[\]:]{1,253}:[0-9]{1,5}$")] = Field(
        description="`host:port` of the c10d rendezvous, on the first node (its torchrun listens there)"
    )
    id: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = Field(
        description="The same on every node of one job (torchrun's `--rdzv-id`)"
    )

    @field_validator("node_rank")
    @classmethod
    def _within(cls, rank: int, info: ValidationInfo) -> int:
        nnodes = info.data.get("nnodes")
        if nnodes is not None and rank >= nnodes:
            raise ValueError(f"must be below nnodes ({nnodes})")
        return rank


class JobSpec(BaseModel):
    """What to run and what it needs."""

    model_config = ConfigDict(extra="forbid")

    command: Annotated[list[Arg], Field(min_length=1, max_length=MAX_ARGV)] = Field(
        description='An argv list, run without a shell (write `["bash", "-c", "..."]` for one)'
    )
    cwd: Annotated[
        StrictStr, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_no_nul), AfterValidator(_absolute)
    ] = Field(description="Absolute path of an existing directory on the daemon's machine")
    env: Annotated[
        dict[StrictStr, Annotated[StrictStr, Field(max_length=MAX_ARG_CHARS), AfterValidator(_no_nul)]],
        Field(max_length=MAX_ENV),
        AfterValidator(_env_names),
    ] = Field(default_factory=dict, description="Added to the daemon's environment (PIVOT_* and CUDA_* are pivotd's)")
    name: Label | None = None
    gpus: Annotated[StrictInt, Field(ge=0, le=MAX_GPUS)] | None = Field(
        default=None,
        description="Whole GPUs, given through CUDA_VISIBLE_DEVICES; default one per process (`nproc_per_node`) "
        "where GPUs exist, as many as there are, else 0",
    )
    nproc_per_node: Annotated[StrictInt, Field(ge=1, le=MAX_GPUS)] = Field(
        default=1, description="Processes per node; more than 1 runs the command under `torchrun --standalone`"
    )
    rendezvous: Rendezvous | None = Field(
        default=None, description="One node of a multi-node job: runs the command under torchrun's c10d rendezvous"
    )
    tags: Annotated[list[Label], Field(max_length=32)] = Field(default_factory=list)
    experiment_id: Label | None = None
    group: Label | None = None
    priority: Annotated[StrictInt, Field(ge=-100, le=100)] = Field(
        default=0, description="Higher starts first; equal priorities start in submission order"
    )
    max_runtime_s: Annotated[float, Field(gt=0, le=MAX_RUNTIME_S)] | None = Field(
        default=None, description="Past this, the job is stopped as a cancel would and fails"
    )
    retries: Annotated[StrictInt, Field(ge=0, le=MAX_RETRIES)] = Field(
        default=0, description="Times a failed or interrupted job is queued again (never a cancelled one)"
    )


class JobSubmit(BaseModel):
    """The body of `POST /api/v1/jobs`."""

    model_config = ConfigDict(extra="forbid")
    job: JobSpec


JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobInfo(BaseModel):
    """A job as `GET /api/v1/runs/{run_id}` shows it (`job`)."""

    command: list[str]
    cwd: str
    env: list[str] = Field(description="The names of the variables it set (their values are not shown)")
    gpus_requested: int
    nproc_per_node: int
    rendezvous: Rendezvous | None = Field(default=None, description="Set on each node's job of a multi-node job")
    priority: int
    max_runtime_s: float | None
    retries: int
    attempts: int = Field(description="How many times it has started")
    queued_at: str | None = Field(description="ISO 8601 UTC")
    started_at: str | None
    finished_at: str | None


class QueueEntry(BaseModel):
    """One queued or running run of `GET /api/v1/jobs`: jobs and the built-in trainer's runs share the queue."""

    run_id: str
    kind: Literal["managed", "job"]
    status: Literal["queued", "running"]
    name: str | None
    command: list[str] | None = Field(description="A job's argv; null for a built-in training run")
    position: int | None = Field(description="1 = starts next; null while running")
    priority: int
    gpus_requested: int | None = Field(description="A job's request; null for a built-in run (its `device` decides)")
    gpus: list[dict[str, int | str]] = Field(description="The GPUs it runs on (`{index, uuid, name}`)")
    queued_at: str | None
    started_at: str | None


class QueueCounts(BaseModel):
    running: int
    queued: int
    slots: int


class JobQueue(BaseModel):
    data: list[QueueEntry]
    meta: QueueCounts


class JobAccepted(BaseModel):
    """The answer to `POST /api/v1/jobs` (202): the run it became."""

    run_id: str
    status: JobStatus
    kind: Literal["job"] = "job"
    position: int | None = Field(description="Its place in the queue (1 = next); null once it runs")
    gpus_requested: int
