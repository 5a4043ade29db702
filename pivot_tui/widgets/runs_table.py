"""Provides RunsTable: every run the daemon has (or every box's, with a Host column), managed and external,
sortable and filterable."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from pivot_tui.widgets.columns import RowTable, fit_columns, fit_number, left_over
from shared.models.runs import RunState, RunSummary

# No progress column: run summaries carry no epochs (a managed run's epoch shows in its run detail).
COLUMNS = ("run", "kind", "state", "step", "loss", "updated")
# Fixed widths (the run id's follows the table's width): rows never reflow, and DataTable's auto
# width, which could miss rows added in the first frames, is not relied on.
WIDTHS = {"kind": 6, "state": 9, "step": 6, "loss": 7, "updated": 8}
HOST_WIDTH = (6, 16)
"""The Host column (several boxes only) fits the longest name within these bounds; a longer one is cut."""
RunKey = tuple[str, str]
"""(box name, run id): run ids are unique per daemon only."""
# Who trains the run: pivotd itself (managed), a command pivotd runs (job) or a script posting to it (external).
KIND = {"managed": "pivotd", "external": "script", "job": "job"}
LOSS_KEYS = ("train_loss", "train/loss", "loss", "val_loss", "val/loss")
STATE_STYLE = {RunState.RUNNING: "green", RunState.QUEUED: "yellow", RunState.CREATED: "yellow",
               RunState.SUCCEEDED: "cyan", RunState.FAILED: "bold red", RunState.CANCELLED: "dim",
               RunState.LOST: "dark_orange"}  # fmt: skip


def latest_loss(run: RunSummary) -> float | None:
    return next((run.latest[key] for key in LOSS_KEYS if key in run.latest), None)


def age(timestamp: str | None) -> str:
    if not timestamp:
        return ""
    try:
        seconds = (datetime.now().astimezone() - datetime.fromisoformat(timestamp)).total_seconds()
    except ValueError:
        return timestamp
    if seconds < 60:  # not to the second: a column that changed every second kept an idle list redrawing
        return "<1m ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return datetime.fromisoformat(timestamp).strftime("%b %d")


def _run_cell(run_id: str) -> str:
    return f"[b]{escape(run_id)}[/b]"


def row_key(key: RunKey, hosts: bool) -> str:
    """The run id alone for one box (as before), `box/run id` for several (box names hold no `/`)."""
    return f"{key[0]}/{key[1]}" if hosts else key[1]


class RunsTable(RowTable):
    """Rows keyed by run (and box); updated in place so the cursor stays on the same run."""

    @dataclass
    class RunChosen(Message):
        run_id: str
        host: str

    def __init__(self, hosts: Sequence[str] | None = None, **kwargs: Any) -> None:
        """`hosts`: the boxes' names, for a Host column; None for one box (no column)."""
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.hosts = hosts is not None
        self.columns_shown = ("host", *COLUMNS) if self.hosts else COLUMNS
        self.widths = dict(WIDTHS)
        if hosts is not None:
            # +2: a box that is away shows `○ name`.
            self.widths["host"] = max(HOST_WIDTH[0], min(HOST_WIDTH[1], 2 + max(map(len, hosts), default=0)))
        self.away: frozenset[str] = frozenset()
        """Boxes that cannot be reached: their runs stay, as last read, with `○` and dimmed before the box's name."""
        self.filter_text = ""
        # Newest first by creation: a stable order while runs stream, so rows do not jump under the cursor.
        self.sort_column = "created"
        self.sort_reverse = True
        self._runs: dict[str, tuple[RunKey, RunSummary]] = {}
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        run_width = self._run_width(self.app.size.width)
        for column in self.columns_shown:
            self.add_column(column.capitalize(), key=column, width=self.widths.get(column, run_width))

    def on_resize(self) -> None:
        fit_columns(self, {"run": self._run_width(self.size.width)})

    def _run_width(self, width: int) -> int:
        return left_over(width, self.widths, 12, 48)

    def show(self, runs: Mapping[RunKey, RunSummary], away: frozenset[str] = frozenset()) -> None:
        self.away = away
        self._runs = {row_key(key, self.hosts): (key, run) for key, run in runs.items()}
        text = self.filter_text.lower()
        wanted = {
            row: entry for row, entry in self._runs.items()
            if text in entry[0][1].lower() or (self.hosts and text in entry[0][0].lower())
        }  # fmt: skip
        for key in [row.value for row in list(self.rows) if row.value not in wanted]:
            self.remove_row(key)
            self._shown.pop(key, None)
        for row, (key, run) in wanted.items():
            cells = self._cells(key, run)
            shown = self._shown.get(row)
            if shown is None:
                self.add_row(*cells, key=row)
            elif cells != shown:  # touch only what changed, and repaint that row alone
                changed = zip(self.columns_shown, cells, shown, strict=True)
                self.update_row(row, {column: cell for column, cell, old in changed if cell != old})
            self._shown[row] = cells
        self._sort()

    def refilter(self, text: str) -> None:
        self.filter_text = text
        self.show({key: run for key, run in self._runs.values()}, self.away)

    def cycle_sort(self) -> str:
        order = ("created", *self.columns_shown)
        self.sort_column = order[(order.index(self.sort_column) + 1) % len(order)]
        self.sort_reverse = self.sort_column in ("created", "updated", "step")
        self._sort()
        for column in self.columns_shown:  # the sorted column's header says so (no arrow for creation order)
            arrow = ("▼" if self.sort_reverse else "▲") if column == self.sort_column else ""
            self.columns[ColumnKey(column)].label = Text(column.capitalize() + arrow)
        self.refresh()
        return self.sort_column

    @property
    def selected(self) -> RunKey | None:
        """(box, run id) under the cursor."""
        if not self.row_count:
            return None
        row = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if row is None else self._runs[row][0]

    @property
    def selected_run(self) -> str | None:
        selected = self.selected
        return None if selected is None else selected[1]

    def _sort_key(self, row: str) -> Any:
        (host, run_id), run = self._runs[row]  # every row is one of the runs last shown
        if self.sort_column == "host":
            return (host, run.created_at)
        if self.sort_column == "run":
            return (run_id, host)
        if self.sort_column == "updated":
            return run.last_update
        if self.sort_column == "created":
            return run.created_at
        if self.sort_column == "step":
            return run.latest_step or -1
        if self.sort_column == "loss":
            loss = latest_loss(run)
            return math.inf if loss is None else loss
        return str(run.status if self.sort_column == "state" else run.kind)

    def _sort(self) -> None:
        ordered = sorted((row.value for row in self.rows if row.value), key=self._sort_key, reverse=self.sort_reverse)
        if ordered == self._order:
            return
        self._order = ordered
        position = {row: index for index, row in enumerate(ordered)}
        # DataTable sorts by cells: the run cell, with the host cell when the same id runs on two boxes.
        if self.hosts:
            by_cells = {(self._shown[row][0], self._shown[row][1]): index for row, index in position.items()}
            self.sort("host", "run", key=lambda cells: by_cells.get(cells, 0))
        else:
            by_cell = {self._shown[row][0]: index for row, index in position.items()}
            self.sort("run", key=lambda cell: by_cell.get(cell, 0))

    def _cells(self, key: RunKey, run: RunSummary) -> tuple[Any, ...]:
        status = run.status
        loss = latest_loss(run)
        latest_step = run.latest_step
        state_style = STATE_STYLE.get(status)
        # Markup strings, not Text: they take DataTable's own formatting path, like the plain cells.
        cells = (
            _run_cell(key[1]),
            KIND[run.kind],
            f"[{state_style}]{escape(status)}[/]" if state_style else escape(status),
            "" if latest_step is None else str(latest_step),
            "" if loss is None else fit_number(loss, WIDTHS["loss"]),
            age(run.last_update),
        )
        if not self.hosts:
            return cells
        return (f"[dim]○ {escape(key[0])}[/]" if key[0] in self.away else escape(key[0]), *cells)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            (host, run_id), _ = self._runs[event.row_key.value]
            self.post_message(self.RunChosen(run_id, host))
