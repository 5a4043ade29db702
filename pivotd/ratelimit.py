"""Token buckets per (client, category): per-minute limits with smooth refill.

A bucket holds up to `limit` tokens and refills at `limit / 60` per second, so a client may burst its
whole minute's allowance and then continues at the steady rate. `X-RateLimit-Reset` is the Unix second
at which the bucket is full again, `Retry-After` the seconds until the request that was refused would
pass.

Clients are API keys or, for requests without valid credentials, addresses (an IPv6 address by its /64,
the block one host or customer usually holds, so a client cannot walk through its own addresses). Key
buckets are kept for good: there are as many as keys. Address buckets are bounded by `max_clients`, and
anyone can make new addresses appear, so forgetting a bucket must never hand a throttled client a fresh
allowance: only a bucket that is full again (the same as no bucket) is forgotten, the least recently used
first. While none is, new addresses share one overflow bucket per category, which bounds them all together.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pivotd.policy import Category

WINDOW_S = 60.0
IPV6_CLIENT_PREFIX = 64
EVICTION_PROBES = 8
"""Least recently used address buckets looked at for a full one when a new address needs room; bounded so
that a flood of new addresses costs constant time each."""


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


def address_client(host: str | None) -> str:
    """The client an address counts as: itself for IPv4, its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


class RateLimiter:
    def __init__(
        self,
        limits: Mapping[Category, int],
        max_clients: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = dict(limits)
        self._max_address_buckets = max_clients
        self._clock = clock
        # (client, category) -> [tokens, updated_at]
        self._key_buckets: dict[tuple[str, Category], list[float]] = {}
        # Ordered from least to most recently used.
        self._address_buckets: OrderedDict[tuple[str, Category], list[float]] = OrderedDict()
        self._overflow: dict[Category, list[float]] = {}

    def limit(self, category: Category) -> int:
        """Per minute; 0 means unlimited."""
        return self._limits.get(category, 0)

    def take_for_key(self, key_id: str, category: Category, cost: int = 1) -> Decision | None:
        """Spend `cost` tokens of an API key's bucket, or refuse without spending any. None: no limit applies.
        A cost above the whole limit is charged as the limit, so one oversized batch passes on a full bucket."""
        limit = self.limit(category)
        if limit <= 0:
            return None
        now = self._clock()
        bucket = self._key_buckets.setdefault((key_id, category), [float(limit), now])
        return _spend(bucket, limit, cost, now)

    def take_for_address(self, host: str | None, category: Category, cost: int = 1) -> Decision | None:
        """As `take_for_key`, for a request without valid credentials from `host`."""
        limit = self.limit(category)
        if limit <= 0:
            return None
        now = self._clock()
        key = (address_client(host), category)
        bucket = self._address_buckets.get(key)
        if bucket is not None:
            self._address_buckets.move_to_end(key)
        elif len(self._address_buckets) < self._max_address_buckets or self._forget_a_full_bucket(now):
            bucket = self._address_buckets[key] = [float(limit), now]
        else:
            bucket = self._overflow.setdefault(category, [float(limit), now])
        return _spend(bucket, limit, cost, now)

    def _forget_a_full_bucket(self, now: float) -> bool:
        for probed, (key, bucket) in enumerate(self._address_buckets.items()):
            if probed == EVICTION_PROBES:
                return False
            limit = self.limit(key[1])
            if bucket[0] + (now - bucket[1]) * limit / WINDOW_S >= limit:
                del self._address_buckets[key]
                return True
        return False

    def __len__(self) -> int:
        return len(self._key_buckets) + len(self._address_buckets) + len(self._overflow)


def _spend(bucket: list[float], limit: int, cost: int, now: float) -> Decision:
    rate = limit / WINDOW_S
    cost = min(max(cost, 1), limit)
    bucket[0] = min(float(limit), bucket[0] + (now - bucket[1]) * rate)
    bucket[1] = now
    allowed = bucket[0] >= cost
    if allowed:
        bucket[0] -= cost
    tokens = bucket[0]
    retry_after = 0 if allowed else max(1, math.ceil((cost - tokens) / rate))
    return Decision(allowed, limit, int(tokens), math.ceil(now + (limit - tokens) / rate), retry_after)
