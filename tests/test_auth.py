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
from tests.daemon import TEST_TOKEN, running_daemon
from tests.payloads import contract_payload

ROUTES = [
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/experiment_2024_0210_v2"),
    ("GET", "/api/v1/runs/experiment_2024_0210_v2/latest"),
    ("GET", "/api/v1/runs/experiment_2024_0210_v2/scalars"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/docs"),
]


@pytest.fixture
async def untrusting(tmp_path: Path):
    # trust_loopback = false makes this loopback test client an untrusted peer.
    async with running_daemon(tmp_path, trust_loopback=False) as daemon:
        yield daemon


async def test_every_route_but_health_needs_the_token(untrusting) -> None:
    async with httpx.AsyncClient(base_url=untrusting.url) as anonymous:
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
    async with httpx.AsyncClient(base_url=untrusting.url, headers={"authorization": f"Bearer {TEST_TOKEN}"}) as ok:
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
    assert (await http.get("/api/v1/experiments", headers={"authorization": f"bearer {TEST_TOKEN}"})).is_success
