"""Token buckets per (client, category): seed 004's per-minute limits with smooth refill.

A bucket holds up to `limit` tokens and refills at `limit / 60` per second, so a client may burst its
whole minute's allowance and then continues at the steady rate. `X-RateLimit-Reset` is the Unix second
at which the bucket is full again, `Retry-After` the seconds until the request that was refused would
pass. A full bucket is the same as no bucket, so forgetting the least recently used ones (past
`max_clients`) costs nothing but a fresh allowance for a client idle long enough to be last in line.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pivotd.policy import Category

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds when the bucket is full again
    retry_after: int  # seconds; 0 when allowed

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


class RateLimiter:
    def __init__(
        self,
        limits: Mapping[Category, int],
        max_clients: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = dict(limits)
        self._max_buckets = max_clients
        self._clock = clock
        # (client, category) -> [tokens, updated_at]; ordered from least to most recently used.
        self._buckets: OrderedDict[tuple[str, Category], list[float]] = OrderedDict()

    def limit(self, category: Category) -> int:
        """Per minute; 0 means unlimited."""
        return self._limits.get(category, 0)

    def take(self, client: str, category: Category, cost: int = 1) -> Decision | None:
        """Spend `cost` tokens of `client`'s bucket, or refuse without spending any. None: no limit applies.
        A cost above the whole limit is charged as the limit, so one oversized batch passes on a full bucket."""
        limit = self.limit(category)
        if limit <= 0:
            return None
        now = self._clock()
        rate = limit / WINDOW_S
        cost = min(max(cost, 1), limit)
        key = (client, category)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [float(limit), now]
            self._buckets[key] = bucket
            while len(self._buckets) > self._max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(float(limit), bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
        allowed = bucket[0] >= cost
        if allowed:
            bucket[0] -= cost
        tokens = bucket[0]
        retry_after = 0 if allowed else max(1, math.ceil((cost - tokens) / rate))
        return Decision(allowed, limit, int(tokens), math.ceil(now + (limit - tokens) / rate), retry_after)

    def __len__(self) -> int:
        return len(self._buckets)
