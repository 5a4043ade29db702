"""Waiting on the UI (check a condition after each processed frame, up to a deadline) and reading it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Let the app process messages until `condition()` holds; fail with a clear message if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.05)
    await pilot.pause()  # one more frame so the screen reflects it


def rows(pilot: Any, table: str) -> int:
    """Rows of the current screen's table `table` (a CSS selector), 0 while it has none."""
    found = pilot.app.screen.query(table)
    return found.first().row_count if found else 0


def notes(pilot: Any) -> str:
    """Every notification shown so far, joined."""
    return " | ".join(str(n.message) for n in pilot.app._notifications)
