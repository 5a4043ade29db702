"""Timestamps on the wire: ISO 8601 UTC with `T` and milliseconds (api-map section 1)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")
