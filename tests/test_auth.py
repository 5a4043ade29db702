"""Authentication (api-map section 4) for a peer that is not trusted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pivotd.auth import ensure_token, is_loopback
from tests.daemon import TEST_TOKEN, RunningDaemon, daemon_client, running_daemon
from tests.payloads import contract_payload

OWNER = {"authorization": f"Bearer {TEST_TOKEN}"}
ROUTES = [
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/experiment_2024_0210_v2"),
    ("GET", "/api/v1/runs/experiment_2024_0210_v2/latest"),
    ("GET", "/api/v1/runs/experiment_2024_0210_v2/scalars"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/docs/assets/swagger-ui-bundle.js"),  # the docs' assets follow the docs' rule
]


@pytest.fixture
async def untrusting(tmp_path: Path):
    # trust_loopback = false makes this loopback test client an untrusted peer.
    async with running_daemon(tmp_path, trust_loopback=False) as daemon:
        yield daemon


async def test_every_route_but_health_needs_the_token(untrusting) -> None:
    async with daemon_client(untrusting.url) as anonymous:
        assert (await anonymous.get("/health")).status_code == 200
        response = await anonymous.post("/api/v1/metrics/layerwise", json=contract_payload())
        assert response.status_code == 401
        assert response.json()["detail"]["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        for method, path in ROUTES:
            assert (await anonymous.request(method, path)).status_code == 401, path
        wrong = {"authorization": "Bearer not-the-token"}
        assert (await anonymous.get("/api/v1/runs", headers=wrong)).status_code == 401
        assert (await anonymous.get("/api/v1/runs", headers={"authorization": TEST_TOKEN})).status_code == 401
    async with daemon_client(untrusting.url, headers={"authorization": f"Bearer {TEST_TOKEN}"}) as ok:
        assert (await ok.post("/api/v1/metrics/layerwise", json=contract_payload())).status_code == 202
        for method, path in ROUTES:
            assert (await ok.request(method, path)).status_code == 200, path


async def test_websocket_needs_the_token(untrusting) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(untrusting.ws_url):
            pass
    assert refused.value.response.status_code == 401
    async with connect(untrusting.ws_url, additional_headers={"authorization": f"Bearer {TEST_TOKEN}"}) as ws:
        assert '"initial_runs"' in await ws.recv()
    async with connect(f"{untrusting.ws_url}?token={TEST_TOKEN}") as ws:  # for clients that cannot set headers
        assert '"initial_runs"' in await ws.recv()


async def test_loopback_is_trusted_by_default(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/runs")).status_code == 200


def test_token_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    token = ensure_token(tmp_path / "state")
    path = tmp_path / "state" / "token"
    assert len(token) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_token(tmp_path / "state") == token


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
    assert not any(is_loopback(h) for h in ["10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "", None, "host"])


async def test_an_authorization_header_in_another_scheme_is_refused_even_from_loopback(
    http: httpx.AsyncClient,
) -> None:
    """From trusted loopback, sending nothing is the owner; sending Basic or Token credentials is presenting
    credentials, which are checked and are not a bearer token: 401, never the owner."""
    for value in ("Basic dXNlcjpwYXNz", f"Token {TEST_TOKEN}", "Bearer", TEST_TOKEN):
        refused = await http.get("/api/v1/experiments", headers={"authorization": value})
        assert refused.status_code == 401, value
        assert "bearer token required" in refused.json()["error"]["message"], value
    listed = await http.get("/api/v1/experiments", headers={"authorization": f"bearer {TEST_TOKEN}"})
    assert listed.status_code == 200, listed.text


EVIL = "http://evil.example"


async def test_loopback_trust_is_not_for_web_pages(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """A web page can make the user's browser send requests to 127.0.0.1: cross-site ones carry the page's
    Origin, DNS-rebound ones (evil.example resolving to 127.0.0.1) its Host. Neither is the owner."""
    for headers in ({"origin": EVIL}, {"host": "evil.example:8000"}, {"origin": "null"}, {"host": "127.0.0.1.evil"}):
        refused = await http.get("/api/v1/experiments", headers=headers)
        assert refused.status_code == 401, headers
        refused = await http.post("/api/v1/experiments", json={"experiment": {"name": "csrf"}}, headers=headers)
        assert refused.status_code == 401, headers
    assert (await http.get("/api/v1/experiments")).json()["data"] == []  # nothing was created
    # A local page (a dashboard on another local port) and local names are still trusted.
    for headers in ({"origin": "http://localhost:3000"}, {"host": "localhost"}, {"host": "[::1]:1"},
                    {"origin": "https://127.0.0.1", "host": "LOCALHOST:8000"}):  # fmt: skip
        assert (await http.get("/api/v1/experiments", headers=headers)).status_code == 200, headers
    # Credentials are what they are, whatever the Origin: a page cannot know the token.
    assert (await http.get("/api/v1/experiments", headers={"origin": EVIL, **OWNER})).status_code == 200
    socket = "ws" + daemon.url.removeprefix("http") + "/socket/websocket?vsn=2.0.0"
    for url in (daemon.ws_url, socket):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin=EVIL):
                pass
        assert refused.value.response.status_code == 401, url
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers={"host": "evil.example"}):
                pass
        assert refused.value.response.status_code == 401, url
        async with connect(url, origin="http://localhost:5173"):
            pass
