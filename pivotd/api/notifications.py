"""Notifications: list with filters, mark one read, clear all."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from pivotd.alerts.notifications import notification_view
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.store import ClearNotifications, MarkNotificationRead
from shared.models.alerts import (
    NotificationList,
    NotificationPriority,
    NotificationPublic,
    NotificationRead,
    NotificationsCleared,
    NotificationType,
)

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get(
    "",
    response_model=NotificationList,
    summary="List notifications, newest first",
    responses=error_responses(STRUCTURED_ERRORS, 401, 422),
)
async def list_notifications(
    services: ServicesDep,
    type: NotificationType | None = None,
    priority: NotificationPriority | None = None,
    unread: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    rows = await services.store.monitoring.notifications(type=type, priority=priority, unread=unread, limit=limit)
    views = [NotificationPublic.model_validate(notification_view(row)) for row in rows]
    return model_response(NotificationList(notifications=views))


@router.post(
    "/{notification_id}/read",
    response_model=NotificationRead,
    summary="Mark a notification read",
    responses=error_responses(STRUCTURED_ERRORS, 401, 404),
)
async def mark_read(notification_id: Annotated[str, Path(max_length=64)], services: ServicesDep) -> Response:
    await services.store.writer.submit(MarkNotificationRead(notification_id))
    return model_response(NotificationRead(id=notification_id))


@router.delete(
    "",
    response_model=NotificationsCleared,
    summary="Delete every notification",
    responses=error_responses(STRUCTURED_ERRORS, 401),
)
async def clear(services: ServicesDep) -> Response:
    cleared = await services.store.writer.submit(ClearNotifications())
    return model_response(NotificationsCleared(message="Notifications cleared", cleared=cleared))
