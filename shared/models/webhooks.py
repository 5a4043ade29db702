"""Webhooks as `/api/v1/webhooks*` answers them. Secrets appear only in `WebhookCreated`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

WebhookFormat = Literal["json", "slack", "discord"]


class DeliveryCounts(BaseModel):
    pending: int = Field(ge=0)
    delivered: int = Field(ge=0)
    failed: int = Field(ge=0)


class WebhookPublic(BaseModel):
    """A webhook without its secret. `deliveries` counts its outbox (absent in the answer that registers it)."""

    webhook_id: str
    url: str
    events: list[str] = Field(description="Event names it is subscribed to, or `*` for all")
    format: WebhookFormat
    created_at: str = Field(description="ISO 8601 UTC")
    status: Literal["active"] = "active"
    deliveries: DeliveryCounts | None = None


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The HMAC secret: shown in this answer only")


class WebhookList(BaseModel):
    webhooks: list[WebhookPublic]


class WebhookTestResult(BaseModel):
    """How the receiver answered a `test` event; `error` (present only then) says why nothing was answered."""

    success: bool
    status_code: int | None = Field(description="The receiver's HTTP status; null when it could not be reached")
    response_time_ms: float = Field(ge=0)
    delivery_id: str
    error: str | None = None
