"""Provides ConnectionBadge: whether the daemon is reachable, at a glance."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pivot_tui.client import Connection

_STYLE = {
    Connection.ONLINE: ("●", "online", "bold green"),
    Connection.CONNECTING: ("◌", "connecting", "bold yellow"),
    Connection.OFFLINE: ("○", "offline", "bold red"),
    Connection.UNAUTHORIZED: ("✖", "token needed", "bold red"),
}


class ConnectionBadge(Static):
    _shown: Text | None = None

    def _update(self, text: Text) -> None:
        # Called ten times a second: an unchanged badge is not redrawn (an update lays the screen out again).
        if text != self._shown:
            self._shown = text
            self.update(text)

    def show(self, state: Connection, url: str) -> None:
        symbol, word, style = _STYLE[state]
        self._update(Text.assemble((f"{symbol} {word} ", style), (url, "dim")))

    def show_fleet(self, state: Connection | None, online: int, boxes: int, current: str) -> None:
        """Several boxes: how many answer (all: online, none: offline, else partly) and which one is current."""
        symbol, _, style = _STYLE[state] if state else ("◐", "", "bold yellow")
        self._update(Text.assemble((f"{symbol} {online}/{boxes} online ", style), (f"gauges: {current}", "dim")))
