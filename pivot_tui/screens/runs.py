"""Provides RunsScreen: every run on the daemon with resource gauges, alert count and connection state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from pivot_tui.failures import ReportsFailures
from pivot_tui.widgets import ConnectionBadge, ResourceStrip, RunsTable

if TYPE_CHECKING:
    from pivot_tui.app import PivotApp


class RunsScreen(ReportsFailures, Screen[None]):
    """Live list of runs; Enter opens one, typing filters, `s` changes the sort."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    app: PivotApp  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._seen: tuple[int, int, int] = (-1, -1, -1)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="status-line"):
            yield ResourceStrip(id="strip")
            yield ConnectionBadge(id="connection")
        yield RunsTable(id="runs")
        yield Input(placeholder="type to filter runs", id="filter")
        yield Footer(compact=True, show_command_palette=False)  # room for every key at 80 columns

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.set_interval(0.1, self.redraw)
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        # Under a run detail or in another mode: drawn again when it comes back. (Not `is_current`, which
        # also holds for the screen just beneath the top one.)
        if self.app.screen is not self:
            return
        model = self.app.model
        seen = (model.versions["runs"], model.versions["resources"], model.versions["alerts"])
        self.query_one(ConnectionBadge).show(model.connection, self.app.settings.url)
        self.sub_title = " · ".join(filter(None, (f"{len(model.runs)} runs", self.app.sub_title)))
        if seen == self._seen:
            return
        self._seen = seen
        self.query_one(RunsTable).show(model.runs)
        self.query_one(ResourceStrip).show(model.resources, self.app.active_alerts)

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
        self.app.open_run(event.run_id)

    def action_open(self) -> None:
        run_id = self.query_one(RunsTable).selected_run
        if run_id:
            self.app.open_run(run_id)

    def action_sort(self) -> None:
        column = self.query_one(RunsTable).cycle_sort()
        self.notify(f"sorted by {column}", timeout=1.5)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one(RunsTable).focus()
