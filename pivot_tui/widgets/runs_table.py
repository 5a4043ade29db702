"""Provides RunsTable: every run the daemon has, managed and external, sortable and filterable."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from pivot_tui.widgets.columns import fit_columns, fit_number, left_over
from shared.models.runs import RunState, RunSummary

# No progress column: run summaries carry no epochs (a managed run's epoch shows in its run detail).
COLUMNS = ("run", "kind", "state", "step", "loss", "updated")
# Fixed widths (the run id's follows the table's width): rows never reflow, and DataTable's auto
# width, which could miss rows added in the first frames, is not relied on.
WIDTHS = {"kind": 6, "state": 9, "step": 6, "loss": 7, "updated": 8}
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


class RunsTable(DataTable[Any]):
    """Rows keyed by run id; updated in place so the cursor stays on the same run."""

    @dataclass
    class RunChosen(Message):
        run_id: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.filter_text = ""
        # Newest first by creation: a stable order while runs stream, so rows do not jump under the cursor.
        self.sort_column = "created"
        self.sort_reverse = True
        self._runs: dict[str, RunSummary] = {}
        self._shown: dict[str, tuple[Any, ...]] = {}
        self._order: list[str] = []

    def on_mount(self) -> None:
        run_width = self._run_width(self.app.size.width)
        for column in COLUMNS:
            self.add_column(column.capitalize(), key=column, width=WIDTHS.get(column, run_width))

    def on_resize(self) -> None:
        fit_columns(self, {"run": self._run_width(self.size.width)})

    @staticmethod
    def _run_width(width: int) -> int:
        return left_over(width, WIDTHS, 12, 48)

    def show(self, runs: dict[str, RunSummary]) -> None:
        self._runs = runs
        wanted = {run_id: run for run_id, run in runs.items() if self.filter_text.lower() in run_id.lower()}
        for key in [row.value for row in list(self.rows) if row.value not in wanted]:
            self.remove_row(key)
            self._shown.pop(key, None)
        for run_id, run in wanted.items():
            cells = self._cells(run_id, run)
            shown = self._shown.get(run_id)
            if shown is None:
                self.add_row(*cells, key=run_id)
            else:  # touch only what changed: every update makes the table re-render
                for column, cell, old in zip(COLUMNS, cells, shown, strict=True):
                    if cell != old:
                        self.update_cell(run_id, column, cell)
            self._shown[run_id] = cells
        self._sort()

    def refilter(self, text: str) -> None:
        self.filter_text = text
        self.show(self._runs)

    def cycle_sort(self) -> str:
        order = ("created", *COLUMNS)
        self.sort_column = order[(order.index(self.sort_column) + 1) % len(order)]
        self.sort_reverse = self.sort_column in ("created", "updated", "step")
        self._sort()
        for column in COLUMNS:  # the sorted column's header says so (no arrow for creation order: no column)
            arrow = ("▼" if self.sort_reverse else "▲") if column == self.sort_column else ""
            self.columns[ColumnKey(column)].label = Text(column.capitalize() + arrow)
        self.refresh()
        return self.sort_column

    @property
    def selected_run(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def _sort_key(self, run_id: str) -> Any:
        run = self._runs[run_id]  # every row is one of the runs last shown
        if self.sort_column == "run":
            return run_id
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
        position = {run_id: index for index, run_id in enumerate(ordered)}
        by_cell = {_run_cell(run_id): index for run_id, index in position.items()}
        self.sort("run", key=lambda cell: by_cell.get(cell, 0))

    def _cells(self, run_id: str, run: RunSummary) -> tuple[Any, ...]:
        status = run.status
        loss = latest_loss(run)
        latest_step = run.latest_step
        state_style = STATE_STYLE.get(status)
        # Markup strings, not Text: they take DataTable's own formatting path, like the plain cells.
        return (
            _run_cell(run_id),
            KIND[run.kind],
            f"[{state_style}]{escape(status)}[/]" if state_style else escape(status),
            "" if latest_step is None else str(latest_step),
            "" if loss is None else fit_number(loss, WIDTHS["loss"]),
            age(run.last_update),
        )

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.RunChosen(event.row_key.value))
