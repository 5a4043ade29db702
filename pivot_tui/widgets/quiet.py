"""Provides QuietStatic: a Static that skips an update to what it already shows."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class QuietStatic(Static):
    """Writing the same text again costs nothing; a new text repaints the widget alone unless its line count
    changed (its height may follow its content), which lays the screen out again. A plain `Static.update` lays the
    whole screen out every time: once a second for a resource gauge, that was most of an idle screen's CPU."""

    _shown: Text | str | None = None

    def show_text(self, text: Text | str, *, layout: bool | None = None) -> bool:
        """Show `text`; False when it was already shown. `layout`: force (or skip) the layout pass, for a widget
        whose width follows its text."""
        shown = self._shown
        if shown is not None and type(text) is type(shown) and text == shown:
            return False
        if layout is None:
            layout = shown is None or str(text).count("\n") != str(shown).count("\n")
        self._shown = text
        self.update(text, layout=layout)
        return True
