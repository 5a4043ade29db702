"""Provides RunsScreen: every run on the daemon (or on every box, merged) with resource gauges, alert count and
connection state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Footer, Header, Input

from pivot_tui.client import Connection
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.live import LiveScreen
from pivot_tui.widgets import ConnectionBadge, ResourceStrip, RunsTable

if TYPE_CHECKING:
    from pivot_tui.fleet import HostLink

AGES_S = 15.0
"""The Updated column's ages (`3m ago`) are recomputed this often while nothing else changes."""


class RunsScreen(ReportsFailures, LiveScreen):
    """Live list of runs; Enter opens one, typing filters, `s` changes the sort."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    WATCHES = frozenset({"runs", "resources", "alerts", "connection"})

    def __init__(self) -> None:
        super().__init__()
        self._seen_runs: tuple[object, ...] = ()
        """What the table last drew: runs' versions (and which boxes were away)."""
        self._seen_strip: tuple[object, ...] = ()
        """What the status line's gauges last drew: the box, its resources' and alerts' versions."""
        self._ages: Timer | None = None

    def watches(self, link: HostLink) -> bool:
        return True  # one box, or every box merged

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="status-line"):
            yield ResourceStrip(id="strip")
            yield ConnectionBadge(id="connection")
        yield RunsTable(list(self.app.links) if self.app.several else None, id="runs")
        # No select-all on focus: the key that moved focus here is already typed in, and the next would replace it.
        yield Input(placeholder="type to filter runs", id="filter", select_on_focus=False)
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self._ages = self.set_interval(AGES_S, self._redraw_ages)
        self.redraw()

    def on_screen_suspend(self) -> None:
        if self._ages is not None:
            self._ages.pause()

    def on_screen_resume(self) -> None:
        if self._ages is not None:
            self._ages.resume()

    def _redraw_ages(self) -> None:
        self._seen_runs = ()
        self.redraw()

    def redraw(self) -> None:
        """Draw what changed since the last draw: the table when runs changed, the gauges when resources or alerts
        did. Under a run detail or in another mode: drawn again when it comes back. (Not `is_current`, which also
        holds for the screen just beneath the top one.)"""
        if self.app.screen is not self:
            return
        if self.app.several:
            self._redraw_fleet()
            return
        model = self.app.model
        self.query_one(ConnectionBadge).show(model.connection, self.app.settings.url)
        self.sub_title = " · ".join(filter(None, (f"{len(model.runs)} runs", self.app.sub_title)))
        if (seen := (model.versions["runs"],)) != self._seen_runs:
            self._seen_runs = seen
            self.query_one(RunsTable).show({("", run_id): run for run_id, run in model.runs.items()})
        if (seen := (model.versions["resources"], model.versions["alerts"])) != self._seen_strip:
            self._seen_strip = seen
            self.query_one(ResourceStrip).show(model.resources, self.app.active_alerts)

    def _redraw_fleet(self) -> None:
        """Every box's runs in one table; the status line shows the current box's gauges and how many boxes answer."""
        links = self.app.links.values()
        current = self.app.links[self.app.current]
        online = sum(link.model.connection is Connection.ONLINE for link in links)
        state = Connection.ONLINE if online == len(links) else Connection.OFFLINE if not online else None
        self.query_one(ConnectionBadge).show_fleet(state, online, len(links), current.name)
        runs = sum(len(link.model.runs) for link in links)
        away = [link.name for link in links if link.model.away]  # kept through reconnection attempts
        self.sub_title = " · ".join(filter(None, (f"{runs} runs on {len(links)} boxes", away and "offline: " +
                                                  ", ".join(away))))  # fmt: skip
        if (seen := (tuple(away), *(link.model.versions["runs"] for link in links))) != self._seen_runs:
            self._seen_runs = seen
            self.query_one(RunsTable).show(
                {(link.name, run_id): run for link in links for run_id, run in link.model.runs.items()},
                frozenset(away),
            )
        strip = (current.name, current.model.versions["resources"], current.model.versions["alerts"])
        if strip != self._seen_strip:
            self._seen_strip = strip
            self.query_one(ResourceStrip).show(current.model.resources, current.active_alerts)

    def on_key(self, event: events.Key) -> None:
        # Typing anywhere on the table filters: printable keys that are not bindings go to the filter.
        table = self.query_one(RunsTable)
        if self.focused is table and event.is_printable and event.character and event.character not in "s/q?123456l":
            field = self.query_one("#filter", Input)
            field.focus()
            field.insert_text_at_cursor(event.character)
            event.stop()

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.query_one(RunsTable).refilter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one(RunsTable).focus()
        self.action_open()  # Enter picks the highlighted match, as in a fuzzy finder

    @on(RunsTable.RunChosen)
    def _open(self, event: RunsTable.RunChosen) -> None:
        self.app.open_run(event.run_id, event.host or None)

    def action_open(self) -> None:
        selected = self.query_one(RunsTable).selected
        if selected:
            self.app.open_run(selected[1], selected[0] or None)

    def action_sort(self) -> None:
        column = self.query_one(RunsTable).cycle_sort()
        self.notify(f"sorted by {column}", timeout=1.5)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one(RunsTable).focus()
