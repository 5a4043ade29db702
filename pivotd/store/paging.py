"""Pages of a listing in SQL: by offset, or by keyset after a cursor's (sort value, id).

How a request names its page (page numbers, opaque cursors, the 422s for bad ones) is the routes' concern
(`pivotd.experiments.paging`); the store takes the decoded request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    per_page: int
    cursor: tuple[Any, Any] | None
    """(sort value, id) of the last row of the previous page."""


def keyset(column: str, id_column: str, descending: bool, after: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
    """SQL condition for the rows after `after` in `column, id_column` order (both the same direction)."""
    if after is None:
        return "1", []
    op = "<" if descending else ">"
    return f"({column} {op} ? OR ({column} = ? AND {id_column} {op} ?))", [after[0], after[0], after[1]]
