"""bench/access: what API-key authentication and rate limiting cost per request.

1. In process: the access middleware alone (a no-op app behind it), per request, for each kind of caller,
   against no middleware at all. Exact and unaffected by other processes.
2. End to end: layer-wise ingest from 16 clients on one daemon, phases alternating between the trusted
   loopback owner (no credentials: nothing to check, never limited) and an API key with a limit far above
   the load (SHA-256 lookup, policy table, token bucket, X-RateLimit-* headers). The summary compares the
   medians of throughput and of the daemon's CPU time per step (which other processes do not move).

    .venv/bin/python bench/access.py [--seconds 5] [--rounds 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pivotd
from bench.ingest import run, single
from pivotd.apikeys import ApiKey, KeyRing, digest
from pivotd.auth import AccessMiddleware
from pivotd.authsessions import SessionRing
from pivotd.policy import Category
from pivotd.ratelimit import RateLimiter
from pivotd.refusals import Refusals
from pivotd.runtokens import RunTokens

TOKEN = "bench-token-0123456789"


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


def _scope(authorization: bytes | None) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", b"900")]
    if authorization:
        headers.append((b"authorization", authorization))
    return {"type": "http", "method": "POST", "path": "/api/v1/metrics/layerwise", "client": ("127.0.0.1", 50000),
            "headers": headers}  # fmt: skip


async def middleware_costs(requests: int = 200_000) -> list[str]:
    keys = KeyRing()  # no store: authenticate works on the in-memory index alone
    secret = (await _fake_key(keys)).encode()
    limiter = RateLimiter(dict.fromkeys(Category, 10**12), 10_000)
    sessions = SessionRing(keys, 3600)
    middleware = AccessMiddleware(_app, TOKEN, True, keys, sessions, limiter, Refusals(), 2 * 2**20, RunTokens(), 2**20)
    cases = {
        "no middleware": (_app, _scope(None)),
        "loopback, no credentials (owner)": (middleware, _scope(None)),
        "daemon token (owner)": (middleware, _scope(b"Bearer " + TOKEN.encode())),
        "API key, rate limited": (middleware, _scope(b"Bearer " + secret)),
    }
    lines = []
    for name, (handler, scope) in cases.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(requests):
                await handler(scope, _receive, _send)
            best = min(best, (time.perf_counter() - started) / requests)
        lines.append(f"  {name:36} {best * 1e6:6.2f} us/request")
    return lines


async def _fake_key(keys: KeyRing) -> str:
    secret = "pvk_" + "b" * 43
    key = ApiKey("key_bench", "bench", ("write",), secret[:12], digest(secret), time.time())
    key.stored_last_used_at = float("inf")  # no store to record last use in
    keys._by_digest[key.digest] = key  # what KeyRing.create does, without a store
    return secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    print("bench/access: the access middleware alone (best of 3 x 200,000 calls)")
    print("\n".join(asyncio.run(middleware_costs())))
    print(f"\nlayer-wise ingest, 3 layers, {args.clients} clients, {args.seconds:.0f} s phases, alternating")
    rates: dict[str, list[float]] = {}
    cpu_per_step: dict[str, list[float]] = {}
    settings = {"max_db_bytes": str(50 * 2**30), "rate_limit_ingest_per_min": str(10**12)}
    with pivotd(**settings) as daemon:
        created = httpx.post(f"{daemon.url}/api/v1/api-keys", json={"api_key": {"name": "bench", "scopes": ["write"]}})
        key = created.json()["data"]["key"]
        for _ in range(args.rounds):
            for name, authorization in (("owner (no credentials)", None), ("API key", f"Bearer {key}")):
                result = run(name, daemon.url, daemon.pid, args.clients, args.seconds, single(3), None, authorization)
                assert result.errors == 0, f"{result.errors} requests failed"
                rates.setdefault(name, []).append(result.units / result.seconds)
                cpu_per_step.setdefault(name, []).append(result.cpu * result.seconds / result.units)
                print(result.line("steps/s"), flush=True)
    print()
    for name in rates:
        print(f"  {name:24} median {statistics.median(rates[name]):>8,.0f} steps/s  "
              f"daemon CPU {statistics.median(cpu_per_step[name]) * 1e6:6.1f} us/step")  # fmt: skip


if __name__ == "__main__":
    main()
