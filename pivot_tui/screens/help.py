"""Provides HelpDialog: every key of the screen beneath, then the keys that work everywhere.

Textual's own help panel lists the focused widget's cursor keys first and pushes PIVOT's keys, and the
screen switches, below the fold of a 24-row terminal; this one lists PIVOT's keys only, in two columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Label, Static

MOVING = "↑↓ pgup pgdn home end move in lists; the mouse works everywhere"


def _keys(bindings: Iterable[BindingType], display: Callable[[Binding], str]) -> list[tuple[str, str]]:
    return [(display(binding), binding.description) for binding in Binding.make_bindings(bindings)
            if binding.description]  # fmt: skip


class HelpDialog(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "dismiss", "Close", key_display="esc/?")]

    def __init__(self, screen: Screen[object]) -> None:
        super().__init__()
        self.beneath = screen

    def compose(self) -> ComposeResult:
        own = _keys(type(self.beneath).BINDINGS, self.app.get_key_display)
        everywhere = _keys(type(self.app).BINDINGS, self.app.get_key_display) + [("ctrl+p", "Command palette")]
        with Vertical(classes="dialog", id="help"):
            yield Label(f"Keys: {self.beneath.title or self.app.title}", classes="dialog-title")
            yield Static(_columns(own), id="help-own")
            yield Label("Everywhere", classes="dialog-title help-section")
            yield Static(_columns(everywhere), id="help-everywhere")
            yield Static(Text(MOVING, style="dim"))
        yield Footer(compact=True, show_command_palette=False)


def _columns(keys: list[tuple[str, str]]) -> Table:
    """Keys in two columns, down then across, so a screen's dozen keys take six rows."""
    table = Table.grid(padding=(0, 2))
    for _ in range(2):
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
    half = (len(keys) + 1) // 2
    for row in range(half):
        cells: list[str] = []
        for key, description in (keys[row], keys[row + half] if row + half < len(keys) else ("", "")):
            cells += [key, description]
        table.add_row(*cells)
    return table
