"""Notifications: stored, pushed on the `notifications` topic, and forwarded to subscribed webhooks.

Types are `training`, `alert` and `system`; priorities `low`, `medium`, `high`.
`run_ended` is the entry point when a run ends, managed (the supervisor) or external (its script, or its silence).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Literal

import orjson

from pivotd.alerts.webhooks import Webhooks
from pivotd.hub import Hub
from pivotd.store import Store
from pivotd.store.monitoring import PutNotification
from pivotd.timefmt import iso
from shared.models.alerts import NotificationPriority, NotificationType
from shared.models.runs import RunState

NOTIFICATIONS_TOPIC = "notifications"
Priority = NotificationPriority
TrainingOutcome = Literal["completed", "failed", "cancelled"]
OUTCOMES: dict[str, TrainingOutcome] = {
    RunState.SUCCEEDED: "completed",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "cancelled",
    RunState.LOST: "failed",  # outcomes have no `lost`: webhooks hear `training_failed`
}
"""A run's final state -> its outcome word, as notifications and `training_<outcome>` webhooks say it."""
_TRAINING_PRIORITY: dict[str, Priority] = {"completed": "medium", "failed": "high", "cancelled": "low"}


def notification_view(row: dict[str, Any]) -> dict[str, Any]:
    return row | {"created_at": iso(row["created_at"])}


class Notifier:
    def __init__(self, store: Store, hub: Hub, webhooks: Webhooks) -> None:
        self._store = store
        self._hub = hub
        self._webhooks = webhooks

    async def notify(
        self,
        type: NotificationType,
        priority: Priority,
        message: str,
        data: dict[str, Any],
        event: str | None = None,
    ) -> dict[str, Any]:
        """Store and publish a notification; with `event`, also queue it for webhooks subscribed to it."""
        now = time.time()
        row = {"id": f"notif_{secrets.token_hex(6)}", "type": type, "priority": priority, "message": message}
        row |= {"data": data, "read": False, "created_at": now}
        writes = [self._store.writer.submit(PutNotification(row, now))]
        if event is not None:
            writes.append(self._webhooks.enqueue(event, data, message))
        await asyncio.gather(*writes)  # submitted together: one transaction in the writer's batch
        view = notification_view(row)
        if self._hub.has_subscribers(NOTIFICATIONS_TOPIC):
            message_json = {"type": "notification", "topic": NOTIFICATIONS_TOPIC, "data": view}
            self._hub.publish((NOTIFICATIONS_TOPIC,), orjson.dumps(message_json).decode())
        return view

    async def run_ended(
        self, run_id: str, state: str, error: str | None = None, data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A run reached a final state: one `training` notification, and `training_<outcome>` webhooks."""
        outcome = OUTCOMES[state]
        said = "lost" if state == RunState.LOST else outcome
        payload = {"session_id": run_id, "run_id": run_id, "outcome": outcome, "state": state}
        payload |= ({"error": error} if error else {}) | (data or {})
        return await self.notify(
            "training", _TRAINING_PRIORITY[outcome], f"Training run {run_id} {said}", payload, f"training_{outcome}"
        )
