"""Background tasks that a service starts and does not await where it starts them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


class TaskSet:
    """Holds each task until it finishes: the event loop keeps only weak references to tasks, so a task that
    nothing else refers to can be garbage-collected mid-flight."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait(self) -> None:
        """Until the tasks started so far have finished; their failures are theirs to log, not the caller's."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
