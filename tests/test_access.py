"""API keys, scopes and rate limits (issue 7 part 8) against a real daemon, over real HTTP and WebSockets."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pivotd.policy import Category, Requirement, requirement
from pivotd.ratelimit import Decision, RateLimiter, address_client
from shared.ctl import main as pivotctl
from tests.daemon import TEST_TOKEN, RunningDaemon, daemon_client, running_daemon
from tests.payloads import contract_payload
from tests.training.helpers import MLP, hyperparams

OWNER = {"authorization": f"Bearer {TEST_TOKEN}"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def create_key(http: httpx.AsyncClient, name: str, *scopes: str, headers: dict[str, str] | None = None) -> str:
    response = await http.post("/api/v1/api-keys", json={"api_key": {"name": name, "scopes": list(scopes)}},
                               headers=headers)  # fmt: skip
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["key"].startswith("pvk_") and data["prefix"] == data["key"][:12] and data["status"] == "active"
    key: str = data["key"]
    return key


async def test_read_key_cannot_write_and_gets_403_in_each_familys_envelope(http: httpx.AsyncClient) -> None:
    key = await create_key(http, "dashboard", "read")
    read = bearer(key)
    assert (await http.get("/api/v1/runs", headers=read)).status_code == 200
    assert (await http.get("/api/v1/experiments", headers=read)).status_code == 200
    # L: {"detail": {"error", "message"}}
    refused = await http.post("/api/v1/metrics/layerwise", json=contract_payload(), headers=read)
    assert refused.status_code == 403 and refused.json()["detail"]["error"] == "forbidden"
    assert "write" in refused.json()["detail"]["message"]
    # F/M: {"error": message}
    refused = await http.post("/api/models", json={"architecture": []}, headers=read)
    assert refused.status_code == 403 and "scope" in refused.json()["error"]
    # P/C: {"error": {"code", "message", "details"}}
    refused = await http.post("/api/v1/experiments", json={"experiment": {"name": "x"}}, headers=read)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "forbidden" and error["details"] == {"required_scope": "write", "granted_scopes": ["read"]}
    assert (await http.delete("/api/v1/runs/anything", headers=read)).status_code == 403
    assert (await http.get("/api/v1/api-keys", headers=read)).status_code == 403
    # Inference changes nothing: a read key may call it (and gets the route's own validation error).
    assert (await http.post("/api/infer", json={}, headers=read)).status_code == 400
    assert (await http.get("/api/v1/runs")).status_code == 200  # trusted loopback without credentials: owner


async def test_write_key_cannot_manage_keys_admin_can(http: httpx.AsyncClient) -> None:
    write = bearer(await create_key(http, "trainer", "write"))
    created = await http.post("/api/v1/experiments", json={"experiment": {"name": "by key"}}, headers=write)
    assert created.status_code == 201
    assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload(), headers=write)).status_code == 202
    for method, path in [("GET", "/api/v1/api-keys"), ("POST", "/api/v1/api-keys"), ("GET", "/api/v1/webhooks"),
                         ("POST", "/api/v1/webhooks"), ("DELETE", "/api/v1/notifications")]:  # fmt: skip
        refused = await http.request(method, path, headers=write, json={})
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error"]["details"]["required_scope"] == "admin"
    admin = bearer(await create_key(http, "ops", "admin"))
    third = await create_key(http, "made by an admin key", "read", "write", headers=admin)
    listed = (await http.get("/api/v1/api-keys", headers=admin)).json()
    assert listed["meta"]["total"] == 3
    assert {k["name"]: k["scopes"] for k in listed["data"]}["made by an admin key"] == ["read", "write"]
    assert all("key" not in k for k in listed["data"])  # the secret is only in the create response
    assert third not in str(listed)


async def test_revoked_and_bad_keys_get_401_even_from_loopback(http: httpx.AsyncClient) -> None:
    key = await create_key(http, "short-lived", "read")
    listed = (await http.get("/api/v1/api-keys")).json()["data"]
    key_id = listed[0]["id"]
    assert (await http.get("/api/v1/runs", headers=bearer(key))).status_code == 200
    assert (await http.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204
    refused = await http.get("/api/v1/runs", headers=bearer(key))
    assert refused.status_code == 401 and refused.json()["detail"]["error"] == "unauthorized"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    shown = (await http.get(f"/api/v1/api-keys/{key_id}")).json()["data"]
    assert shown["status"] == "revoked" and shown["revoked_at"] and shown["last_used_at"]
    assert (await http.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204  # revoking twice is harmless
    missing = await http.delete("/api/v1/api-keys/key_0000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    for wrong in ("pvk_" + "A" * 43, "not-a-key", key[:-1]):
        refused = await http.get("/api/v1/experiments", headers=bearer(wrong))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", wrong


async def test_bad_create_bodies_name_the_field(http: httpx.AsyncClient) -> None:
    bad = await http.post("/api/v1/api-keys", json={"api_key": {"name": "x", "scopes": ["root"]}})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"].startswith("api_key.scopes[0]")
    bad = await http.post("/api/v1/api-keys", json={"name": "unwrapped"})
    assert bad.status_code == 422 and "api_key" in bad.json()["error"]["message"]


async def test_keys_survive_a_restart_and_are_stored_only_as_digests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_daemon(tmp_path, access_log=True) as daemon, daemon_client(daemon.url) as http:
        key = await create_key(http, "ci", "write")
        assert (await http.get("/api/v1/runs", headers=bearer(key))).status_code == 200
    async with running_daemon(tmp_path, trust_loopback=False) as daemon, daemon_client(daemon.url) as http:
        assert (await http.get("/api/v1/runs", headers=bearer(key))).status_code == 200
        listed = (await http.get("/api/v1/api-keys", headers=OWNER)).json()["data"]
        assert listed[0]["last_used_at"] is not None  # written at its first use, not on every request
    files = [p for p in tmp_path.iterdir() if p.name.startswith("pivot.db")]
    secret = key.removeprefix("pvk_").encode()
    assert files and not any(secret in p.read_bytes() for p in files)
    with sqlite3.connect(tmp_path / "pivot.db") as conn:
        (stored,) = conn.execute("SELECT digest FROM api_keys").fetchone()
    assert len(stored) == 32  # SHA-256
    assert key not in caplog.text and secret.decode() not in caplog.text
    assert "created API key" in caplog.text


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(
        tmp_path,
        rate_limit_read_per_min=5,
        rate_limit_write_per_min=3,
        rate_limit_ingest_per_min=2,
        rate_limit_telemetry_events_per_min=10,
        rate_limit_export_per_min=1,
        telemetry_max_body_bytes=4096,
    ) as daemon:
        yield daemon


def limit_headers(response: httpx.Response) -> tuple[int, int, int]:
    h = response.headers
    return int(h["x-ratelimit-limit"]), int(h["x-ratelimit-remaining"]), int(h["x-ratelimit-reset"])


async def test_429_with_headers_and_reset_arithmetic(limited: RunningDaemon) -> None:
    async with daemon_client(limited.url) as http:
        write = bearer(await create_key(http, "writer", "write"))
        for expected_remaining in (2, 1, 0):
            before = time.time()
            response = await http.post("/api/v1/experiments", json={"experiment": {"name": "x"}}, headers=write)
            assert response.status_code == 201
            limit, remaining, reset = limit_headers(response)
            assert (limit, remaining) == (3, expected_remaining)
            # 3 a minute refill one every 20 s: full again (3 - remaining) * 20 s from now, rounded up.
            assert math.floor(before) <= reset - (3 - remaining) * 20 <= math.ceil(time.time()) + 1
        refused = await http.post("/api/v1/experiments", json={"experiment": {"name": "x"}}, headers=write)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert refused.json()["error"]["details"]["category"] == "write"
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert limit_headers(refused)[:2] == (3, 0)
        # Categories are separate buckets: reads still pass, with their own headers.
        listed = await http.get("/api/v1/experiments", headers=write)
        assert listed.status_code == 200 and limit_headers(listed)[:2] == (5, 4)
        assert len(listed.json()["data"]) == 3  # the refused POST created nothing
        # L's envelope for 429 on the ingest category.
        for _ in range(2):
            accepted = await http.post("/api/v1/metrics/layerwise", json=contract_payload(), headers=write)
            assert accepted.status_code == 202, accepted.text
        refused = await http.post("/api/v1/metrics/layerwise", json=contract_payload(), headers=write)
        assert refused.status_code == 429 and refused.json()["detail"]["error"] == "rate_limited"
        # Trusted loopback without credentials, and the daemon token, are never limited and get no headers.
        for headers in ({}, OWNER):
            for _ in range(8):
                response = await http.post("/api/v1/experiments", json={"experiment": {"name": "y"}}, headers=headers)
                assert response.status_code == 201 and "x-ratelimit-limit" not in response.headers


async def test_each_key_has_its_own_buckets(limited: RunningDaemon) -> None:
    async with daemon_client(limited.url) as http:
        first, second = bearer(await create_key(http, "a", "read")), bearer(await create_key(http, "b", "read"))
        for _ in range(5):
            assert (await http.get("/api/v1/runs", headers=first)).status_code == 200
        assert (await http.get("/api/v1/runs", headers=first)).status_code == 429
        assert (await http.get("/api/v1/runs", headers=second)).status_code == 200


async def test_telemetry_counts_events_and_export_has_its_own_limit(limited: RunningDaemon) -> None:
    event = {"event_name": ["pivot", "test"], "measurements": {"duration_ms": 1}}
    async with daemon_client(limited.url) as http:
        key = bearer(await create_key(http, "telemetry", "write"))
        sent = await http.post("/api/v1/telemetry/events", json={"events": [event] * 8}, headers=key)
        assert sent.status_code == 202 and limit_headers(sent)[:2] == (10, 2)
        refused = await http.post("/api/v1/telemetry/events", json={"events": [event] * 3}, headers=key)
        assert refused.status_code == 429 and "events" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) == 6  # one event every 6 s; 1 more needed
        # A body that is not a batch counts as one event; the route answers for it.
        assert limit_headers(await http.post("/api/v1/telemetry/events", content=b"[", headers=key))[1] == 1
        # A body past the route's size cap cannot be counted: it costs a whole allowance, so none escapes.
        big = bearer(await create_key(http, "big", "write"))
        padded = {"events": [{**event, "metadata": {"note": "x" * 5000}}]}
        oversized = await http.post("/api/v1/telemetry/events", json=padded, headers=big)
        assert oversized.status_code == 413 and limit_headers(oversized)[:2] == (10, 0)
        assert (await http.post("/api/v1/telemetry/events", json={"events": [event]}, headers=big)).status_code == 429
        # Exports: a read key may export, once a minute here.
        read = bearer(await create_key(http, "reader", "read"))
        first = await http.post("/api/v1/export/comparison", json={}, headers=read)
        assert first.status_code not in (403, 429) and limit_headers(first)[:2] == (1, 0)
        assert (await http.post("/api/v1/telemetry/export", json={}, headers=read)).status_code == 429


async def test_per_address_limits_for_untrusted_peers(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, trust_loopback=False, rate_limit_read_per_min=3) as daemon:
        async with daemon_client(daemon.url) as anonymous:
            for remaining in (2, 1, 0):
                refused = await anonymous.get("/api/v1/experiments")
                assert refused.status_code == 401 and limit_headers(refused)[1] == remaining
            refused = await anonymous.get("/api/v1/experiments", headers=bearer("pvk_guess"))
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
            assert (await anonymous.get("/health")).status_code == 200  # always open, never limited
            owner = await anonymous.get("/api/v1/experiments", headers=OWNER)
            assert owner.status_code == 200 and "x-ratelimit-limit" not in owner.headers
        # Another address has its own bucket (all of 127.0.0.0/8 is loopback on Linux).
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with daemon_client(daemon.url, transport=transport) as elsewhere:
            refused = await elsewhere.get("/api/v1/experiments")
            assert refused.status_code == 401 and limit_headers(refused)[1] == 2


async def test_websocket_handshakes_with_keys(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, trust_loopback=False, rate_limit_read_per_min=2) as daemon:
        async with daemon_client(daemon.url, headers=OWNER) as http:
            key = await create_key(http, "viewer", "read")
        async with connect(f"{daemon.ws_url}?token={key}") as ws:
            assert '"initial_runs"' in await ws.recv()
        async with connect(daemon.ws_url, additional_headers=bearer(key)) as ws:
            assert '"initial_runs"' in await ws.recv()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(daemon.ws_url):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as refused:  # the third handshake in a minute with a limit of 2
            async with connect(f"{daemon.ws_url}?token={key}"):
                pass
        assert refused.value.response.status_code == 429
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 30


async def test_pivotctl_keys_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def ctl(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(pivotctl, ["--url", daemon.url, "--token", TEST_TOKEN, *args])
        out, err = capsys.readouterr()
        return code, out, err

    async with running_daemon(tmp_path, trust_loopback=False) as daemon:
        code, out, err = await ctl("keys", "create", "laptop", "--scope", "write")
        assert code == 0 and "shown only this once" in err
        key = out.strip()
        assert key.startswith("pvk_")
        code, out, _ = await ctl("keys", "list")
        assert code == 0 and "laptop" in out and "active" in out and "write" in out and key not in out
        code, out, _ = await ctl("--json", "keys", "list")
        (listed,) = json.loads(out)
        async with daemon_client(daemon.url, headers=bearer(key)) as http:
            assert (await http.get("/api/v1/runs")).status_code == 200
            code, out, _ = await ctl("keys", "revoke", listed["id"])
            assert code == 0 and "revoked" in out
            assert (await http.get("/api/v1/runs")).status_code == 401
        code, out, _ = await ctl("keys", "list")
        assert "revoked" in out
        code = await asyncio.to_thread(pivotctl, ["--url", daemon.url, "--token", key, "keys", "list"])
        assert code == 3 and "401" in capsys.readouterr().err  # a revoked key is refused: exit 3
        code, _, err = await ctl("keys", "revoke", "key_missing")
        assert code == 3 and "404" in err
    capsys.readouterr()


async def test_cursor_paging_is_stable_under_concurrent_inserts(http: httpx.AsyncClient) -> None:
    for index in range(30):
        created = await http.post("/api/v1/experiments", json={"experiment": {"name": f"old {index}"}})
        assert created.status_code == 201, created.text
    stop = asyncio.Event()

    async def insert_more() -> int:
        count = 0
        while not stop.is_set():
            created = await http.post("/api/v1/experiments", json={"experiment": {"name": f"new {count}"}})
            assert created.status_code == 201
            count += 1
        return count

    for sort in ("-created_at", "created_at", "name"):
        expected = await _all_ids(http, sort)
        old = {i for i, name in expected if name.startswith("old")}
        stop.clear()
        inserter = asyncio.create_task(insert_more())
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"per_page": 4, "sort": sort, **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/v1/experiments", params=params)).json()
            seen += [row["id"] for row in page["data"]]
            pages += 1
            await asyncio.sleep(0)  # let the inserter commit between pages
            if not page["meta"]["has_more"]:
                break
            cursor = page["meta"]["next_cursor"]
        stop.set()
        assert await inserter > 0 and pages > 5
        assert len(seen) == len(set(seen)), f"duplicates with sort={sort}"
        seen_old = [i for i in seen if i in old]
        assert seen_old == [i for i, _ in expected if i in old], f"skipped or reordered rows with sort={sort}"


async def _all_ids(http: httpx.AsyncClient, sort: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    page = 1
    while True:
        body = (await http.get("/api/v1/experiments", params={"per_page": 100, "page": page, "sort": sort})).json()
        rows += [(row["id"], row["name"]) for row in body["data"]]
        if not body["meta"]["has_more"]:
            return rows
        page += 1


def test_policy_table() -> None:
    assert requirement("GET", "/api/v1/anything-new") == requirement("HEAD", "/x") == Requirement("read", Category.READ)
    assert requirement("POST", "/api/v1/experiments/exp_1/start").scope == "write"
    assert requirement("DELETE", "/api/v1/models/m_1").category is Category.WRITE
    assert requirement("POST", "/api/v1/experiments/exp_1/export") == requirement("POST", "/api/v1/export/comparison")
    assert requirement("POST", "/api/v1/telemetry/export").scope == "read"
    assert requirement("POST", "/api/v1/telemetry/events").category is Category.TELEMETRY
    assert requirement("POST", "/api/v1/metrics/layerwise/batch").category is Category.INGEST
    assert requirement("POST", "/api/v1/runs/r1/scalars").category is Category.INGEST
    assert requirement("GET", "/socket/websocket").scope == "read"
    assert requirement("DELETE", "/api/v1/notifications").scope == "admin"
    assert requirement("POST", "/api/v1/notifications/n_1/read").scope == "write"
    assert requirement("GET", "/api/v1/api-keys/key_1").scope == "admin"
    # Any caller opens and ends its own browser session (a read key too), counted as a write.
    for method in ("POST", "DELETE"):
        assert requirement(method, "/api/v1/auth/session") == Requirement("read", Category.WRITE)
    # Only the three export routes are reads; a path that merely contains "export" is not.
    for path in ("/api/v1/experiments/export/runs", "/api/v1/checkpoints/export", "/api/v1/export/comparison/x"):
        assert requirement("POST", path) == Requirement("write", Category.WRITE), path
    assert requirement("GET", "/api/v1/experiments/e/export").category is Category.READ


async def test_a_read_key_cannot_write_through_a_path_containing_export(http: httpx.AsyncClient) -> None:
    read = bearer(await create_key(http, "reader", "read"))
    created = await http.post("/api/v1/experiments", json={"experiment": {"name": "x"}})
    experiment_id = created.json()["data"]["id"]
    for path in ("/api/v1/experiments/export/runs", f"/api/v1/experiments/{experiment_id}/export/runs"):
        refused = await http.post(path, json={"run": {"group": "a"}}, headers=read)
        assert refused.status_code == 403 and refused.json()["error"]["details"]["required_scope"] == "write", path
    exported = await http.post(f"/api/v1/experiments/{experiment_id}/export", json={}, headers=read)
    assert exported.status_code == 200


def test_limiter_buckets_refill_and_memory_is_bounded() -> None:
    now = [1000.0]
    limiter = RateLimiter({Category.WRITE: 60}, max_clients=100, clock=lambda: now[0])
    assert limiter.take_for_key("a", Category.READ) is None  # no limit configured for reads
    first = limiter.take_for_key("a", Category.WRITE, cost=60)
    assert first is not None and first.allowed and first.remaining == 0 and first.reset == 1060
    refused = limiter.take_for_key("a", Category.WRITE)
    assert refused is not None and not refused.allowed and refused.retry_after == 1
    now[0] += 1.5
    again = limiter.take_for_key("a", Category.WRITE)
    assert again is not None and again.allowed and again.remaining == 0 and again.reset == 1061  # 0.5 left
    oversized = limiter.take_for_key("b", Category.WRITE, cost=500)  # charged as the whole limit
    assert oversized is not None and oversized.allowed and oversized.remaining == 0
    for client in range(1000):
        limiter.take_for_address(f"10.0.{client // 256}.{client % 256}", Category.WRITE)
    assert len(limiter) <= 2 + 100 + 1  # two keys, the address cap, one overflow bucket


def allowed(decision: Decision | None) -> bool:
    assert decision is not None
    return decision.allowed


def test_address_churn_never_refreshes_a_throttled_client() -> None:
    """Anyone can make new addresses appear. Evicting the least recently used bucket would hand a throttled
    key or address a fresh allowance after enough churn; only buckets that are full again are forgotten, and
    while there are none, new addresses share one overflow bucket."""
    now = [1000.0]
    limiter = RateLimiter({Category.READ: 60}, max_clients=100, clock=lambda: now[0])
    assert allowed(limiter.take_for_key("k", Category.READ, cost=60))
    assert allowed(limiter.take_for_address("192.0.2.1", Category.READ, cost=60))
    for client in range(1000):  # churn: 1,000 new addresses, each spending one request
        limiter.take_for_address(f"10.0.{client // 256}.{client % 256}", Category.READ)
    assert not allowed(limiter.take_for_key("k", Category.READ))
    assert not allowed(limiter.take_for_address("192.0.2.1", Category.READ))
    # The overflow bucket took the addresses past the cap: together they had one allowance (60), now spent.
    assert not allowed(limiter.take_for_address("198.51.100.7", Category.READ))
    assert len(limiter) == 1 + 100 + 1
    # A minute later every bucket is full again, so forgettable: new addresses get their own again.
    now[0] += 60
    assert allowed(limiter.take_for_address("198.51.100.7", Category.READ, cost=60))
    assert not allowed(limiter.take_for_address("198.51.100.7", Category.READ))
    assert len(limiter) == 1 + 100 + 1


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert address_client("2001:db8:1:2:aaaa::1") == address_client("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_client("2001:db8:1:3::1") == "2001:db8:1:3::/64"
    assert address_client("::ffff:192.0.2.5") == address_client("192.0.2.5") == "192.0.2.5"
    assert address_client(None) == "unknown"
    limiter = RateLimiter({Category.READ: 2}, max_clients=100)
    assert allowed(limiter.take_for_address("2001:db8::1", Category.READ, cost=2))
    assert not allowed(limiter.take_for_address("2001:db8::2", Category.READ))  # the same /64
    assert allowed(limiter.take_for_address("2001:db8:0:1::1", Category.READ))


async def test_forwarded_headers_do_not_change_who_the_peer_is(tmp_path: Path) -> None:
    """uvicorn's proxy_headers would take the client address from X-Forwarded-For on a request from 127.0.0.1:
    a client could then pass as loopback (the owner) or dodge its per-address limit with a new address each
    time. pivotd ignores the header: every request here counts against 127.0.0.1's one bucket."""
    untrusting = running_daemon(tmp_path, trust_loopback=False, rate_limit_read_per_min=2)
    async with untrusting as daemon, daemon_client(daemon.url) as anonymous:
        for remaining, forwarded in ((1, "10.0.0.1"), (0, "10.0.0.2")):
            refused = await anonymous.get("/api/v1/experiments", headers={"x-forwarded-for": forwarded})
            assert refused.status_code == 401 and limit_headers(refused)[1] == remaining
        refused = await anonymous.get("/api/v1/experiments", headers={"x-forwarded-for": "10.0.0.3"})
        assert refused.status_code == 429
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as local:
        # Nor does the header make a loopback peer remote (it stays the trusted owner).
        assert (await local.get("/api/v1/experiments", headers={"x-forwarded-for": "203.0.113.9"})).status_code == 200


async def test_revoking_a_key_closes_the_websockets_it_opened(tmp_path: Path) -> None:
    """Open sockets do not outlive their key: revoking it closes them with 1008 at once, with no frame needed
    from the client; sockets opened with another key, or the token, stay open."""
    untrusting = running_daemon(tmp_path, trust_loopback=False)
    async with untrusting as daemon, daemon_client(daemon.url, headers=OWNER) as http:
        key, other = await create_key(http, "viewer", "read"), await create_key(http, "other", "read")
        key_id = next(k["id"] for k in (await http.get("/api/v1/api-keys")).json()["data"] if k["name"] == "viewer")
        socket_url = "ws" + daemon.url.removeprefix("http") + "/socket/websocket?vsn=2.0.0"
        async with (
            connect(daemon.ws_url, additional_headers=bearer(key)) as ws,
            connect(f"{socket_url}&token={key}") as phoenix,
            connect(f"{socket_url}&token={other}") as unrelated,
        ):
            assert '"initial_runs"' in await ws.recv()
            await phoenix.send(json.dumps(["1", "1", "telemetry:all", "phx_join", {}]))
            assert json.loads(await phoenix.recv())[3] == "phx_reply"
            assert (await http.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204
            for socket in (ws, phoenix):
                async with asyncio.timeout(5):
                    await socket.wait_closed()
                assert socket.close_code == 1008 and socket.close_reason == "API key revoked"
            await unrelated.send(json.dumps([None, "2", "phoenix", "heartbeat", {}]))
            assert json.loads(await unrelated.recv())[1] == "2"  # still open
        with pytest.raises(InvalidStatus) as refused:
            async with connect(daemon.ws_url, additional_headers=bearer(key)):
                pass
        assert refused.value.response.status_code == 401


async def test_a_revocation_that_failed_to_persist_is_persisted_by_the_retry(tmp_path: Path) -> None:
    """Fault injection without mocks: a trigger on the live database makes the revocation's write fail.
    The key is refused at once all the same; the retry must write it, or it would come back after a restart."""
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        key = await create_key(http, "flaky disk", "read")
        key_id = (await http.get("/api/v1/api-keys")).json()["data"][0]["id"]
        with sqlite3.connect(tmp_path / "pivot.db") as conn:
            conn.execute(
                "CREATE TRIGGER fail_revoke BEFORE UPDATE OF revoked_at ON api_keys "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        failed = await http.delete(f"/api/v1/api-keys/{key_id}")
        assert failed.status_code == 500
        assert (await http.get("/api/v1/runs", headers=bearer(key))).status_code == 401
        with sqlite3.connect(tmp_path / "pivot.db") as conn:
            conn.execute("DROP TRIGGER fail_revoke")
        assert (await http.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204
        assert (await http.get(f"/api/v1/api-keys/{key_id}")).json()["data"]["status"] == "revoked"
    with sqlite3.connect(tmp_path / "pivot.db") as conn:
        (revoked_at,) = conn.execute("SELECT revoked_at FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    assert revoked_at is not None
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        assert (await http.get("/api/v1/runs", headers=bearer(key))).status_code == 401


async def test_revoking_a_key_ends_the_event_streams_it_opened(tmp_path: Path) -> None:
    """An SSE feed of a run that has not ended would otherwise outlive its key until the run ends."""
    untrusting = running_daemon(tmp_path, trust_loopback=False)
    async with untrusting as daemon, daemon_client(daemon.url, headers=OWNER) as http:
        key = await create_key(http, "viewer", "read")
        key_id = next(k["id"] for k in (await http.get("/api/v1/api-keys")).json()["data"] if k["name"] == "viewer")
        config = {"architecture": MLP, "hyperparams": hyperparams()}
        created = await http.post("/api/v1/training/sessions", json={"config": config})
        session_id = created.json()["session_id"]  # created, never started: its feed waits for news
        async with (
            daemon_client(daemon.url, headers=bearer(key)) as viewer,
            viewer.stream("GET", f"/api/v1/sse/training/{session_id}") as feed,
        ):
            assert feed.status_code == 200
            lines = feed.aiter_lines()
            assert await anext(lines) == "event: status"
            assert (await http.delete(f"/api/v1/api-keys/{key_id}")).status_code == 204
            async with asyncio.timeout(5):
                rest = [line async for line in lines]
        assert ": API key revoked" in rest  # said why, then the stream ended
        assert (await http.get(f"/api/v1/training/sessions/{session_id}")).json()["status"] == "created"
