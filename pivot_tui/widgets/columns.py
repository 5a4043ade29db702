"""Column widths that follow the terminal: fixed per column, recomputed when the table is resized; and a table that
repaints only the rows it changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

SCROLLBAR = 2


def fit_number(value: float, width: int) -> str:
    """`value` in at most `width` characters with as many significant digits as fit (at most 4): a number is
    never cut, since a cut one reads as another number (`9.262e-05` cut to `9.262e-`)."""
    text = ""
    for digits in range(4, 0, -1):
        text = f"{value:.{digits}g}"
        mantissa, e, exponent = text.partition("e")
        if e:  # `e-05` -> `e-5`: the padding zero costs a digit
            text = f"{mantissa}e{int(exponent)}"
        if len(text) <= width:
            return text
    return text  # wider than `width` even with one digit (1e+100 in 5): whole, for the cell to show what fits


def left_over(width: int, fixed: Mapping[str, int], low: int, high: int) -> int:
    """The width one flexible column gets beside `fixed` ones (each column is padded by 1 on both sides)."""
    return max(low, min(high, width - sum(fixed.values()) - 2 * (len(fixed) + 1) - SCROLLBAR))


def fit_columns(table: DataTable[Any], widths: Mapping[str, int]) -> None:
    """Give existing columns new widths; DataTable has no public call for it, so its layout is redone here."""
    changed = False
    for key, width in widths.items():
        column = table.columns.get(ColumnKey(key))
        if column is not None and (column.width != width or column.auto_width):
            column.width, column.auto_width = width, False
            changed = True
    if changed:
        table._require_update_dimensions = True  # recomputes the virtual width on the next idle
        table._clear_caches()
        table.refresh()


class RowTable(DataTable[Any]):
    """A DataTable whose `update_row` repaints the rows it changed alone. `DataTable.update_cell` repaints the
    whole table: every visible row rendered and written to the terminal again for one cell, once a second on the
    fleet screen (its CPU and memory columns) and ten times a second on a runs list that is streaming."""

    _writing = False

    def update_row(self, row_key: str, cells: Mapping[str, Any]) -> None:
        """Write `cells` (column key -> value) into the row and repaint that row."""
        self._writing = True
        try:
            for column, value in cells.items():
                self.update_cell(row_key, column, value)
        finally:
            self._writing = False
        self.refresh_row(self.get_row_index(row_key))

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        if self._writing and not regions and not layout and not recompose:
            return self  # update_cell's whole-table repaint: update_row repaints the row instead
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)
