"""Query parameters several routes share: integer bounds SQLite can bind."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from pivotd.experiments.paging import MAX_PAGE, MAX_PER_PAGE
from shared.models.storable import INT64_MAX

MAX_OFFSET = MAX_PAGE * MAX_PER_PAGE
"""As deep as family C's page numbers reach."""

StepBound = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
"""`from_step`/`to_step`: inclusive bounds on a run's steps, up to SQLite's largest INTEGER (beyond, binding fails)."""
