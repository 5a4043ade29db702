"""Training sessions (`/api/v1/training/sessions...`): training sessions, their metrics and live messages.

A session is a managed run (`session_id` = run id); its `status` is `SessionStatus`, mapped from the run's
`RunState` by `shared.models.training.SESSION_STATUS`. Timestamps are ISO 8601 strings, as the session routes send them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models.training import SessionStatus


class _Indexable(BaseModel):
    """Session clients read answers as dicts (`session['session_id']`, `metrics['val_loss']`): these
    models answer `[name]`, `in` and `.get` for each field (and extra field) too, `KeyError` for anything else."""

    def __getitem__(self, name: str) -> Any:
        if name in self:
            return getattr(self, name)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in type(self).model_fields or (self.model_extra is not None and name in self.model_extra)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self else default


class SessionConfig(_Indexable):
    """The flat fields first, then the whole stored definition (`architecture` or `model_id`,
    `hyperparams`, ...) as it was given."""

    model_config = ConfigDict(extra="allow")

    epochs: int | None
    batch_size: int | None
    learning_rate: float | None


class SessionCreated(_Indexable):
    """`201` of `POST /api/v1/training/sessions`."""

    session_id: str
    session_name: str | None
    status: SessionStatus
    created_at: str
    config: SessionConfig
    tags: list[str]


class SessionStarted(_Indexable):
    session_id: str
    status: SessionStatus
    started_at: str | None = Field(description="When it started running, else when it was queued")


class SessionStopped(_Indexable):
    session_id: str
    status: SessionStatus
    stopped_at: str | None


class SessionSummary(_Indexable):
    """One entry of `GET /api/v1/training/sessions`."""

    session_id: str
    session_name: str | None
    status: SessionStatus
    created_at: str
    current_epoch: int
    total_epochs: int
    tags: list[str]


class SessionPublic(_Indexable):
    """`GET /api/v1/training/sessions/{session_id}`: status, progress and the latest epoch's metrics."""

    session_id: str
    session_name: str | None
    status: SessionStatus
    config: SessionConfig
    created_at: str
    started_at: str | None
    completed_at: str | None = Field(description="When it ended, however it ended")
    current_epoch: int
    total_epochs: int
    progress: float = Field(ge=0, le=1, description="current_epoch / total_epochs, 4 decimals")
    latest_metrics: dict[str, float | None] = Field(
        description="The last finished epoch's train_loss, train_accuracy, val_loss, val_accuracy, learning_rate"
    )
    tags: list[str]
    model_id: str | None
    error: str | None = Field(description="Why it failed or was stopped; null otherwise")


class SessionList(_Indexable):
    sessions: list[SessionSummary]
    total: int
    limit: int
    offset: int


class EpochRecord(_Indexable):
    """One finished epoch (a session's Metrics): `epoch`, `timestamp` and one field per metric
    (`train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`, `learning_rate`, or others the run logged)."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    timestamp: str | None


class SessionMetrics(_Indexable):
    session_id: str
    metrics: list[EpochRecord]


class MetricHistory(_Indexable):
    """`GET /api/v1/metrics/{session_id}/history`: one metric's values, index-aligned with epochs and timestamps."""

    metric_name: str
    values: list[float | None]
    epochs: list[int]
    timestamps: list[str | None]


class SessionMetricsMessage(EpochRecord):
    """A finished epoch, live: SSE `event: metrics`; on the WebSocket, with `"type": "metrics"`.
    `loss` repeats `train_loss`, as session messages call it."""

    session_id: str
    loss: float | None
    type: Literal["metrics"] | None = Field(default=None, description="WebSocket messages only")


class SessionStatusMessage(_Indexable):
    """A status change, live: SSE `event: status`; on the WebSocket, with `"type": "status"`. The streams end
    after a final status (`stopped`, `completed`, `failed`)."""

    session_id: str
    status: SessionStatus
    error: str | None
    type: Literal["status"] | None = Field(default=None, description="WebSocket messages only")


SESSION_STREAM_EVENTS: dict[str, type[BaseModel]] = {"metrics": SessionMetricsMessage, "status": SessionStatusMessage}
"""A session's SSE events by name (`GET /api/v1/sse/training/{session_id}`); the WebSocket sends the same models
with `type` set to the name."""
