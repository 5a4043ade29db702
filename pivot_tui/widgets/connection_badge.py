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
    _shown: tuple[Connection, str] | None = None

    def show(self, state: Connection, url: str) -> None:
        # Screens call this on every poll: an update re-lays out the screen, so only a change is drawn.
        if (state, url) == self._shown:
            return
        self._shown = (state, url)
        symbol, word, style = _STYLE[state]
        self.update(Text.assemble((f"{symbol} {word} ", style), (url, "dim")))
