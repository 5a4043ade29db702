"""Run summaries and details as the layer-wise (L) routes return them, plus ingest acknowledgements."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.models.jobs import JobInfo
from shared.models.layerwise import LiteStep, Step


class RunState(StrEnum):
    """A run's state, one vocabulary for every route and message that shows it in pivotd's own words."""

    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    """An external run that sent nothing for `run_lost_after_s`: its script died without a word."""


FINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.LOST})
"""States a run ends in. A managed run never leaves one; new data takes an external run back to `running`."""
LIVE_STATES = frozenset({RunState.CREATED, RunState.QUEUED, RunState.RUNNING})
"""States a run has not ended in (a managed run in one of them can be cancelled)."""
EndStatus = Literal["succeeded", "failed", "cancelled"]
"""How a script may say its run ended (`lost` is pivotd's to decide)."""
MAX_ERROR_CHARS = 4096
RunKind = Literal["external", "managed", "job"]
"""`external`: a script's run, created by its data; `managed`: pivotd's trainer; `job`: a command pivotd runs."""
SUPERVISED_KINDS = ("managed", "job")
"""Kinds whose state pivotd's supervisor decides (queue, process, exit), not their scripts."""


Word = TypeVar("Word", bound=StrEnum)


def states_shown_as(words: Mapping[RunState, Word], vocabulary: type[Word]) -> Mapping[Word, tuple[RunState, ...]]:
    """The inverse of a family's mapping from run states to its words: the states each word stands for (what that
    family's status filters select)."""
    return MappingProxyType(
        {word: tuple(state for state, shown in words.items() if shown is word) for word in vocabulary}
    )


class RunEnd(BaseModel):
    """How a script's run ended: the body of `POST /api/v1/runs/{run_id}/finish`."""

    model_config = ConfigDict(extra="forbid")

    status: EndStatus
    error: str | None = Field(
        None, max_length=MAX_ERROR_CHARS, description="Why it failed or was cancelled, e.g. the exception's last line"
    )

    @model_validator(mode="after")
    def _error_only_when_unsuccessful(self) -> RunEnd:
        if self.error is not None and self.status == RunState.SUCCEEDED:
            raise ValueError("error: a succeeded run has no error; send status failed or cancelled with it")
        return self


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    run_id: str


class BatchAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    accepted: int
    run_ids: list[str]


class RunGpu(BaseModel):
    """A GPU a managed run's worker was pinned to."""

    index: int = Field(description="NVML's index of the GPU (a MIG instance's parent's): `id` in resource samples")
    uuid: str = Field(description="`GPU-...` or `MIG-...`: what the worker's CUDA_VISIBLE_DEVICES held")
    name: str


class RunSummary(BaseModel):
    """One entry of the `GET /api/v1/runs` map with PIVOT's additive fields."""

    created_at: str
    last_update: str
    step_count: int
    latest_step: int | None
    kind: RunKind = "external"
    status: RunState = RunState.RUNNING
    error: str | None = None
    """Why a run failed, was cancelled or was lost; null otherwise."""
    experiment_id: str | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    latest: dict[str, float] = Field(default_factory=dict)
    """Last value of each scalar series (the point with the highest step), e.g. {"train_loss": 0.31}."""


class FinishedRun(RunSummary):
    """The answer to `POST /api/v1/runs/{run_id}/finish`: the run as it now stands."""

    run_id: str


class RunEvent(BaseModel):
    """Something that happened to a run and must be surfaced, e.g. a rejected non-finite payload."""

    timestamp: str
    kind: str
    step: int | None = None
    field: str | None = None
    message: str


class _RunHead(RunSummary):
    run_id: str
    scalar_names: list[str] = Field(default_factory=list)
    events: list[RunEvent] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    gpus: list[RunGpu] | None = Field(
        default=None, description="A managed run's GPUs as of its last start ([]: none); absent for external runs"
    )
    epoch: int | None = None
    """A managed run's epochs done (absent for a script's run)."""
    epochs_total: int | None = None
    """The epochs a managed run was asked for."""
    job: JobInfo | None = Field(default=None, description="A job's command, request and timings; absent otherwise")
    exit_code: int | None = Field(
        default=None, description="A finished job's exit status (negative: the signal that killed it); absent otherwise"
    )


class RunDetail(_RunHead):
    """`GET /api/v1/runs/{id}`: the layer-wise protocol's `created_at`, `last_update`, `steps` plus run fields."""

    steps: list[Step] | None = None


class LiteRunDetail(_RunHead):
    """`GET /api/v1/runs/{id}?lite=true`: the same with compact layers."""

    steps: list[LiteStep] | None = None
