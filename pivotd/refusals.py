"""Refused ingest requests since the daemon started, by category and status, for `/metrics`.

Counted where refusals are rendered: the access middleware (401, 403, 429) and the error handlers (422, 404,
409, 413, ...). Only the ingest categories, so the label set stays small and a scrape says how much training
data was turned away, not how often someone mistyped a URL.
"""

from __future__ import annotations

from collections import Counter

from pivotd.policy import Category

COUNTED = frozenset({Category.INGEST, Category.TELEMETRY})


class Refusals:
    def __init__(self) -> None:
        self.counts: Counter[tuple[Category, int]] = Counter()

    def record(self, category: Category, status: int) -> None:
        if category in COUNTED:
            self.counts[category, status] += 1
