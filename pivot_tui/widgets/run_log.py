"""Provides RunLog: the followed run's last output lines (a managed run's worker, a job's command) and refused
payloads, live; hidden while there is nothing to show."""

from __future__ import annotations

import shlex

from rich.text import Text
from textual.widgets import Static

from pivot_tui.model import FollowedRun
from shared.models.logs import LogLevel

LOG_STYLE = {LogLevel.WARNING: "yellow", LogLevel.ERROR: "bold red", LogLevel.CRITICAL: "bold red",
             LogLevel.DEBUG: "dim"}  # fmt: skip


def title(followed: FollowedRun | None) -> str:
    """`log`, and for a job what it runs and where: `log · python train.py --lr 3e-4 · GPU 0, 1`."""
    if followed is None or followed.job is None:
        return "log"
    parts = ["log", shlex.join(followed.job.command)]
    if followed.gpus:
        parts.append("GPU " + ", ".join(str(gpu.index) for gpu in followed.gpus))
    return " · ".join(parts)


class RunLog(Static):
    _shown: tuple[int, int, int, int] | None = None

    def show(self, followed: FollowedRun | None, lines: int) -> None:
        """The newest `lines` lines, newest last; redrawn only when the log or the room for it changed."""
        logs = list(followed.logs) if followed else []
        events = list(followed.events)[-2:] if followed else []
        # The deques are bounded, so their lengths stop growing: the newest line tells a change apart.
        key = (id(logs[-1]) if logs else 0, len(events) and id(events[-1]), lines, id(followed))
        if key == self._shown:
            return
        self._shown = key
        self.border_title = title(followed)
        entries = [(line.level, line.message) for line in logs]
        entries += [(LogLevel.WARNING, event.message) for event in events]
        self.display = bool(entries)
        text = Text(no_wrap=True, overflow="ellipsis")
        for index, (level, message) in enumerate(entries[-lines:]):
            if index:
                text.append("\n")
            text.append(f"{level:>7} ", style="dim").append(message, style=LOG_STYLE.get(level, ""))
        self.update(text)
