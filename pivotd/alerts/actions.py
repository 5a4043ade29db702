"""What a rule may do to the run it fired for (`"action": "pause" | "cancel"`).

Managed runs belong to the training feature, so the alert engine only knows names: the trainer
registers a handler per action when it starts (`services.actions.register("cancel", handler)`), and the
engine calls it with the run id and the alert. Without a handler the alert records that the action
was unavailable (external runs can never be paused by the daemon).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

log = logging.getLogger(__name__)
ActionName = Literal["pause", "cancel"]
ActionHandler = Callable[[str, dict[str, Any]], Awaitable[None]]


class Actions:
    def __init__(self) -> None:
        self._handlers: dict[str, ActionHandler] = {}

    def register(self, name: ActionName, handler: ActionHandler) -> None:
        """Install the handler for `name`; it receives (run_id, alert) and raises to report failure."""
        self._handlers[name] = handler

    async def run(self, name: str, run_id: str, alert: dict[str, Any]) -> str:
        """Run the action; returns its outcome for the alert record (`done`, `unavailable`, `failed: ...`)."""
        handler = self._handlers.get(name)
        if handler is None:
            return "unavailable"
        try:
            await handler(run_id, alert)
        except Exception as exc:
            log.warning("action %s on run %s failed: %s", name, run_id, exc)
            return f"failed: {exc}"
        return "done"
