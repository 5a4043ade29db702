"""The messages of a managed run's event stream (`GET /api/runs/{run_id}/events`, Server-Sent Events).

Each frame is `event: <name>` and `data: <one JSON object>`; `STREAM_EVENTS` maps each name to its model, which
the OpenAPI document names per event and the daemon builds its frames from.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.models.runs import RunState


class RunStateEvent(BaseModel):
    """`event: state`: the run's state, once per change; the stream ends after a final one."""

    run_id: str
    state: RunState
    error: str | None = Field(default=None, description="Only when the run failed")


class RunMetricEvent(BaseModel):
    """`event: metric`: one finished epoch, once each (history first): `epoch`, and one field per epoch metric
    (`train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`, `learning_rate`) the run logged."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    epoch: int
    step: int | None = Field(default=None, description="Only in live frames: the step the epoch ended on")
    timestamp: float | str | None = Field(description="When it was logged, as the script sent it")


RUN_STREAM_EVENTS: dict[str, type[BaseModel]] = {"state": RunStateEvent, "metric": RunMetricEvent}
