"""Webhooks: register, list, get, delete, test. Secrets are shown once, at creation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pivotd.alerts.webhooks import EVENTS
from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.store import WebhookRow
from pivotd.timefmt import iso
from shared.models.webhooks import (
    DeliveryCounts,
    WebhookCreated,
    WebhookFormat,
    WebhookList,
    WebhookPublic,
    WebhookTestResult,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
IdPath = Annotated[str, Path(max_length=64)]


EventName = Annotated[str, Field(json_schema_extra={"enum": [*EVENTS, "*"]})]
"""Checked by `WebhookCreate._known`, whose 422 lists the known names."""


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[EventName], Field(min_length=1, max_length=len(EVENTS) + 1)]
    secret: Annotated[str, Field(min_length=8, max_length=256)] | None = None
    """Shared HMAC secret; generated (and returned once) when omitted."""
    format: WebhookFormat = "json"

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        unknown = sorted(set(events) - {*EVENTS, "*"})
        if unknown:
            raise ValueError(f"unknown event(s) {', '.join(unknown)}; known: {', '.join(EVENTS)}, or *")
        return sorted(set(events))


def _fields(row: WebhookRow) -> dict[str, str | list[str]]:
    return {
        "webhook_id": row.webhook_id,
        "url": row.url,
        "events": row.events,
        "format": row.format,
        "status": "active",
    }


def _view(row: WebhookRow, counts: dict[str, int]) -> WebhookPublic:
    deliveries = DeliveryCounts(**{status: counts.get(status, 0) for status in ("pending", "delivered", "failed")})
    return WebhookPublic.model_validate(_fields(row) | {"created_at": iso(row.created_at), "deliveries": deliveries})


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    summary="Register a webhook",
    description="The response is the only one that ever shows the secret.",
    openapi_extra=openapi_body("WebhookCreate", WebhookCreate, "url, events, secret, format"),
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 413, 415, 422),
)
async def register(request: Request, services: ServicesDep) -> Response:
    spec = await read_model(request, WebhookCreate, services.settings.max_body_bytes)
    row, secret = await services.webhooks.register(spec.url, spec.events, spec.secret, spec.format)
    created = WebhookCreated.model_validate(_fields(row) | {"created_at": iso(row.created_at), "secret": secret})
    return model_response(created, 201, exclude_unset=True)  # no `deliveries` yet


@router.get(
    "",
    response_model=WebhookList,
    summary="List webhooks (without secrets)",
    responses=error_responses(STRUCTURED_ERRORS, 401),
)
async def list_webhooks(services: ServicesDep) -> Response:
    counts = await services.store.monitoring.delivery_counts()
    rows = services.webhooks.list()
    return model_response(WebhookList(webhooks=[_view(row, counts.get(row.webhook_id, {})) for row in rows]))


@router.get(
    "/{webhook_id}",
    response_model=WebhookPublic,
    summary="One webhook (without its secret)",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def get_webhook(webhook_id: IdPath, services: ServicesDep) -> Response:
    row = services.webhooks.get(webhook_id)
    counts = await services.store.monitoring.delivery_counts()
    return model_response(_view(row, counts.get(webhook_id, {})))


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete a webhook and its pending deliveries",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def delete_webhook(webhook_id: IdPath, services: ServicesDep) -> Response:
    await services.webhooks.delete(webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/test",
    response_model=WebhookTestResult,
    summary="Send a signed `test` event now and report the receiver's answer",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def test_webhook(webhook_id: IdPath, services: ServicesDep) -> Response:
    result = WebhookTestResult.model_validate(await services.webhooks.test(webhook_id))
    return model_response(result, exclude_unset=True)  # `error` only when there is one
