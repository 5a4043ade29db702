"""Redraws driven by the model's changes rather than by poll timers.

The model calls back when a part of it changes (`TuiModel.on_change`); the app passes the call to the screen on
top, whose `Paced` redraw runs at once when it last ran long enough ago, else once that time has passed, folding
every change in between into one draw. A screen on which nothing changes runs no code at all: no timer ticks to
compare versions (ten ticks a second per screen were most of an idle TUI's CPU in a real terminal), and a change
reaches the screen within a frame instead of within a poll period.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual.message_pump import MessagePump
from textual.screen import Screen

if TYPE_CHECKING:
    from pivot_tui.app import PivotApp
    from pivot_tui.fleet import HostLink


class Paced:
    """Calls `draw` soon after `poke()`: on the owner's next turn when the last call was at least `interval` seconds
    ago, else when that much time has passed. Pokes while a call is due fold into it; without pokes nothing runs.

    Under a steady stream of changes the calls keep a steady cadence of one per `interval`: each is timed from
    when the previous one was due, not from when it ran, so event-loop delays do not stretch the period."""

    def __init__(self, owner: MessagePump, draw: Callable[[], object], interval: float) -> None:
        self._owner = owner
        self._draw = draw
        self.interval = interval
        self._due = False
        self._due_at = -math.inf
        self.drawn_at = -math.inf
        """When the last call was due (or, when it ran much later, half a period before it ran)."""

    def poke(self) -> None:
        if self._due:
            return
        self._due = True
        now = time.monotonic()
        self._due_at = max(now, self.drawn_at + self.interval)
        if self._due_at > now:
            self._owner.set_timer(self._due_at - now, self._run)
        else:
            self._owner.call_later(self._run)

    def _run(self) -> None:
        self._due = False
        # Late by less than half a period: the cadence holds; later than that, the next call waits half a period.
        self.drawn_at = max(self._due_at, time.monotonic() - self.interval / 2)
        self._draw()


class LiveScreen(Screen[None]):
    """A screen redrawn when the model tells it that a part it shows changed (one of WATCHES), at most once per
    REDRAW_S, and whenever it comes back into view. Subclasses implement `redraw()`, which draws what changed."""

    WATCHES: ClassVar[frozenset[str]] = frozenset()
    """The model's parts (`TuiModel.versions`) this screen shows."""
    REDRAW_S: ClassVar[float] = 0.1
    """At most this often: a change then waits for the rest of the period, with whatever else arrives meanwhile."""

    app: PivotApp  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._paced = Paced(self, self._on_paced, self.REDRAW_S)

    def watches(self, link: HostLink) -> bool:
        """Whether this box's changes concern the screen: by default, the box in view."""
        return link.model is self.app.model

    def model_changed(self, link: HostLink, parts: tuple[str, ...]) -> None:
        """The app's call, for the screen on top, when `parts` of `link`'s model changed."""
        if not self.WATCHES.isdisjoint(parts) and self.watches(link):
            self._paced.poke()

    def _on_paced(self) -> None:
        # Covered since the change (a dialog, another mode): the screen is drawn again when it comes back.
        if self.app.screen is self:
            self.redraw()

    def redraw(self) -> None:
        raise NotImplementedError

    def on_screen_resume(self) -> None:
        self.redraw()
