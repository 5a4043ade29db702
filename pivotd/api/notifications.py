"""Notifications (family P, seed 002): list with filters, mark one read, clear all."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from pivotd.alerts.notifications import NotificationType, Priority, notification_view
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, json_response
from pivotd.store.monitoring import ClearNotifications, MarkNotificationRead

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications (seed 002)"])


@router.get("", summary="List notifications, newest first", responses=error_responses(STRUCTURED_ERRORS, 401, 422))
async def list_notifications(
    services: ServicesDep,
    type: NotificationType | None = None,
    priority: Priority | None = None,
    unread: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    rows = await services.store.monitoring.notifications(type=type, priority=priority, unread=unread, limit=limit)
    return json_response({"notifications": [notification_view(row) for row in rows]})


@router.post(
    "/{notification_id}/read",
    summary="Mark a notification read",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def mark_read(notification_id: Annotated[str, Path(max_length=64)], services: ServicesDep) -> Response:
    await services.store.writer.submit(MarkNotificationRead(notification_id))
    return json_response({"id": notification_id, "read": True})


@router.delete("", summary="Delete every notification", responses=error_responses(STRUCTURED_ERRORS, 401))
async def clear(services: ServicesDep) -> Response:
    cleared = await services.store.writer.submit(ClearNotifications())
    return json_response({"message": "Notifications cleared", "cleared": cleared})
