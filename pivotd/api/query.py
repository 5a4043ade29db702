"""Query parameters several routes share: integer bounds SQLite can bind, and refusing unknown `filter[...]` keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import Field

from pivotd.errors import invalid_param
from pivotd.experiments.paging import MAX_PAGE, MAX_PER_PAGE
from shared.models.storable import INT64_MAX

MAX_OFFSET = MAX_PAGE * MAX_PER_PAGE
"""As deep as `{"data", "meta"}` page numbers reach."""

StepBound = Annotated[int | None, Query(ge=0, le=INT64_MAX)]
"""`from_step`/`to_step`: inclusive bounds on a run's steps, up to SQLite's largest INTEGER (beyond, binding fails)."""


Instant = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
"""An instant in a query (`filter[after]`, ...): an ISO 8601 datetime, which the route parses itself to name the
parameter in its 422. Documented as RFC 3339's `date-time`, every one of which it accepts."""


def only_filters(*known: str) -> Any:
    """A dependency refusing `filter[...]` parameters the route does not know (a typo must not silently match
    everything), as the telemetry routes do."""

    def check(request: Request) -> None:
        for param in request.query_params:
            if param.startswith("filter[") and param not in known:
                raise invalid_param(param, f"unknown filter; one of {', '.join(known)}")

    return Depends(check)


PageNumber = Annotated[
    int,
    Query(
        json_schema_extra={"minimum": 1, "maximum": MAX_PAGE},
        description=f"From 1 to {MAX_PAGE:,}; deeper listings are walked by `cursor`",
    ),
]
"""`page` of a `{"data", "meta"}` list. Its bounds are documented here and checked by `page_request`, whose 422
says the range."""
PerPage = Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PER_PAGE})]
Cursor = Annotated[str | None, Query(max_length=512, description="A previous page's `meta.next_cursor`")]
