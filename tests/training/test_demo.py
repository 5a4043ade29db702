"""`pivotd --demo` trains the reference CNN on the shipped digits as a managed run."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import websockets

from tests.daemon import daemon_client, start_daemon_process

pytestmark = pytest.mark.slow


async def test_demo_starts_a_real_training_run(tmp_path: Path) -> None:
    daemon = start_daemon_process(tmp_path / "state", "--demo", env={"PIVOT_WORKER_THREADS": "1"})
    try:
        async with (
            websockets.connect(daemon.url.replace("http", "ws") + "/ws") as socket,
            daemon_client(daemon.url) as http,
        ):
            await socket.send(json.dumps({"action": "subscribe", "topics": ["runs"]}))
            async for raw in socket:
                if json.loads(raw)["type"] == "subscribed":
                    break
            # Subscribed first, then asked: the run's start is seen either here or on the socket.
            running = (await http.get("/api/v1/training/sessions", params={"status": "running"})).json()["sessions"]
            run_id = running[0]["session_id"] if running else None
            while run_id is None:
                message = json.loads(await socket.recv())
                if message["type"] == "run_state" and message["state"] == "running":
                    run_id = message["run_id"]
            run = (await http.get(f"/api/runs/{run_id}")).json()
            assert run["epochs_total"] == 10 and run["state"] == "running"
            # The demo says so once its POST has been answered, which may come after the run is seen running.
            assert await asyncio.to_thread(
                daemon.wait_for_line, f"demo: training the reference CNN on real digits as run {run_id}"
            )
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
