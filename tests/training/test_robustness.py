"""Workers that fail in every way a worker can: only their run fails, the daemon carries on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import httpx
import pytest
import websockets

from tests.daemon import RunningDaemon, running_daemon, start_daemon_process
from tests.training.helpers import DAEMON_SETTINGS, MLP, final_state, hyperparams

pytestmark = pytest.mark.slow

LONG = hyperparams(epochs=50, max_samples=5000, batch_size=4)  # minutes of steps: only ever cancelled or killed


async def first_scalars(ws_url: str, run_id: str) -> None:
    """Return once the run's worker has reported its first training step (it is really training)."""
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"action": "subscribe", "topics": [f"run:{run_id}"]}))
        async for raw in socket:
            if json.loads(raw)["type"] == "scalars":
                return


async def test_worker_that_raises_fails_its_run_with_the_reason(http: httpx.AsyncClient) -> None:
    # No MNIST files and no network here: the worker raises DatasetError while loading.
    body = {"architecture": MLP, "hyperparams": hyperparams(dataset="mnist")}
    run_id = (await http.post("/api/train", json=body)).json()["run_id"]
    state, _ = await final_state(http, run_id)
    assert state.startswith("failed: DatasetError: MNIST is not in"), state
    run = (await http.get(f"/api/runs/{run_id}")).json()
    assert "digits" in run["error"] and run["finished_at"]
    errors = (await http.get(f"/api/v1/runs/{run_id}/logs", params={"level": "error"})).json()["data"]
    assert errors[0]["message"] == "training failed" and errors[1]["message"].startswith("Traceback")
    # The daemon carries on: the next run trains.
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(epochs=1)})).json()
    assert (await final_state(http, run_id["run_id"]))[0] == "succeeded"


async def test_sigkilled_worker(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": LONG})).json()["run_id"]
    await first_scalars(daemon.ws_url, run_id)
    pid = daemon.services.supervisor.worker_pid(run_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    state, _ = await final_state(http, run_id)
    assert state == "failed: worker killed by SIGKILL (out of memory? the kernel's OOM killer sends SIGKILL)"
    assert (await http.get("/health")).status_code == 200


async def test_worker_over_its_memory_limit(tmp_path: Path) -> None:
    huge = {"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 200_000}, {"type": "relu"},
                                          {"type": "linear", "in": 200_000, "out": 10}]}  # fmt: skip
    async with (
        running_daemon(tmp_path / "state", worker_memory_limit_mb=1200, **DAEMON_SETTINGS) as daemon,
        httpx.AsyncClient(base_url=daemon.url, timeout=30) as http,
    ):
        run_id = (await http.post("/api/train", json={"architecture": huge, "hyperparams": hyperparams()})).json()
        state, _ = await final_state(http, run_id["run_id"])
        # The supervisor's resident-memory watchdog, not an address-space cap (which breaks CUDA), ended it.
        assert state.startswith("failed: out of memory: resident memory "), state
        assert "passed the worker's limit of 1200 MiB (worker_memory_limit_mb)" in state
        assert (await http.get("/health")).status_code == 200


async def test_restart_with_a_run_in_flight(tmp_path: Path) -> None:
    """SIGKILL the daemon mid-run: on restart that run is failed (interrupted) and the queued one runs."""
    env = {"PIVOT_TRAINING_SLOTS": "1", "PIVOT_WORKER_THREADS": "1", "PIVOT_HEARTBEAT_TIMEOUT_S": "4"}
    daemon = start_daemon_process(tmp_path / "state", env=env)
    try:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
            model_id = (await http.post("/api/models", json={"architecture": MLP})).json()["model_id"]
            busy = (await http.post(f"/api/models/{model_id}/train", json={"hyperparams": LONG})).json()["run_id"]
            ws_url = daemon.url.replace("http", "ws") + "/ws"
            await first_scalars(ws_url, busy)
            waiting = (await http.post(f"/api/models/{model_id}/train", json={"hyperparams": LONG})).json()["run_id"]
            assert (await http.get(f"/api/runs/{waiting}")).json()["state"] == "queued"
    finally:
        daemon.stop()  # SIGKILL
    daemon = start_daemon_process(tmp_path / "state", env=env)
    try:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
            run = (await http.get(f"/api/runs/{busy}")).json()
            assert run["state"] == "failed" and run["error"] == "interrupted"
            await first_scalars(daemon.url.replace("http", "ws") + "/ws", waiting)
            assert (await http.get(f"/api/runs/{waiting}")).json()["state"] == "running"
            assert (await http.post(f"/api/train/{waiting}/cancel")).status_code == 202
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0


async def test_hung_worker_is_killed_when_its_heartbeat_stops(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", heartbeat_timeout_s=2, **DAEMON_SETTINGS) as daemon,
        httpx.AsyncClient(base_url=daemon.url, timeout=30) as http,
    ):
        run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": LONG})).json()["run_id"]
        await first_scalars(daemon.ws_url, run_id)
        pid = daemon.services.supervisor.worker_pid(run_id)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # hung: alive, silent
        state, _ = await final_state(http, run_id)
        assert state.startswith("failed: no heartbeat for"), state


async def test_two_slots_train_two_runs_at_once(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", training_slots=2, **DAEMON_SETTINGS) as daemon,
        httpx.AsyncClient(base_url=daemon.url, timeout=30) as http,
    ):
        model_id = (await http.post("/api/models", json={"architecture": MLP})).json()["model_id"]
        runs = [
            (await http.post(f"/api/models/{model_id}/train", json={"hyperparams": LONG})).json()["run_id"]
            for _ in range(3)
        ]
        for run_id in runs[:2]:
            await first_scalars(daemon.ws_url, run_id)
        states = [(await http.get(f"/api/runs/{run_id}")).json()["state"] for run_id in runs]
        assert states == ["running", "running", "queued"]
        # Seed 001's rule counts slots: both are busy.
        busy = await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams()})
        assert busy.status_code == 409
        await http.post(f"/api/train/{runs[0]}/cancel")
        await first_scalars(daemon.ws_url, runs[2])  # the freed slot takes the queued run
        for run_id in runs[1:]:
            assert (await http.post(f"/api/train/{run_id}/cancel")).status_code == 202


async def progress(ws_url: str, run_id: str, after_epoch: int = 0) -> int:
    """The first epoch above `after_epoch` the run reports finishing."""
    async with websockets.connect(ws_url) as socket:
        await socket.send(json.dumps({"action": "subscribe", "topics": [f"run:{run_id}"]}))
        async for raw in socket:
            message = json.loads(raw)
            if message["type"] == "run_progress" and message["epoch"] > after_epoch:
                return int(message["epoch"])
    raise AssertionError("socket closed")


async def test_restart_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    env = {"PIVOT_TRAINING_SLOTS": "1", "PIVOT_WORKER_THREADS": "1", "PIVOT_HEARTBEAT_TIMEOUT_S": "4",
           "PIVOT_RESUME_INTERRUPTED": "true"}  # fmt: skip
    hp = hyperparams(epochs=50, max_samples=1000, batch_size=8, checkpoint_every=1)
    daemon = start_daemon_process(tmp_path / "state", env=env)
    try:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
            run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hp})).json()["run_id"]
            # Epoch 2's progress is read after epoch 1's checkpoint was recorded (one event stream, in order).
            await progress(daemon.url.replace("http", "ws") + "/ws", run_id, after_epoch=1)
    finally:
        daemon.stop()  # SIGKILL
    daemon = start_daemon_process(tmp_path / "state", env=env)
    try:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
            checkpoints = (await http.get("/api/v1/checkpoints", params={"session_id": run_id})).json()
            last = max(c["epoch"] for c in checkpoints["checkpoints"])
            run = (await http.get(f"/api/runs/{run_id}")).json()
            assert run["state"] in ("queued", "running") and run["error"] is None
            assert await progress(daemon.url.replace("http", "ws") + "/ws", run_id, after_epoch=last) == last + 1
            logs = (await http.get(f"/api/v1/runs/{run_id}/logs")).json()["data"]
            assert any(line["message"].startswith(f"resuming from epoch {last}") for line in logs)
            assert (await http.post(f"/api/train/{run_id}/cancel")).status_code == 202
    finally:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
