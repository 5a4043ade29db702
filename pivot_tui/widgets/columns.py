"""Column widths that follow the terminal: fixed per column, recomputed when the table is resized."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

SCROLLBAR = 2


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
