"""Seed 002's training sessions: config files and inline configs, start/stop, metrics, SSE and WebSocket."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
import websockets
import yaml

from tests.daemon import RunningDaemon
from tests.training.helpers import MLP, hyperparams, sse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server


async def test_session_lifecycle_from_config_file(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    config_dir = daemon.settings.config_dir
    (config_dir / "runs").mkdir(parents=True)
    (config_dir / "runs" / "train.yaml").write_text(
        yaml.safe_dump({"architecture": MLP, "hyperparams": hyperparams(epochs=3)})
    )
    created = await http.post(
        "/api/v1/training/sessions",
        json={"config_path": "runs/train.yaml", "session_name": "experiment_001", "tags": ["mlp"]},
    )
    assert created.status_code == 201, created.text
    session = created.json()
    session_id = session["session_id"]
    assert session["status"] == "created" and session["config"]["epochs"] == 3
    assert session["config"]["learning_rate"] == 0.1 and session["tags"] == ["mlp"]

    started = (await http.post(f"/api/v1/training/sessions/{session_id}/start")).json()
    assert started["status"] in ("created", "running") and started["started_at"]
    again = await http.post(f"/api/v1/training/sessions/{session_id}/start")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    events = []
    async for event, data in sse(http, f"/api/v1/sse/training/{session_id}"):
        events.append((event, data))
    assert [data["epoch"] for event, data in events if event == "metrics"] == [1, 2, 3]
    assert events[-1] == ("status", {"session_id": session_id, "status": "completed", "error": None})

    detail = (await http.get(f"/api/v1/training/sessions/{session_id}")).json()
    assert detail["status"] == "completed" and detail["current_epoch"] == 3 and detail["progress"] == 1.0
    assert {"train_loss", "val_loss", "learning_rate"} <= set(detail["latest_metrics"])
    assert detail["session_name"] == "experiment_001" and detail["completed_at"]

    metrics = (await http.get(f"/api/v1/training/sessions/{session_id}/metrics")).json()["metrics"]
    assert [m["epoch"] for m in metrics] == [1, 2, 3] and metrics[0]["timestamp"].endswith("+00:00")
    history = (await http.get(f"/api/v1/metrics/{session_id}/history", params={"metric_name": "val_loss",
                                                                               "start_epoch": 2})).json()  # fmt: skip
    assert history["epochs"] == [2, 3] and len(history["values"]) == 2 and len(history["timestamps"]) == 2

    listed = (await http.get("/api/v1/training/sessions", params={"status": "completed"})).json()
    assert listed["total"] == 1 and listed["sessions"][0]["session_id"] == session_id
    assert (await http.get("/api/v1/training/sessions", params={"status": "running"})).json()["total"] == 0

    checkpoints = (await http.get("/api/v1/checkpoints", params={"session_id": session_id})).json()["checkpoints"]
    assert [c["epoch"] for c in checkpoints] == [1, 2, 3]
    assert sum(c["is_best"] for c in checkpoints) == 1 and checkpoints[0]["metric_name"] == "val_loss"
    best = next(c for c in checkpoints if c["is_best"])
    assert best["metric_value"] == min(c["metric_value"] for c in checkpoints)

    download = await http.get(f"/api/v1/checkpoints/{best['checkpoint_id']}/download")
    assert download.status_code == 200 and len(download.content) == best["size_bytes"]
    deleted = await http.delete(f"/api/v1/checkpoints/{best['checkpoint_id']}")
    assert deleted.json()["message"] == "Checkpoint deleted successfully"
    assert (await http.get(f"/api/v1/checkpoints/{best['checkpoint_id']}/download")).status_code == 404


async def test_stop_mid_epoch_and_websocket(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    # Many small steps per epoch, so the stop lands inside the first epoch.
    config = {"architecture": MLP, "hyperparams": hyperparams(epochs=50, max_samples=5000, batch_size=1)}
    session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
    await http.post(f"/api/v1/training/sessions/{session_id}/start")
    ws_url = daemon.url.replace("http", "ws") + f"/api/v1/ws/training/{session_id}"
    async with websockets.connect(ws_url) as socket:
        first = json.loads(await socket.recv())
        assert first == {"type": "status", "session_id": session_id, "status": "running", "error": None}
        # Stop once the worker is really training: its first per-step scalars have arrived.
        async with websockets.connect(daemon.ws_url) as monitor:
            await monitor.send(json.dumps({"action": "subscribe", "topics": [f"run:{session_id}"]}))
            async for raw in monitor:
                if json.loads(raw)["type"] == "scalars":
                    break
        stopped = await http.post(f"/api/v1/training/sessions/{session_id}/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        messages = [json.loads(m) async for m in socket]
    assert messages[-1]["status"] == "stopped"
    run = (await http.get(f"/api/runs/{session_id}")).json()
    assert run["state"] == "cancelled" and run["epoch"] == 0 and "param_id" not in run
    logs = (await http.get(f"/api/v1/runs/{session_id}/logs")).json()["data"]
    assert any(line["level"] == "info" and line["message"] == "cancelled" for line in logs)
    again = await http.post(f"/api/train/{session_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]


async def test_inline_config_with_model_id(http: httpx.AsyncClient) -> None:
    model_id = (await http.post("/api/models", json={"architecture": MLP})).json()["model_id"]
    config = {"model_id": model_id, "hyperparams": hyperparams(epochs=1)}
    session = (await http.post("/api/v1/training/sessions", json={"config": config})).json()
    detail = (await http.get(f"/api/v1/training/sessions/{session['session_id']}")).json()
    assert detail["model_id"] == model_id and detail["total_epochs"] == 1 and detail["status"] == "created"
    stopped = (await http.post(f"/api/v1/training/sessions/{session['session_id']}/stop")).json()
    assert stopped["status"] == "stopped"


@pytest.mark.parametrize(
    "config_path",
    ["../outside.yaml", "/etc/passwd", "runs/../../outside.yaml", "link/outside.yaml"],
)
async def test_config_path_never_leaves_the_config_dir(
    daemon: RunningDaemon, http: httpx.AsyncClient, config_path: str
) -> None:
    config_dir = daemon.settings.config_dir
    config_dir.mkdir(parents=True, exist_ok=True)
    outside = config_dir.parent / "outside.yaml"
    outside.write_text(json.dumps({"architecture": MLP, "hyperparams": hyperparams()}))
    (config_dir / "link").symlink_to(config_dir.parent, target_is_directory=True)
    response = await http.post("/api/v1/training/sessions", json={"config_path": config_path})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "config directory" in error["message"]


def _unopenable_configs(config_dir: Path) -> dict[str, str]:
    """config_path values naming what the OS cannot open as a config file, each with why."""
    (config_dir / "sub").mkdir(parents=True)
    os.mkfifo(config_dir / "fifo.yaml")  # never opened: a reader would wait for a writer forever
    (config_dir / "latin1.yaml").write_bytes("architecture: caf\xe9".encode("latin-1"))
    # About 430 levels already pass the interpreter's recursion limit in PyYAML; each level more costs parse time.
    (config_dir / "deep.yaml").write_text("a: " + "[" * 1_000 + "]" * 1_000)
    cases = {
        "nul": "train\x00.yaml",
        "long name": "x" * 256 + ".yaml",
        "long name in a directory": "sub/" + "y" * 300,
        "long in bytes, not characters": "é" * 200,  # 400 bytes in UTF-8
        "path over PATH_MAX": "/".join(["sub"] + ["z" * 250] * 20),
        "a directory": "sub",
        "the directory itself": ".",
        "a fifo": "fifo.yaml",
        "not UTF-8": "latin1.yaml",
        "nested past the parser": "deep.yaml",
    }
    if os.geteuid() != 0:  # root opens anything
        (config_dir / "secret.yaml").write_text("{}")
        (config_dir / "secret.yaml").chmod(0)
        cases["no permission"] = "secret.yaml"
    return cases


async def test_config_paths_the_os_cannot_open_are_422(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    for why, config_path in _unopenable_configs(daemon.settings.config_dir).items():
        response = await http.post("/api/v1/training/sessions", json={"config_path": config_path})
        assert response.status_code == 422, (why, response.text)
        assert response.json()["error"]["details"][0]["field"] == "config_path", why
    assert (await http.get("/api/v1/training/sessions")).json()["total"] == 0


async def test_deleting_a_run_removes_its_checkpoints_not_its_params(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    from tests.training.helpers import final_state

    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(epochs=1)})).json()
    run_id = run_id["run_id"]
    assert (await final_state(http, run_id))[0] == "succeeded"
    run_dir = daemon.settings.runs_path / run_id
    assert (run_dir / "epoch_0001.pth").exists() and (run_dir / "params.safetensors").exists()
    param_id = (await http.get(f"/api/runs/{run_id}")).json()["param_id"]
    supervisor = daemon.services.supervisor
    assert (await http.delete(f"/api/v1/runs/{run_id}")).status_code == 204
    async with supervisor.swept:
        await supervisor.swept.wait_for(lambda: run_id in supervisor.swept_runs)
    assert not (run_dir / "epoch_0001.pth").exists() and not (run_dir / "job.json").exists()
    assert (await http.get(f"/api/params/{param_id}")).status_code == 200


async def test_metrics_named_like_an_epoch_records_fields_do_not_replace_them(http: httpx.AsyncClient) -> None:
    """A scalar named `epoch`, `timestamp` or `session_id` (the fuzz sent them) is not an epoch record's field: the
    record keeps its own (an `epoch` of 1.5 made the metrics route fail with a 500)."""
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    session_id = (await http.post("/api/v1/training/sessions", json={"config": config})).json()["session_id"]
    assert (await http.post(f"/api/v1/training/sessions/{session_id}/stop")).status_code == 200
    values = {"epoch": 1.5, "timestamp": 2.5, "session_id": 3.0, "train_loss": 0.25}
    posted = await http.post(f"/api/v1/runs/{session_id}/scalars", json=[{"step": 9, "epoch": 7, "values": values}])
    assert posted.status_code == 202, posted.text
    answer = await http.get(f"/api/v1/training/sessions/{session_id}/metrics")
    assert answer.status_code == 200, answer.text
    record = next(record for record in answer.json()["metrics"] if record["epoch"] == 7)
    assert record["train_loss"] == 0.25 and record["timestamp"] != 2.5
    assert answer.json()["session_id"] == session_id
