"""Provides QueueScreen: what runs and what waits on the daemon's training slots, with each run's GPUs."""

from __future__ import annotations

import shlex

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from pivot_tui.client import Unreachable
from pivot_tui.failures import ReportsFailures
from pivot_tui.screens.confirm import ConfirmDialog
from pivot_tui.screens.live import LiveScreen
from pivot_tui.widgets.columns import fit_columns, left_over
from pivot_tui.widgets.quiet import QuietStatic
from pivot_tui.widgets.runs_table import STATE_STYLE, age
from shared.client import PivotAPIError
from shared.models.jobs import QueueEntry

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


class QueueScreen(ReportsFailures, LiveScreen):
    """Running runs, then queued ones in the order they start; `enter` opens one, `c` cancels a job."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("c", "cancel", "Cancel job"),
        Binding("r", "reload", "Reload"),
    ]
    # The queue moves when a run is created, starts or ends: a change of the runs says when to read it again.
    WATCHES = frozenset({"runs"})
    REDRAW_S = 0.5

    def __init__(self) -> None:
        super().__init__()
        self._seen = -1
        self._entries: dict[str, QueueEntry] = {}
        self._rows: list[tuple[object, ...]] = []
        """The rows last written, so that a read that changed nothing writes nothing."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield QuietStatic(id="queue-status")
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "queue"
        table = self.query_one("#queue", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column, width=WIDTHS.get(column, self._what_width(self.app.size.width)))
        table.focus()

    def on_resize(self) -> None:
        fit_columns(self.query_one("#queue", DataTable), {"what": self._what_width(self.size.width)})

    @staticmethod
    def _what_width(width: int) -> int:
        return left_over(width, WIDTHS, 12, 80)

    def on_screen_resume(self) -> None:
        self._seen = -1  # read again on coming into view: the base class's redraw does

    def redraw(self) -> None:
        if self.app.model.versions["runs"] != self._seen:
            self._seen = self.app.model.versions["runs"]
            self.reload()

    @work(exclusive=True, group="queue", exit_on_error=False)
    async def reload(self) -> None:
        status = self.query_one("#queue-status", QuietStatic)
        try:
            queue = await self.app.client.job_queue()
        except Unreachable as exc:
            status.show_text(Text(exc.message, style="bold red"))
            return
        except PivotAPIError as exc:
            status.show_text(Text(f"this daemon has no job queue (HTTP {exc.status})", style="dim"))
            return
        meta = queue.meta
        status.show_text(f"{meta.running} running, {meta.queued} queued, {meta.slots} training slots")
        self._fill(queue.data)

    def _fill(self, entries: list[QueueEntry]) -> None:
        self._entries = {entry.run_id: entry for entry in entries}
        rows = [
            (
                entry.run_id,
                "" if entry.position is None else str(entry.position),
                Text(entry.run_id, style="bold", no_wrap=True, overflow="ellipsis"),
                Text(entry.status, style=STATE_STYLE.get(entry.status, "")),
                what(entry),
                gpus(entry),
                age(entry.started_at or entry.queued_at),
            )
            for entry in entries
        ]
        if rows == self._rows:
            return
        self._rows = rows
        table = self.query_one("#queue", DataTable)
        selected = self.selected
        table.clear()
        for key, *cells in rows:
            table.add_row(*cells, key=str(key))
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
