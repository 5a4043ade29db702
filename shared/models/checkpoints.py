"""Checkpoints: the files a trainer wrote or someone uploaded, as the checkpoint routes and a run's show them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models.timestamps import Timestamp

CheckpointSource = Literal["trainer", "upload"]


class CheckpointPublic(BaseModel):
    """One checkpoint, as `GET /api/v1/checkpoints` lists it."""

    checkpoint_id: str
    session_id: str = Field(description="The run it belongs to")
    epoch: int | None
    metric_name: str | None = Field(description="The selection metric, when the checkpoint recorded it")
    metric_value: float | None
    metrics: dict[str, Any]
    file_size_mb: float
    size_bytes: int = Field(ge=0)
    file_path: str = Field(description="Where the file is on the daemon's machine")
    is_best: bool
    source: CheckpointSource
    created_at: Timestamp


class CheckpointList(BaseModel):
    checkpoints: list[CheckpointPublic]


class CheckpointUploaded(BaseModel):
    """`POST /api/v1/checkpoints`: the file was stored and loads with `torch.load(weights_only=True)`."""

    checkpoint_id: str
    file_size_mb: float
    size_bytes: int = Field(ge=0)
    uploaded_at: Timestamp


class CheckpointDeleted(BaseModel):
    message: str
    checkpoint_id: str


class RunCheckpoint(BaseModel):
    """One of a run's checkpoints (`GET /api/v1/runs/{id}/checkpoints`).

    Besides these fields, each recorded metric appears under its own name (`"val_accuracy": 0.88`); a metric
    named like one of these fields is only in `metrics`.
    """

    model_config = ConfigDict(extra="allow")

    id: str
    epoch: int | None
    path: str = Field(description="Where the file is on the daemon's machine")
    checkpoint_id: str
    run_id: str
    metric_name: str | None
    metric_value: float | None
    metrics: dict[str, Any]
    size_bytes: int = Field(ge=0)
    is_best: bool
    source: CheckpointSource
    created_at: Timestamp


class RunCheckpointsMeta(BaseModel):
    run_id: str
    total: int = Field(ge=0)


class RunCheckpoints(BaseModel):
    data: list[RunCheckpoint]
    meta: RunCheckpointsMeta
