"""Provides QueueScreen: what runs and what waits on the daemon's training slots, with each run's GPUs."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Static

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.confirm import ConfirmDialog
from pivot_tui.widgets.columns import fit_columns, left_over
from pivot_tui.widgets.runs_table import STATE_STYLE, age
from shared.client import PivotAPIError
from shared.models.jobs import QueueEntry

if TYPE_CHECKING:
    from pivot_tui.app import PivotApp

COLUMNS = ("#", "run", "state", "what", "gpus", "since")
WIDTHS = {"#": 3, "run": 18, "state": 7, "gpus": 10, "since": 8}  # run ids are 18 characters


def what(entry: QueueEntry) -> Text:
    """A job's name or command line; the built-in trainer's runs say so."""
    if entry.kind != "job":
        return Text("built-in training", style="dim")
    label = entry.name or shlex.join(entry.command or [])
    return Text(label, no_wrap=True, overflow="ellipsis")


def gpus(entry: QueueEntry) -> str:
    """The GPUs it runs on (NVML indexes), or what a queued job asks for."""
    if entry.gpus:
        return ",".join(str(gpu.get("index", "?")) for gpu in entry.gpus)
    if entry.status == "queued" and entry.gpus_requested is not None:
        return f"wants {entry.gpus_requested}"
    return "-"


class QueueScreen(ReportsFailures, Screen[None]):
    """Running runs, then queued ones in the order they start; `enter` opens one, `c` cancels a job."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("c", "cancel", "Cancel job"),
        Binding("r", "reload", "Reload"),
    ]
    app: PivotApp  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._seen = -1
        self._entries: dict[str, QueueEntry] = {}
        self._poll: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="queue-status")
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "queue"
        table = self.query_one("#queue", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column, width=WIDTHS.get(column, self._what_width(self.app.size.width)))
        self._poll = self.set_interval(0.5, self.redraw)
        table.focus()

    def on_resize(self) -> None:
        fit_columns(self.query_one("#queue", DataTable), {"what": self._what_width(self.size.width)})

    @staticmethod
    def _what_width(width: int) -> int:
        return left_over(width, WIDTHS, 12, 80)

    def on_screen_suspend(self) -> None:
        if self._poll is not None:
            self._poll.pause()

    def on_screen_resume(self) -> None:
        if self._poll is not None:
            self._poll.resume()
        self.reload()

    def redraw(self) -> None:
        # The queue moves when a run is created, starts or ends: the runs' version says when to read it again.
        if self.app.model.versions["runs"] != self._seen:
            self._seen = self.app.model.versions["runs"]
            self.reload()

    @work(exclusive=True, group="queue", exit_on_error=False)
    async def reload(self) -> None:
        status = self.query_one("#queue-status", Static)
        try:
            queue = await self.app.client.job_queue()
        except Unreachable as exc:
            status.update(Text(exc.message, style="bold red"))
            return
        except PivotAPIError as exc:
            status.update(Text(f"this daemon has no job queue (HTTP {exc.status})", style="dim"))
            return
        meta = queue.meta
        status.update(f"{meta.running} running, {meta.queued} queued, {meta.slots} training slots")
        self._fill(queue.data)

    def _fill(self, entries: list[QueueEntry]) -> None:
        table = self.query_one("#queue", DataTable)
        selected = self.selected
        self._entries = {entry.run_id: entry for entry in entries}
        table.clear()
        for entry in entries:
            style = STATE_STYLE.get(entry.status, "")
            table.add_row(
                "" if entry.position is None else str(entry.position),
                Text(entry.run_id, style="bold", no_wrap=True, overflow="ellipsis"),
                Text(entry.status, style=style),
                what(entry),
                gpus(entry),
                age(entry.started_at or entry.queued_at),
                key=entry.run_id,
            )
        if selected in self._entries:
            table.move_cursor(row=table.get_row_index(selected))

    @property
    def selected(self) -> str | None:
        table = self.query_one("#queue", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_open(self) -> None:
        if self.selected:
            self.app.open_run(self.selected)

    def action_reload(self) -> None:
        self.reload()

    def action_cancel(self) -> None:
        run_id = self.selected
        entry = self._entries.get(run_id or "")
        if entry is None or run_id is None:
            return
        if entry.kind != "job":
            self.notify("a built-in training run is cancelled from its run view (enter, then c)", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel(run_id)

        self.app.push_screen(ConfirmDialog(f"Cancel job {run_id}? Its processes are stopped.", "Cancel job"), answered)

    @work(group="cancel-job", exit_on_error=False)
    async def cancel(self, run_id: str) -> None:
        self.notify(f"cancelling {run_id}")
        try:
            await self.app.client.cancel_job(run_id)
        except PivotAPIError as exc:
            self.notify(f"{run_id}: {exc.message}", severity="error")
            return
        self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.open_run(event.row_key.value)
