"""The success envelopes of the `{"data": ..., "meta": ...}` routes, generic over what `data` holds.

`Data[T]` answers one object (its `meta` empty, or the route's own counts); `Page[T]` answers a page of a
list, its `meta` saying where the page sits. Routes name the concrete type (`Page[ExperimentPublic]`), so
the OpenAPI document and the clients see what `data` holds.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class PageMeta(BaseModel):
    """Where a page sits: `page` is null when the request paged by `cursor`."""

    total: int = Field(ge=0)
    page: int | None = Field(default=None, ge=1)
    per_page: int = Field(ge=1)
    count: int = Field(ge=0, description="Rows on this page")
    has_more: bool
    next_cursor: str | None = None


class Data(BaseModel, Generic[T]):
    data: T
    meta: dict[str, Any] = Field(default_factory=dict)


class Page(BaseModel, Generic[T]):
    data: list[T]
    meta: PageMeta
