"""Alerts, alert rules and notifications as `/api/v1/alerts*` and `/api/v1/notifications*`
answer them. The state and severity words are defined here once: the daemon's rules and engine use them too."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AlertStatus(StrEnum):
    """An alert's state: `active` until acknowledged or resolved; `acknowledged` alerts still resolve by themselves
    when their condition clears."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertSeverity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class NotificationType(StrEnum):
    TRAINING = "training"
    ALERT = "alert"
    SYSTEM = "system"


class NotificationPriority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


AlertCondition = Literal[
    "greater_than",
    "less_than",
    "equals",
    "not_equals",
    "outside_range",
    "not_finite",
    "no_data_for",
    "grows_by_factor",
]
RuleAction = Literal["pause", "cancel"]


class AlertScope(BaseModel):
    """Which subjects a rule watches; every field left out matches everything."""

    model_config = ConfigDict(extra="forbid")

    run: Annotated[str, Field(min_length=1, max_length=128, description="Run id or glob (`exp-*`)")] | None = None
    gpu: Annotated[int, Field(ge=0, le=1023, description="GPU index")] | None = None
    layer: Annotated[str, Field(min_length=1, max_length=256, description="Layer id, glob, or @first")] | None = None


class AlertRulePublic(BaseModel):
    """A rule as the rules routes answer it: its spec (fields left unset are absent), `builtin` and its times."""

    rule_id: str
    name: str
    metric: str
    condition: AlertCondition
    threshold: float | None = None
    range: tuple[float, float] | None = None
    severity: AlertSeverity
    enabled: bool
    for_seconds: float
    scope: AlertScope
    action: RuleAction | None = None
    description: str | None = None
    builtin: bool
    created_at: str = Field(description="ISO 8601 UTC")
    updated_at: str = Field(description="ISO 8601 UTC")


class AlertRuleList(BaseModel):
    rules: list[AlertRulePublic]


class AlertActionTaken(BaseModel):
    name: RuleAction
    outcome: str


class AlertPublic(BaseModel):
    """An alert. The subject fields (`run_id`, `step`, `layer_id`, `gpu`, `scalar`) are present when the subject
    has them; `acknowledged_*`/`notes` once acknowledged, `resolved_at`/`resolution` once resolved, `action` once
    the rule's action ran."""

    alert_id: str
    rule_id: str
    rule_name: str
    severity: AlertSeverity
    message: str
    value: int | float | None = Field(description="The value that crossed the threshold; null when not a number")
    threshold: float | None
    triggered_at: str = Field(description="ISO 8601 UTC")
    status: AlertStatus
    metric: str
    condition: AlertCondition
    subject: str
    context: dict[str, Any]
    run_id: str | None = None
    step: int | None = None
    layer_id: str | None = None
    gpu: int | None = None
    scalar: str | None = None
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    notes: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None
    action: AlertActionTaken | None = None


class AlertList(BaseModel):
    alerts: list[AlertPublic]


class NotificationPublic(BaseModel):
    id: str
    type: NotificationType
    priority: NotificationPriority
    message: str
    data: dict[str, Any] = Field(description="What it is about: the alert, or the run's outcome")
    read: bool
    created_at: str = Field(description="ISO 8601 UTC")


class NotificationList(BaseModel):
    notifications: list[NotificationPublic]


class NotificationRead(BaseModel):
    id: str
    read: Literal[True] = True


class NotificationsCleared(BaseModel):
    message: str
    cleared: int = Field(ge=0)
