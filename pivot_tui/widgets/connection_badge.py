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
    def show(self, state: Connection, url: str) -> None:
        symbol, word, style = _STYLE[state]
        self.update(Text.assemble((f"{symbol} {word} ", style), (url, "dim")))

    def show_fleet(self, state: Connection | None, online: int, boxes: int, current: str) -> None:
        """Several boxes: how many answer (all: online, none: offline, else partly) and which one is current."""
        symbol, _, style = _STYLE[state] if state else ("◐", "", "bold yellow")
        self.update(Text.assemble((f"{symbol} {online}/{boxes} online ", style), (f"gauges: {current}", "dim")))
