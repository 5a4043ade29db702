"""Provides AcknowledgeDialog: acknowledge an alert with a note; dismisses with the note or None."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label


class AcknowledgeDialog(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, alert_title: str) -> None:
        super().__init__()
        self.alert_title = alert_title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Acknowledge: {self.alert_title}", classes="dialog-title")
            yield Input(placeholder="note (optional)", id="note")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Acknowledge", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")
        yield Footer(compact=True, show_command_palette=False)  # this dialog's keys, not the screen's beneath

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted, "#note")
    def _ok(self) -> None:
        self.dismiss(self.query_one("#note", Input).value)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
