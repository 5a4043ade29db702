"""Seed 004's session cookie (`Cookie: _crucible_ui_key=<session_token>`) against a real daemon: opening a session
(owner, API key), using it on every route family, WebSocket and SSE, cross-site refusal, logout, revocation,
expiry and restarts."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from shared.models.auth import AuthSessionCreated
from tests.daemon import TEST_TOKEN, RunningDaemon, daemon_client, running_daemon
from tests.payloads import contract_payload
from tests.training.helpers import MLP, hyperparams

OWNER = {"authorization": f"Bearer {TEST_TOKEN}"}
EVIL = "http://evil.example"
CLEARED = "_crucible_ui_key=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"


def seed_cookie(token: str) -> dict[str, str]:
    """Seed 004's header, as the seed writes it."""
    return {"Cookie": f"_crucible_ui_key={token}"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def cookie_parts(response: httpx.Response) -> tuple[str, list[str]]:
    """The session token a Set-Cookie header carries, and its attributes."""
    name, _, rest = response.headers["set-cookie"].partition("=")
    token, *attributes = (part.strip() for part in rest.split(";"))
    assert name == "_crucible_ui_key"
    return token, attributes


async def login(url: str, headers: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """Open a session as the caller `headers` authenticate (none: the trusted loopback owner): its token and body."""
    async with daemon_client(url) as http:
        response = await http.post("/api/v1/auth/session", headers=headers)
    assert response.status_code == 201, response.text
    token, _ = cookie_parts(response)
    assert token.startswith("pvs_") and len(token) == 4 + 43
    assert token not in response.text  # only in Set-Cookie
    data: dict[str, Any] = response.json()["data"]
    return token, data


async def create_key(url: str, name: str, scope: str) -> tuple[str, str]:
    async with daemon_client(url, headers=OWNER) as http:
        created = await http.post("/api/v1/api-keys", json={"api_key": {"name": name, "scopes": [scope]}})
    assert created.status_code == 201, created.text
    return created.json()["data"]["key"], created.json()["data"]["id"]


async def new_training_session(url: str) -> str:
    """A seed 002 training session, created and never started: its SSE feed and socket wait for news."""
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    async with daemon_client(url, headers=OWNER) as http:
        created = await http.post("/api/v1/training/sessions", json={"config": config})
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session_id"]
    return session_id


def socket_urls(daemon: RunningDaemon, training_session: str) -> dict[str, str]:
    base = "ws" + daemon.url.removeprefix("http")
    return {
        "/ws": base + "/ws",
        "/socket/websocket": base + "/socket/websocket?vsn=2.0.0",
        "/api/v1/ws/training": f"{base}/api/v1/ws/training/{training_session}",
    }


async def first_frame(name: str, socket: ClientConnection) -> None:
    """Each socket's first answer, proving the handshake was accepted and the route serves it."""
    if name == "/socket/websocket":
        await socket.send(json.dumps(["1", "1", "telemetry:all", "phx_join", {}]))
        assert json.loads(await socket.recv())[3] == "phx_reply"
    elif name == "/ws":
        assert '"initial_runs"' in await socket.recv()
    else:
        assert json.loads(await socket.recv())["type"] == "status"


@pytest.fixture
async def untrusting(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    """Loopback is not trusted here, so whatever passes did so by its credentials, the cookie included."""
    async with running_daemon(tmp_path, trust_loopback=False) as daemon:
        yield daemon


async def test_the_owners_session_works_on_every_route_family(untrusting: RunningDaemon) -> None:
    async with daemon_client(untrusting.url) as http:
        opened = await http.post("/api/v1/auth/session", headers=OWNER)
    assert opened.status_code == 201, opened.text
    token, attributes = cookie_parts(opened)
    assert attributes == ["Path=/", "Max-Age=604800", "HttpOnly", "SameSite=Strict"]  # no Secure over plain HTTP
    assert AuthSessionCreated.model_validate(opened.json()).model_dump() == opened.json()  # the documented model
    data = opened.json()["data"]
    assert data["id"].startswith("ses_") and data["scopes"] == ["read", "write", "admin"]
    assert data["api_key_id"] is None and token not in opened.text
    created, expires = datetime.fromisoformat(data["created_at"]), datetime.fromisoformat(data["expires_at"])
    assert expires - created == timedelta(days=7)

    session_id = await new_training_session(untrusting.url)
    async with daemon_client(untrusting.url, headers=seed_cookie(token)) as browser:
        # Seed 000 (L)
        assert (await browser.post("/api/v1/metrics/layerwise", json=contract_payload())).status_code == 202
        assert "experiment_2024_0210_v2" in (await browser.get("/api/v1/runs")).json()
        # Seeds 001 and 003 (F/M): inference reaches the route, which answers for the empty body
        assert (await browser.get("/api/models")).status_code == 200
        assert (await browser.post("/api/infer", json={})).status_code == 400
        # Seed 002 (P)
        assert (await browser.get(f"/api/v1/training/sessions/{session_id}")).json()["status"] == "created"
        assert (await browser.get("/api/v1/monitor/resources")).status_code == 200
        # Seed 004 (C)
        made = await browser.post("/api/v1/experiments", json={"experiment": {"name": "by cookie"}})
        assert made.status_code == 201 and "x-ratelimit-limit" not in made.headers  # the owner's: never limited
        assert [e["name"] for e in (await browser.get("/api/v1/experiments")).json()["data"]] == ["by cookie"]
        event = {"event_name": ["pivot", "test"], "measurements": {"duration_ms": 1}}
        assert (await browser.post("/api/v1/telemetry/events", json={"events": [event]})).status_code == 202
        # Except running commands: even the owner's session lacks `jobs`, which only bearer credentials carry.
        job = {"job": {"command": ["true"], "cwd": "/"}}
        refused = await browser.post("/api/v1/jobs", json=job)
        assert refused.status_code == 403 and refused.json()["error"]["details"]["required_scope"] == "jobs"
    async with daemon_client(untrusting.url) as anonymous:
        assert (await anonymous.get("/api/v1/runs")).status_code == 401  # the cookie was what passed
        # A client that keeps cookies (as a browser does) logs in once and sends nothing else after.
        assert (await anonymous.post("/api/v1/auth/session", headers=OWNER)).status_code == 201
        assert (await anonymous.get("/api/v1/experiments")).status_code == 200


async def test_the_cookie_opens_websockets_and_event_streams(untrusting: RunningDaemon) -> None:
    token, _ = await login(untrusting.url, OWNER)
    session_id = await new_training_session(untrusting.url)
    for name, url in socket_urls(untrusting, session_id).items():
        async with connect(url, additional_headers=seed_cookie(token)) as socket:
            await first_frame(name, socket)
        with pytest.raises(InvalidStatus) as refused:  # and without it, this peer is nobody
            async with connect(url):
                pass
        assert refused.value.response.status_code == 401, name
    async with (
        daemon_client(untrusting.url, headers=seed_cookie(token)) as browser,
        browser.stream("GET", f"/api/v1/sse/training/{session_id}") as feed,
    ):
        assert feed.status_code == 200
        assert await anext(feed.aiter_lines()) == "event: status"


async def test_an_api_keys_session_has_its_scopes_and_limits(untrusting: RunningDaemon) -> None:
    key, key_id = await create_key(untrusting.url, "dashboard", "read")
    token, data = await login(untrusting.url, bearer(key))
    assert data["scopes"] == ["read"] and data["api_key_id"] == key_id
    write_key, _ = await create_key(untrusting.url, "trainer", "write")
    assert (await login(untrusting.url, bearer(write_key)))[1]["scopes"] == ["read", "write"]  # implied ones too
    async with daemon_client(untrusting.url, headers=seed_cookie(token)) as browser:
        listed = await browser.get("/api/v1/experiments")
        assert listed.status_code == 200 and listed.headers["x-ratelimit-limit"] == "1000"  # the key's bucket
        refused = await browser.post("/api/v1/experiments", json={"experiment": {"name": "x"}})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert "session lacks the 'write' scope" in error["message"]
        assert error["details"] == {"required_scope": "write", "granted_scopes": ["read"]}
        # A session cannot open another (that would outlive the expiry with no credential behind it).
        again = await browser.post("/api/v1/auth/session")
        assert again.status_code == 403 and "cannot open another session" in again.json()["error"]["message"]


async def test_bearer_credentials_win_over_the_cookie(untrusting: RunningDaemon) -> None:
    owner_token, _ = await login(untrusting.url, OWNER)
    read_key, _ = await create_key(untrusting.url, "reader", "read")
    async with daemon_client(untrusting.url) as http:
        # An owner's cookie does not lift a read key's limits: the request is the key's.
        both = {**seed_cookie(owner_token), **bearer(read_key)}
        assert (
            await http.post("/api/v1/experiments", json={"experiment": {"name": "x"}}, headers=both)
        ).status_code == 403
        # A dead cookie beside valid bearer credentials is not looked at.
        stale = {**seed_cookie("pvs_" + "A" * 43), **OWNER}
        assert (await http.get("/api/v1/experiments", headers=stale)).status_code == 200
        # ... nor is a live one: DELETE has no session to end.
        missing = await http.delete("/api/v1/auth/session", headers={**seed_cookie(owner_token), **OWNER})
        assert missing.status_code == 404 and "not authenticated by a session cookie" in missing.text
        assert (await http.get("/api/v1/experiments", headers=seed_cookie(owner_token))).status_code == 200


async def test_cross_site_unsafe_requests_with_the_cookie_are_refused(untrusting: RunningDaemon) -> None:
    token, _ = await login(untrusting.url, OWNER)
    session_id = await new_training_session(untrusting.url)
    host_port = untrusting.url.removeprefix("http://")
    port = host_port.rsplit(":", 1)[1]
    async with daemon_client(untrusting.url, headers=seed_cookie(token)) as browser:
        body = {"experiment": {"name": "csrf"}}
        for origin in (
            EVIL,
            "null",
            f"http://127.0.0.1:{int(port) + 1}",
            f"http://localhost:{port}",
            "http://127.0.0.1",
        ):
            refused = await browser.post("/api/v1/experiments", json=body, headers={"origin": origin})
            assert refused.status_code == 403, origin
            assert "another site" in refused.json()["error"]["message"]
        for method in ("PUT", "PATCH", "DELETE"):
            refused = await browser.request(method, "/api/v1/experiments/exp_x", json=body, headers={"origin": EVIL})
            assert refused.status_code == 403, method
        assert (await browser.get("/api/v1/experiments")).json()["data"] == []  # nothing was created
        # Reads are answered (no CORS headers: another site's page cannot read them); so are the same origin,
        # with the scheme's default port filled in, and programs that send no Origin at all.
        assert (await browser.get("/api/v1/experiments", headers={"origin": EVIL})).status_code == 200
        same = await browser.post("/api/v1/experiments", json=body, headers={"origin": untrusting.url})
        assert same.status_code == 201
        default_port = {"origin": "https://pivot.example", "host": "pivot.example"}
        assert (await browser.post("/api/v1/experiments", json=body, headers=default_port)).status_code == 201
        assert (await browser.post("/api/v1/experiments", json=body)).status_code == 201
        # Bearer credentials are no cross-site risk: a page cannot make the browser send them.
        bearer = await browser.post("/api/v1/experiments", json=body, headers={"origin": EVIL, **OWNER})
        assert bearer.status_code == 201, bearer.text
    for name, url in socket_urls(untrusting, session_id).items():
        with pytest.raises(InvalidStatus) as refused:  # a handshake is a GET that can act: refused too
            async with connect(url, additional_headers=seed_cookie(token), origin=EVIL):
                pass
        assert refused.value.response.status_code == 403, name
        async with connect(url, additional_headers=seed_cookie(token), origin=untrusting.url) as socket:
            await first_frame(name, socket)


async def test_logout_ends_the_session_and_closes_what_it_opened(untrusting: RunningDaemon) -> None:
    token, _ = await login(untrusting.url, OWNER)
    other, _ = await login(untrusting.url, OWNER)
    session_id = await new_training_session(untrusting.url)
    urls = socket_urls(untrusting, session_id)
    async with (
        connect(urls["/ws"], additional_headers=seed_cookie(token)) as ws,
        connect(urls["/socket/websocket"], additional_headers=seed_cookie(token)) as phoenix,
        connect(urls["/api/v1/ws/training"], additional_headers=seed_cookie(token)) as training,
        connect(urls["/socket/websocket"], additional_headers=seed_cookie(other)) as unrelated,
        daemon_client(untrusting.url, headers=seed_cookie(token)) as browser,
        browser.stream("GET", f"/api/v1/sse/training/{session_id}") as feed,
    ):
        for name, socket in (("/ws", ws), ("/socket/websocket", phoenix), ("/api/v1/ws/training", training)):
            await first_frame(name, socket)
        lines = feed.aiter_lines()
        assert await anext(lines) == "event: status"
        async with daemon_client(untrusting.url, headers=seed_cookie(token)) as logout:
            ended = await logout.delete("/api/v1/auth/session")
        assert ended.status_code == 204 and ended.headers["set-cookie"] == CLEARED
        for socket in (ws, phoenix, training):
            async with asyncio.timeout(5):
                await socket.wait_closed()
            assert socket.close_code == 1008 and socket.close_reason == "session ended"
        async with asyncio.timeout(5):
            rest = [line async for line in lines]
        assert ": session ended" in rest
        await first_frame("/socket/websocket", unrelated)  # another session's socket stays open
    async with daemon_client(untrusting.url) as http:
        refused = await http.get("/api/v1/runs", headers=seed_cookie(token))
        assert refused.status_code == 401 and refused.json()["detail"]["error"] == "unauthorized"
        assert refused.headers["set-cookie"] == CLEARED  # the browser forgets it
        assert (await http.delete("/api/v1/auth/session", headers=seed_cookie(token))).status_code == 401
        assert (await http.get("/api/v1/runs", headers=seed_cookie(other))).status_code == 200


async def test_invalid_cookies_are_401_even_from_trusted_loopback(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    token, data = await login(daemon.url)  # trusted loopback, no credentials: the owner opens it
    assert data["api_key_id"] is None and data["scopes"] == ["read", "write", "admin"]
    for value in ("", "garbage", "pvs_" + "A" * 43, token[:-1], token + "x", "pvk_" + token[4:]):
        refused = await http.get("/api/v1/experiments", headers=seed_cookie(value))
        assert refused.status_code == 401, value
        assert "session cookie is not valid" in refused.json()["error"]["message"]
        assert refused.headers["set-cookie"] == CLEARED
    with pytest.raises(InvalidStatus) as refused_socket:
        async with connect(daemon.ws_url, additional_headers=seed_cookie("garbage")):
            pass
    assert refused_socket.value.response.status_code == 401
    # Other cookies are not credentials: a loopback request with them stays the owner.
    assert (await http.get("/api/v1/experiments", headers={"Cookie": "theme=dark; _crucible_ui=1"})).status_code == 200
    # The cookie is found among others, quoted or not, and decides alone.
    cookies = f'theme=dark; _crucible_ui_key="{token}"; lang=en'
    assert (await http.get("/api/v1/experiments", headers={"Cookie": cookies})).status_code == 200


async def test_revoking_the_key_ends_its_sessions_and_their_sockets(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, trust_loopback=False) as daemon:
        key, key_id = await create_key(daemon.url, "viewer", "read")
        token, _ = await login(daemon.url, bearer(key))
        other_key, _ = await create_key(daemon.url, "other", "read")
        kept, _ = await login(daemon.url, bearer(other_key))
        session_id = await new_training_session(daemon.url)
        urls = socket_urls(daemon, session_id)
        async with (
            connect(urls["/ws"], additional_headers=seed_cookie(token)) as ws,
            connect(urls["/socket/websocket"], additional_headers=seed_cookie(token)) as phoenix,
            daemon_client(daemon.url) as http,
        ):
            await first_frame("/ws", ws)
            await first_frame("/socket/websocket", phoenix)
            assert (await http.delete(f"/api/v1/api-keys/{key_id}", headers=OWNER)).status_code == 204
            for socket in (ws, phoenix):
                async with asyncio.timeout(5):
                    await socket.wait_closed()
                assert socket.close_code == 1008 and socket.close_reason == "API key revoked"
            assert (await http.get("/api/v1/runs", headers=seed_cookie(token))).status_code == 401
            assert (await http.get("/api/v1/runs", headers=seed_cookie(kept))).status_code == 200
    with sqlite3.connect(tmp_path / "pivot.db") as conn:
        assert conn.execute("SELECT count(*) FROM auth_sessions WHERE api_key_id = ?", (key_id,)).fetchone() == (0,)
    async with running_daemon(tmp_path, trust_loopback=False) as daemon, daemon_client(daemon.url) as http:
        assert (await http.get("/api/v1/runs", headers=seed_cookie(token))).status_code == 401
        assert (await http.get("/api/v1/runs", headers=seed_cookie(kept))).status_code == 200


async def test_sessions_expire_and_close_their_sockets(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, trust_loopback=False, session_lifetime_s=3) as daemon:
        async with daemon_client(daemon.url) as http:
            opened = await http.post("/api/v1/auth/session", headers=OWNER)
        token, attributes = cookie_parts(opened)
        assert "Max-Age=3" in attributes
        async with connect(daemon.ws_url, additional_headers=seed_cookie(token)) as ws:
            await first_frame("/ws", ws)
            async with asyncio.timeout(15):  # closed by the session's expiry, with no frame from either side
                await ws.wait_closed()
            assert ws.close_code == 1008 and ws.close_reason == "session expired"
        async with daemon_client(daemon.url) as http:
            assert (await http.get("/api/v1/runs", headers=seed_cookie(token))).status_code == 401


async def test_sessions_survive_a_restart_and_are_stored_only_as_digests(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_daemon(tmp_path, access_log=True) as daemon:
        key, key_id = await create_key(daemon.url, "laptop", "write")
        owner_token, _ = await login(daemon.url, OWNER)
        key_token, _ = await login(daemon.url, bearer(key))
        async with daemon_client(daemon.url) as http:
            assert (await http.get("/api/v1/runs", headers=seed_cookie(key_token))).status_code == 200
    async with running_daemon(tmp_path, trust_loopback=False) as daemon, daemon_client(daemon.url) as http:
        made = await http.post(
            "/api/v1/experiments", json={"experiment": {"name": "x"}}, headers=seed_cookie(key_token)
        )
        assert made.status_code == 201 and made.headers["x-ratelimit-limit"] == "100"  # still the key's
        assert (await http.get("/api/v1/runs", headers=seed_cookie(owner_token))).status_code == 200
    files = [p for p in tmp_path.iterdir() if p.name.startswith("pivot.db")]
    secrets = [t.removeprefix("pvs_").encode() for t in (owner_token, key_token)]
    assert files and not any(secret in p.read_bytes() for p in files for secret in secrets)
    with sqlite3.connect(tmp_path / "pivot.db") as conn:
        rows = conn.execute("SELECT digest, api_key_id FROM auth_sessions ORDER BY created_at").fetchall()
    assert [(len(digest), owner) for digest, owner in rows] == [(32, None), (32, key_id)]  # SHA-256
    # The daemon's own log (httpcore's debug log, on the client side, shows Set-Cookie).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("pivotd", "uvicorn")))
    assert "opened session" in logged
    assert not any(t[4:] in logged for t in (owner_token, key_token))


async def test_the_cookie_is_secure_behind_tls(tmp_path: Path, daemon: RunningDaemon) -> None:
    """pivotd serves HTTP; a TLS-terminating proxy says `X-Forwarded-Proto: https`, or the setting says it always."""
    async with daemon_client(daemon.url) as http:
        proxied = await http.post("/api/v1/auth/session", headers={"x-forwarded-proto": "https"})
        assert proxied.status_code == 201 and cookie_parts(proxied)[1][-1] == "Secure"
        plain = await http.post("/api/v1/auth/session", headers={"x-forwarded-proto": "http"})
        assert "Secure" not in cookie_parts(plain)[1]
    secure = running_daemon(tmp_path / "secure", session_cookie_secure=True)
    async with secure as daemon_behind_tls, daemon_client(daemon_behind_tls.url) as http:
        opened = await http.post("/api/v1/auth/session")
        assert cookie_parts(opened)[1] == ["Path=/", "Max-Age=604800", "HttpOnly", "SameSite=Strict", "Secure"]


async def test_a_caller_holds_at_most_100_sessions(daemon: RunningDaemon) -> None:
    """Opening sessions cannot fill the daemon's memory: the 101st of one caller ends its oldest."""
    tokens = []
    async with daemon_client(daemon.url) as http:
        for _ in range(101):
            opened = await http.post("/api/v1/auth/session")
            assert opened.status_code == 201
            tokens.append(cookie_parts(opened)[0])
            http.cookies.clear()  # or the next request would be judged by this session's cookie
        assert (await http.get("/api/v1/runs", headers=seed_cookie(tokens[0]))).status_code == 401
        for token in (tokens[1], tokens[-1]):
            assert (await http.get("/api/v1/runs", headers=seed_cookie(token))).status_code == 200
    with sqlite3.connect(daemon.settings.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM auth_sessions").fetchone() == (100,)
