"""Run summaries and details as the layer-wise (L) routes return them, plus ingest acknowledgements."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.models.layerwise import Step


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    run_id: str


class BatchAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    accepted: int
    run_ids: list[str]


class RunSummary(BaseModel):
    """One entry of the `GET /api/v1/runs` map (seed 000) with PIVOT's additive fields."""

    created_at: str
    last_update: str
    step_count: int
    latest_step: int | None
    kind: Literal["external", "managed"] = "external"
    status: str = "running"
    experiment_id: str | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)
    latest: dict[str, float] = Field(default_factory=dict)
    """Last value of each scalar series (the point with the highest step), e.g. {"train_loss": 0.31}."""


class RunEvent(BaseModel):
    """Something that happened to a run and must be surfaced, e.g. a rejected non-finite payload."""

    timestamp: str
    kind: str
    step: int | None = None
    field: str | None = None
    message: str


class RunDetail(RunSummary):
    """`GET /api/v1/runs/{id}`: seed 000's `created_at`, `last_update`, `steps` plus run fields."""

    run_id: str
    steps: list[Step] | None = None
    scalar_names: list[str] = Field(default_factory=list)
    events: list[RunEvent] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
