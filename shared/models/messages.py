"""What the daemon sends on the WebSocket `/ws`: one model per message `type`, and `WsMessage`, their union.

OpenAPI cannot describe a WebSocket, so docs/api.md lists the messages and this module types them; a client
parses a frame with `WS_MESSAGE.validate_json(frame)`, and `WS_MESSAGE.json_schema()` is their JSON schema. A
message carries `topic` when a topic subscription delivered it (answers to the client's own actions do not).
Models are closed (`extra="forbid"`) at the message level, so a field the daemon adds without saying so fails
the test that parses what it sends (tests/test_ws.py). The training-session socket's messages are
`shared.models.sessions.SessionMetricsMessage` and `SessionStatusMessage`; the Phoenix socket's are its
channels' events (docs/api.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.models.alerts import AlertPublic, NotificationPublic
from shared.models.experiments import ExperimentRunStatus, ExperimentStatus
from shared.models.layerwise import LiteStep, Step
from shared.models.monitor import ResourceSample
from shared.models.runs import RunEvent, RunState, RunSummary
from shared.models.scalars import ScalarPoint
from shared.models.telemetry import TelemetryEvent


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- answers to the client's actions, and the connection's own -------------------------------------------------


class InitialRuns(_Message):
    """On connect: every run, as `GET /api/v1/runs` maps them."""

    type: Literal["initial_runs"]
    data: dict[str, RunSummary]


class RunHistoryData(BaseModel):
    created_at: str
    last_update: str
    steps: list[Step] | list[LiteStep] = Field(description="Compact layers when asked with `lite: true`")


class RunHistory(_Message):
    """The answer to `subscribe_run`."""

    type: Literal["run_history"]
    run_id: str
    data: RunHistoryData


class Pong(_Message):
    """The answer to `ping`."""

    type: Literal["pong"]


class SocketError(_Message):
    """A client message the daemon could not act on; the connection stays open."""

    type: Literal["error"]
    message: str


class TopicsChanged(_Message):
    """The answer to `subscribe` / `unsubscribe`: every topic the connection now follows."""

    type: Literal["subscribed", "unsubscribed"]
    topics: list[str]


class Lagged(_Message):
    """Before the next message a slow client receives: how many it lost."""

    type: Literal["lagged"]
    dropped: int = Field(ge=1)


# ---- runs ----------------------------------------------------------------------------------------------------


class NewMetrics(_Message):
    """`metrics`, `run:<id>`: a layer-wise step was committed."""

    type: Literal["new_metrics"]
    run_id: str
    data: Step


class RunChanged(_Message):
    """`runs`: a write created or changed a run."""

    type: Literal["run_created", "run_updated"]
    topic: str
    run_id: str
    data: RunSummary


class RunDeleted(_Message):
    """`runs`, `run:<id>`: a run was deleted, or retention removed it."""

    type: Literal["run_deleted"]
    topic: str
    run_id: str
    reason: Literal["deleted", "retention"]


class RunStateChanged(_Message):
    """`runs`, `run:<id>`: a run's state changed."""

    type: Literal["run_state"]
    topic: str
    run_id: str
    state: RunState
    error: str | None


class Scalars(_Message):
    """`run:<id>`: scalar points were committed."""

    type: Literal["scalars"]
    topic: str
    run_id: str
    points: list[ScalarPoint]


class RunEventMessage(_Message):
    """`run:<id>`: something to surface, e.g. a payload refused as non-finite."""

    type: Literal["run_event"]
    topic: str
    run_id: str
    data: RunEvent


class RunProgress(_Message):
    """`run:<id>`: a managed run finished an epoch."""

    type: Literal["run_progress"]
    topic: str
    run_id: str
    epoch: int
    metrics: dict[str, float | None]


class RunLog(_Message):
    """`run:<id>`: a managed run's worker wrote a line."""

    type: Literal["log"]
    topic: str
    run_id: str
    timestamp: float = Field(description="Unix seconds")
    level: str
    message: str


# ---- monitoring, alerts, notifications, telemetry -------------------------------------------------------------


class Resources(_Message):
    """`resources`: a resource sample."""

    type: Literal["resources"]
    topic: str
    data: ResourceSample


class AlertMessage(_Message):
    """`alerts`: an alert fired, was acknowledged, had its rule's action run, or cleared."""

    type: Literal["alert_triggered", "alert_acknowledged", "alert_updated", "alert_resolved"]
    topic: str
    data: AlertPublic


class NotificationMessage(_Message):
    """`notifications`: a notification was created."""

    type: Literal["notification"]
    topic: str
    data: NotificationPublic


class TelemetryEventMessage(_Message):
    """`telemetry`: an event was stored."""

    type: Literal["telemetry_event"]
    topic: str
    event: TelemetryEvent


# ---- experiments ---------------------------------------------------------------------------------------------


class ExperimentStatusChanged(_Message):
    """`experiment:<id>`: the experiment's derived status changed."""

    type: Literal["experiment_status"]
    topic: str
    experiment_id: str
    status: ExperimentStatus
    started_at: str | None
    completed_at: str | None


class ExperimentProgress(_Message):
    """`experiment:<id>`: runs finished / runs, and epochs done / epochs declared."""

    type: Literal["experiment_progress"]
    topic: str
    experiment_id: str
    progress: float = Field(ge=0, le=1)
    epoch_progress: float | None
    eta_seconds: float | None


class ExperimentRunCompleted(_Message):
    """`experiment:<id>`: one of its runs finished."""

    type: Literal["experiment_run_completed"]
    topic: str
    experiment_id: str
    run_id: str
    status: ExperimentRunStatus
    state: RunState = Field(description="The run's own state")
    group: str | None
    metrics: dict[str, float] = Field(description="Each series' last value")


class ExperimentError(_Message):
    """`experiment:<id>`: one of its runs failed."""

    type: Literal["experiment_error"]
    topic: str
    experiment_id: str
    message: str
    code: Literal["run_failed"]


WsMessage = Annotated[
    InitialRuns
    | RunHistory
    | Pong
    | SocketError
    | TopicsChanged
    | Lagged
    | NewMetrics
    | RunChanged
    | RunDeleted
    | RunStateChanged
    | Scalars
    | RunEventMessage
    | RunProgress
    | RunLog
    | Resources
    | AlertMessage
    | NotificationMessage
    | TelemetryEventMessage
    | ExperimentStatusChanged
    | ExperimentProgress
    | ExperimentRunCompleted
    | ExperimentError,
    Field(discriminator="type"),
]
"""Any message the daemon sends on `/ws`, told apart by `type`."""
WS_MESSAGE: TypeAdapter[WsMessage] = TypeAdapter(WsMessage)
