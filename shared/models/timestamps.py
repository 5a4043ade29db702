"""Timestamps on the wire: ISO 8601 UTC with `T` and milliseconds (pivotd's `timefmt.iso`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Timestamp = Annotated[str, Field(description="ISO 8601, UTC, milliseconds: `2026-11-22T03:10:00.000+00:00`")]
