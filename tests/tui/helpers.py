"""Waiting on the UI: check a condition after each processed frame, up to a deadline."""

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
