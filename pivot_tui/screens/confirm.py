"""Provides ConfirmDialog: a yes/no question before something that cannot be undone; dismisses with a bool."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label


class ConfirmDialog(ModalScreen[bool]):
    # Every way out in the footer: `enter` answers with the focused button (the safe one at first).
    BINDINGS = [
        # Priority: the focused button's own `enter` would otherwise hide this one from the footer.
        Binding("enter", "press_focused", "Choose", priority=True),
        Binding("y", "dismiss(True)", "Yes"),
        Binding("n,escape", "dismiss(False)", "No", key_display="n/esc"),
        # Two buttons side by side: arrows move between them.
        Binding("left", "app.focus_previous", "Move", key_display="←→"),
        Binding("right", "app.focus_next", show=False),
    ]

    def __init__(self, question: str, yes: str, no: str = "Keep") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.yes, variant="error", id="yes")
                yield Button(self.no, variant="primary", id="no")
        yield Footer(compact=True, show_command_palette=False)  # this dialog's keys, not the screen's beneath

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def action_press_focused(self) -> None:
        if isinstance(self.focused, Button):
            self.focused.press()

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)
