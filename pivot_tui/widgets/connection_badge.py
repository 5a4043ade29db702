"""Provides ConnectionBadge: whether the daemon is reachable, at a glance."""

from __future__ import annotations

from rich.text import Text

from pivot_tui.client import Connection
from pivot_tui.widgets.quiet import QuietStatic

_STYLE = {
    Connection.ONLINE: ("●", "online", "bold green"),
    Connection.CONNECTING: ("◌", "connecting", "bold yellow"),
    Connection.OFFLINE: ("○", "offline", "bold red"),
    Connection.UNAUTHORIZED: ("✖", "token needed", "bold red"),
}


class ConnectionBadge(QuietStatic):
    def _update(self, text: Text) -> None:
        # An unchanged badge is not redrawn; a changed one lays the status line out again (its width is its text's).
        self.show_text(text, layout=True)

    def show(self, state: Connection, url: str) -> None:
        symbol, word, style = _STYLE[state]
        self._update(Text.assemble((f"{symbol} {word} ", style), (url, "dim")))

    def show_fleet(self, state: Connection | None, online: int, boxes: int, current: str) -> None:
        """Several boxes: how many answer (all: online, none: offline, else partly) and which one is current."""
        symbol, _, style = _STYLE[state] if state else ("◐", "", "bold yellow")
        self._update(Text.assemble((f"{symbol} {online}/{boxes} online ", style), (f"gauges: {current}", "dim")))
