"""Workers that fail in every way a worker can: only their run fails, the daemon carries on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.daemon import RunningDaemon, daemon_client, running_daemon, start_daemon_process
from tests.training.helpers import DAEMON_SETTINGS, MLP, cancel, final_state, hyperparams

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server

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
        daemon_client(daemon.url, timeout=30) as http,
    ):
        run_id = (await http.post("/api/train", json={"architecture": huge, "hyperparams": hyperparams()})).json()
        state, _ = await final_state(http, run_id["run_id"])
        # The supervisor's resident-memory watchdog, not an address-space cap (which breaks CUDA), ended it.
        assert state.startswith("failed: out of memory: resident memory "), state
        assert "passed the worker's limit of 1200 MiB (worker_memory_limit_mb)" in state
        assert (await http.get("/health")).status_code == 200


async def test_hung_worker_is_killed_when_its_heartbeat_stops(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", heartbeat_timeout_s=2, **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
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
        daemon_client(daemon.url, timeout=30) as http,
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
            assert await cancel(http, run_id) == "cancelled"


async def progress(socket: ClientConnection, after_epoch: int = 0) -> int:
    """The first epoch above `after_epoch` that the run the socket follows reports finishing."""
    async for raw in socket:
        message = json.loads(raw)
        if message["type"] == "run_progress" and message["epoch"] > after_epoch:
            return int(message["epoch"])
    raise AssertionError("socket closed")


async def follow(ws_url: str, run_id: str) -> ClientConnection:
    """A socket subscribed to the run's topic (use it as a context manager)."""
    socket = await websockets.connect(ws_url)
    await socket.send(json.dumps({"action": "subscribe", "topics": [f"run:{run_id}"]}))
    return socket


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Those of `pids` still running after up to `timeout` s, each awaited through a pidfd (readable once the
    process has ended) rather than by polling: they are not this process's children."""
    fds = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid
    deadline = time.monotonic() + timeout
    try:
        pending = set(fds)
        while pending and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(pending), [], [], left)
            pending -= set(ready)
        return [fds[fd] for fd in pending]
    finally:
        for fd in fds:
            os.close(fd)


async def test_restart_fails_the_runs_in_flight_or_resumes_them_from_their_last_checkpoint(tmp_path: Path) -> None:
    """SIGKILL the daemon with two runs training and one queued: its fork server and workers stop. Restarted with
    `resume_interrupted`, the run that had saved a checkpoint continues from the last one, the run that had not
    fails (interrupted), and the queued one runs."""
    settings = {"training_slots": 2, "worker_threads": 1, "heartbeat_timeout_s": 4}  # a 1 s heartbeat
    env = {f"PIVOT_{name.upper()}": str(value) for name, value in settings.items()}
    # Epochs of 20 steps, each checkpointed: many more of them than the test waits for (it cancels the run).
    checkpointed = hyperparams(epochs=1000, max_samples=200, batch_size=8, checkpoint_every=1)
    daemon = start_daemon_process(tmp_path / "state", env=env)
    try:
        async with daemon_client(daemon.url, timeout=30) as http:
            ws_url = daemon.url.replace("http", "ws") + "/ws"
            body = {"architecture": MLP, "hyperparams": {**LONG, "checkpoint_every": 0}}
            fresh = (await http.post("/api/train", json=body)).json()["run_id"]
            await first_scalars(ws_url, fresh)
            model_id = (await http.post("/api/models", json={"architecture": MLP})).json()["model_id"]
            train = f"/api/models/{model_id}/train"
            resumable = (await http.post(train, json={"hyperparams": checkpointed})).json()["run_id"]
            async with await follow(ws_url, resumable) as socket:
                # Epoch 2's progress is read after epoch 1's checkpoint was recorded (one event stream, in order).
                await progress(socket, after_epoch=1)
            waiting = (await http.post(train, json={"hyperparams": checkpointed})).json()["run_id"]
            assert (await http.get(f"/api/runs/{waiting}")).json()["state"] == "queued"
            processes = [child.pid for child in psutil.Process(daemon.proc.pid).children(recursive=True)]
            assert len(processes) == 3  # the fork server and its two workers
    finally:
        daemon.stop()  # SIGKILL
    # The server sees the daemon's end of its socket close, the workers their parent change.
    assert await asyncio.to_thread(wait_gone, processes, 30) == []

    async with (
        running_daemon(tmp_path / "state", resume_interrupted=True, **settings) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
        await follow(daemon.ws_url, resumable) as socket,  # before the resumed worker can finish an epoch
    ):
        run = (await http.get(f"/api/runs/{fresh}")).json()
        assert run["state"] == "failed" and run["error"] == "interrupted"
        checkpoints = (await http.get("/api/v1/checkpoints", params={"session_id": resumable})).json()
        last = max(c["epoch"] for c in checkpoints["checkpoints"])
        run = (await http.get(f"/api/runs/{resumable}")).json()
        assert run["state"] in ("queued", "running") and run["error"] is None
        assert await progress(socket, after_epoch=last) == last + 1
        logs = (await http.get(f"/api/v1/runs/{resumable}/logs")).json()["data"]
        assert any(line["message"].startswith(f"resuming from epoch {last}") for line in logs)
        await first_scalars(daemon.ws_url, waiting)
        assert (await http.get(f"/api/runs/{waiting}")).json()["state"] == "running"
        for run_id in (resumable, waiting):
            assert await cancel(http, run_id) == "cancelled"


async def test_a_stopping_daemon_hears_its_workers_out(tmp_path: Path) -> None:
    """A daemon told to stop ends its runs while it still listens: a worker's last measures and its end reach it,
    where a closed port made each worker retry for the SDK's close timeout and lose them (the SDK then says so in
    the run's log)."""
    async with (
        running_daemon(tmp_path / "state", **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": LONG})).json()["run_id"]
        await first_scalars(daemon.ws_url, run_id)
    async with (
        running_daemon(tmp_path / "state", **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        run = (await http.get(f"/api/runs/{run_id}")).json()
        assert run["state"] == "failed" and "pivotd stopped" in run["error"], run
        logs = (await http.get(f"/api/v1/runs/{run_id}/logs")).json()["data"]
        assert logs and not [line["message"] for line in logs if "pivot sdk" in line["message"]]
