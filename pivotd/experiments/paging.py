"""`{"data", "meta"}` paging: `page`/`per_page` offsets, or an opaque cursor on (sort value, id).

A cursor names the last row a client saw; the next page is every row after it in the sort order, so rows
inserted meanwhile never shift or repeat a page (offsets would). The id breaks ties between equal sort values.
This module is what clients send and see (page numbers, cursors, `meta`, the 422s); `pivotd.store.paging` turns
the decoded request into SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from pivotd.errors import invalid_field
from pivotd.store.paging import PageRequest

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 25
MAX_PAGE = 1_000_000
"""Deep enough for any listing a client walks by page number (beyond it, a cursor); bounds the SQL OFFSET."""
_INT64 = 2**63


def encode_cursor(sort: str, value: Any, row_id: Any) -> str:
    raw = json.dumps({"s": sort, "v": value, "id": row_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, Any]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(decoded, dict) or set(decoded) != {"s", "v", "id"}:
            raise ValueError("not a cursor")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid_field("cursor", "is not a cursor this server issued") from None
    if not (_is_key(decoded["v"]) and _is_key(decoded["id"])):
        raise invalid_field(
            "cursor", "is not a cursor this server issued"
        )  # SQLite binds neither objects nor huge ints
    if decoded["s"] != sort:
        raise invalid_field("cursor", f"was issued for sort {decoded['s']!r}, not {sort!r}")
    return decoded["v"], decoded["id"]


def _is_key(value: Any) -> bool:
    """Whether `value` could be a sort value or id this server put in a cursor: a string, a 64-bit integer or a
    finite float (JSON also decodes objects, lists, booleans, null, NaN and integers of any size)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str)


def page_request(page: int, per_page: int, cursor: str | None, sort: str) -> PageRequest:
    if not 1 <= page <= MAX_PAGE:
        raise invalid_field("page", f"must be between 1 and {MAX_PAGE:,}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise invalid_field("per_page", f"must be between 1 and {MAX_PER_PAGE}")
    return PageRequest(page, per_page, None if cursor is None else decode_cursor(cursor, sort))


def meta(request: PageRequest, total: int, rows_seen: int, has_more: bool, next_cursor: str | None) -> dict[str, Any]:
    return {
        "total": total,
        "page": request.page if request.cursor is None else None,
        "per_page": request.per_page,
        "count": rows_seen,
        "has_more": has_more,
        "next_cursor": next_cursor if has_more else None,
    }
