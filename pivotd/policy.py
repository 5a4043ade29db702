"""Which scope a request needs and which rate-limit category it counts against: one table for every route.

The default follows the method: GET, HEAD and WebSocket handshakes (all streams are read-only) need
`read` and count as `read`; every other method needs `write` and counts as `write`. `POLICY` lists
the exceptions, first match wins; a field left `None` keeps the default. New routes get the default
without an entry here. docs/api.md ("Scopes and rate limits") shows the same table in prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class Category(StrEnum):
    READ = "read"
    WRITE = "write"
    INGEST = "ingest"  # layer-wise and scalar metrics from training scripts (the layer-wise routes, the SDK)
    TELEMETRY = "telemetry"  # telemetry events; counts events, not requests
    EXPORT = "export"


@dataclass(frozen=True, slots=True)
class Requirement:
    scope: str
    category: Category


@dataclass(frozen=True, slots=True)
class Rule:
    methods: frozenset[str] | None  # None: any method
    path: re.Pattern[str]
    scope: str | None = None
    category: Category | None = None


def _rule(methods: str | None, path: str, scope: str | None = None, category: Category | None = None) -> Rule:
    return Rule(frozenset(methods.split()) if methods else None, re.compile(path), scope, category)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

POLICY: tuple[Rule, ...] = (
    # Managing keys hands out access; webhooks make the daemon send every training event to a URL of the
    # caller's choosing (and reach hosts the caller may not); clearing all notifications is system-wide.
    _rule(None, r"^/api/v1/api-keys(/|$)", scope="admin"),
    _rule(None, r"^/api/v1/webhooks(/|$)", scope="admin"),
    _rule("DELETE", r"^/api/v1/notifications/?$", scope="admin"),
    # Submitting or cancelling a job runs (or stops) code as the daemon's user: a scope of its own, not admin's.
    _rule("POST", r"^/api/v1/jobs(/|$)", scope="jobs"),
    # Any caller may open (and end) a browser session with the scopes it has: a read key too.
    _rule(None, r"^/api/v1/auth/session/?$", scope="read"),
    # Training scripts: their own, very high limit, so a normal script is never throttled.
    _rule("POST", r"^/api/v1/metrics/layerwise(/batch)?/?$", category=Category.INGEST),
    _rule("POST", r"^/api/v1/runs/[^/]+/(scalars|finish)/?$", category=Category.INGEST),
    _rule("POST", r"^/api/v1/telemetry/events/?$", category=Category.TELEMETRY),
    # Reads that take a body: they change nothing, so a read key may call them.
    # Exactly the three export routes: a pattern for "any .../export path" let a read key's POST reach other
    # routes whose path merely contains `export` (an experiment or run named so).
    _rule(
        "POST",
        r"^/api/v1/(experiments/[^/]+/export|export/comparison|telemetry/export)/?$",
        scope="read",
        category=Category.EXPORT,
    ),
    _rule("POST", r"^/api/(infer|infer_adhoc)/?$", scope="read", category=Category.READ),
)


@lru_cache(maxsize=4096)
def requirement(method: str, path: str) -> Requirement:
    """What `method path` needs; WebSocket handshakes pass method GET."""
    safe = method in SAFE_METHODS
    scope, category = ("read", Category.READ) if safe else ("write", Category.WRITE)
    for rule in POLICY:
        if (rule.methods is None or method in rule.methods) and rule.path.match(path):
            return Requirement(rule.scope or scope, rule.category or category)
    return Requirement(scope, category)
