"""Waiting on the UI (check a condition after each processed frame, up to a deadline) and reading it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pivot_tui.screens import RunDetailScreen

TRAINING = "mnist_cnn_lr0.1"
"""The fake daemon's managed, running run (151 steps): every key of the run view applies."""


POLL_S = 0.02
"""How often `until` looks again: a condition is checked after the app has processed what was queued for it."""


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Let the app process messages until `condition()` holds; fail with a clear message if it never does.

    Each look waits for the screen to process its queued messages; the last one then updates the screen.
    `pilot.pause()` without a delay would wait for the process to be idle, 20 ms at least and up to a second
    while a daemon in the same process or a worker keeps it busy, for nothing that these conditions need."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(POLL_S)
    await pilot.pause(0)  # its queued messages processed, and the screen updated


def rows(pilot: Any, table: str) -> int:
    """Rows of the current screen's table `table` (a CSS selector), 0 while it has none."""
    found = pilot.app.screen.query(table)
    return found.first().row_count if found else 0


def notes(pilot: Any) -> str:
    """Every notification shown so far, joined."""
    return " | ".join(str(n.message) for n in pilot.app._notifications)


async def open_training_run(pilot: Any) -> RunDetailScreen:
    """The run view of `TRAINING`, once its steps are in and drawn."""
    await until(pilot, lambda: rows(pilot, "#runs") == 4)
    pilot.app.open_run(TRAINING)
    followed = lambda: pilot.app.model.followed  # noqa: E731
    await until(pilot, lambda: followed() and followed().run_id == TRAINING and len(followed().steps) == 151)
    screen = pilot.app.screen
    assert isinstance(screen, RunDetailScreen)
    await until(pilot, lambda: screen._seen == pilot.app.model.versions["run"])
    return screen
