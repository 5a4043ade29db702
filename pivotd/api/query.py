"""Query parameters several routes share: integer bounds SQLite can bind."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from pivotd.experiments.paging import MAX_PAGE, MAX_PER_PAGE

MAX_INT64 = 2**63 - 1
"""SQLite's largest INTEGER: a bigger value cannot even be bound (OverflowError, a 500), and no row holds one."""
MAX_OFFSET = MAX_PAGE * MAX_PER_PAGE
"""As deep as family C's page numbers reach."""

StepBound = Annotated[int | None, Query(ge=0, le=MAX_INT64)]
"""`from_step`/`to_step`: inclusive bounds on a run's steps."""
