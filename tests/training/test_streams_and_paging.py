"""SSE headers and keep-alives on an idle stream; cursor paging of a model's runs."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.daemon import daemon_client, running_daemon
from tests.training.helpers import MLP, hyperparams, sse


async def test_sse_headers_keepalive_and_end(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", sse_keepalive_s=0.05) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        config = {"architecture": MLP, "hyperparams": hyperparams()}
        session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
        async with http.stream("GET", f"/api/runs/{session_id}/events") as response:
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            assert response.headers["connection"] == "keep-alive"
            assert response.headers["content-type"].startswith("text/event-stream")

        seen = []
        async for event, data in sse(http, f"/api/runs/{session_id}/events"):
            seen.append(event if data is None else (event, data["state"]))
            if data is None and seen.count(": keep-alive") == 2:
                # Idle (a created session never starts by itself): stop it; the stream ends with the state.
                stopped = await http.post(f"/api/v1/training/sessions/{session_id}/stop")
                assert stopped.status_code == 200, stopped.text
        assert seen[0] == ("state", "created")
        assert seen[-1] == ("state", "cancelled") and ": keep-alive" in seen


async def test_model_runs_cursor_paging(http: httpx.AsyncClient) -> None:
    model_id = (await http.post("/api/models", json={"architecture": MLP})).json()["model_id"]
    config = {"model_id": model_id, "hyperparams": hyperparams()}
    created = [
        (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"] for _ in range(5)
    ]
    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get(f"/api/models/{model_id}/runs", params=params)).json()
        pages.append([item["run_id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [created[::-1][0:2], created[::-1][2:4], created[::-1][4:]]
    assert (await http.get(f"/api/models/{model_id}/runs", params={"cursor": "%%%"})).status_code == 400
    summary = (await http.get(f"/api/models/{model_id}")).json()
    assert summary["runs_total"] == 5 and [run["run_id"] for run in summary["runs"]] == created
