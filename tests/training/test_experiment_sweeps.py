"""Experiment sweeps trained for real through the queue: events, summaries, statistics, pause/resume/cancel.

Each run is seed 003's MLP for one epoch on 200 shipped digits, so six runs take a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from scipy import stats
from websockets.asyncio.client import ClientConnection, connect

from shared.models.checkpoints import RunCheckpoints
from tests.daemon import daemon_client, running_daemon
from tests.training.helpers import DAEMON_SETTINGS, MLP, cancel, hyperparams

pytestmark = pytest.mark.usefixtures("fork_server")  # runs forked from a ready server (tests/conftest.py)

SWEEP_HP = hyperparams(epochs=1, max_samples=200, layerwise_every=0)
GROUPS = ("optimizer.lr=0.1", "optimizer.lr=0.01")


def sweep(**variations: list[Any]) -> dict[str, Any]:
    return {
        "type": "sweep",
        "architecture": MLP,
        "hyperparams": SWEEP_HP,
        "variations": variations or {"seed": [1, 2, 3], "optimizer.lr": [0.1, 0.01]},
        "metric": "val_accuracy",
    }


async def create(http: httpx.AsyncClient, name: str, config: dict[str, Any]) -> str:
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": name, "config": config}})
    assert response.status_code == 201, response.text
    experiment_id: str = response.json()["data"]["id"]
    return experiment_id


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
    return result


async def subscribe(ws: ClientConnection, topic: str) -> None:
    await ws.send(json.dumps({"action": "subscribe", "topics": [topic]}))
    while json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] != "subscribed":
        pass


async def experiment_events(ws: ClientConnection, until_status: str, timeout: float = 120) -> list[dict[str, Any]]:
    """Every `experiment_*` message up to and including the status `until_status`."""
    events = []
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"].startswith("experiment_"):
                events.append(message)
                if message["type"] == "experiment_status" and message["status"] == until_status:
                    return events


def conflict(response: httpx.Response, phrase: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict" and phrase in error["message"], error


@pytest.mark.slow
async def test_a_sweep_of_two_configs_by_three_seeds_runs_to_completion(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", **DAEMON_SETTINGS, training_slots=2) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        exp_id = await create(http, "lr sweep", sweep())
        topic = f"experiment:{exp_id}"
        async with connect(daemon.ws_url, max_size=None) as ws:
            await subscribe(ws, topic)
            response = await http.post(f"/api/v1/experiments/{exp_id}/start")
            assert response.status_code == 200, response.text
            started = response.json()["data"]
            assert started["total_runs"] == 6 and started["started_at"] is not None
            assert sorted(run["group"] for run in started["runs"]) == sorted(GROUPS * 3)
            events = await experiment_events(ws, "completed")

        assert all(event["topic"] == topic and event["experiment_id"] == exp_id for event in events)
        assert not [e for e in events if e["type"] == "experiment_error"]
        statuses = [e["status"] for e in events if e["type"] == "experiment_status"]
        assert statuses[0] == started["status"] == "running" and statuses[-1] == "completed"  # no stale `pending`
        assert len(statuses) == len(set(statuses))  # one event per change
        done = [e for e in events if e["type"] == "experiment_run_completed"]
        assert len({e["run_id"] for e in done}) == 6 and {e["status"] for e in done} == {"completed"}
        assert {e["state"] for e in done} == {"succeeded"}
        assert sorted(e["group"] for e in done) == sorted(GROUPS * 3)
        assert all(0 <= e["metrics"]["val_accuracy"] <= 1 for e in done)
        # One per finished run, and between them (throttled) as epochs end: both fractions only grow.
        updates = [e for e in events if e["type"] == "experiment_progress"]
        progress, by_epochs = [e["progress"] for e in updates], [e["epoch_progress"] for e in updates]
        assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 6
        assert by_epochs == sorted(by_epochs) and by_epochs[-1] == 1.0
        final_status = next(e for e in reversed(events) if e["type"] == "experiment_status")
        assert final_status["completed_at"] is not None and final_status["started_at"] is not None

        detail = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]
        assert detail["status"] == "completed" and detail["progress"] == 1.0 and detail["epoch_progress"] == 1.0
        assert detail["completed_at"] is not None and detail["eta_seconds"] == 0.0
        summary = detail["results_summary"]
        assert summary["total_runs"] == 6 and summary["runs_by_status"] == {"completed": 6}

        listing = (await http.get(f"/api/v1/experiments/{exp_id}/runs", params={"per_page": 100})).json()
        runs = listing["data"]
        assert listing["meta"]["total"] == 6 and listing["meta"]["has_more"] is False
        values = {group: [r["metrics"]["val_accuracy"] for r in runs if r["group"] == group] for group in GROUPS}
        assert summary["best_val_accuracy"] == max(values[GROUPS[0]] + values[GROUPS[1]])
        assert summary["best_run"]["value"] == summary["best_val_accuracy"]
        first = [r for r in runs if r["group"] == GROUPS[0]]
        assert {r["hyperparameters"]["seed"] for r in first} == {1, 2, 3}
        assert {r["hyperparameters"]["optimizer"]["lr"] for r in first} == {0.1}
        for status, total in (("completed", 6), ("pending", 0)):
            filtered = await http.get(f"/api/v1/experiments/{exp_id}/runs", params={"filter[status]": status})
            assert filtered.json()["meta"]["total"] == total

        # The statistical result equals scipy run directly on the values read back over the API.
        test = {"test_type": "two_sample_t_test", "groups": list(GROUPS), "metric": "val_accuracy"}
        response = await http.post(f"/api/v1/experiments/{exp_id}/statistical-results", json={"test": test})
        assert response.status_code == 201, response.text
        result = response.json()["data"]
        direct = stats.ttest_ind(values[GROUPS[0]], values[GROUPS[1]], equal_var=False)
        assert result["statistic"] == pytest.approx(direct.statistic, rel=1e-9)
        assert result["p_value"] == pytest.approx(direct.pvalue, rel=1e-9)
        assert result["degrees_of_freedom"] == pytest.approx(direct.df, rel=1e-9)

        # Finished: nothing to start, pause or cancel.
        conflict(await http.post(f"/api/v1/experiments/{exp_id}/start"), "already started")
        conflict(await http.post(f"/api/v1/experiments/{exp_id}/pause"), "is completed")
        conflict(await http.post(f"/api/v1/experiments/{exp_id}/cancel"), "is completed")
        conflict(await http.post(f"/api/v1/experiments/{exp_id}/resume"), "only a paused experiment")

        # Seed 004's run sub-resources on a sweep run.
        run_id, other_id = runs[0]["id"], runs[1]["id"]
        checkpoints = (await http.get(f"/api/v1/runs/{run_id}/checkpoints")).json()
        assert RunCheckpoints.model_validate(checkpoints).model_dump() == checkpoints  # metrics by name kept
        assert checkpoints["meta"]["total"] == 1
        checkpoint = checkpoints["data"][0]
        assert checkpoint["id"].startswith("ckpt_") and checkpoint["epoch"] == 1 and checkpoint["run_id"] == run_id
        assert checkpoint["val_accuracy"] == runs[0]["metrics"]["val_accuracy"] and "val_loss" in checkpoint
        download = await http.get(f"/api/v1/runs/{run_id}/checkpoints/{checkpoint['id']}/download")
        assert download.status_code == 200 and download.content == Path(checkpoint["path"]).read_bytes()
        assert "attachment" in download.headers["content-disposition"]
        wrong = await http.get(f"/api/v1/runs/{other_id}/checkpoints/{checkpoint['id']}/download")
        assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "not_found"
        assert (await http.get("/api/v1/runs/r_nope/checkpoints")).status_code == 404

        logs = f"/api/v1/runs/{run_id}/logs"
        everything = (await http.get(logs)).json()["data"]
        finished = everything[-1]["message"]  # for people: rounded, not a JSON dump of 17-digit floats
        assert finished.startswith("finished: train_loss ") and re.search(r"val_accuracy 0\.\d{1,4}\b", finished)
        assert (await http.get(logs, params={"since": "2000-01-01T00:00:00Z"})).json()["data"] == everything
        assert (await http.get(logs, params={"since": "2999-01-01T00:00:00+00:00"})).json()["data"] == []
        assert (await http.get(logs, params={"since": "0"})).json()["data"] == everything
        bad = await http.get(logs, params={"since": "yesterday"})
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "since"


async def _states(http: httpx.AsyncClient, exp_id: str) -> list[str]:
    runs = (await http.get(f"/api/v1/experiments/{exp_id}/runs")).json()["data"]
    return [run["status"] for run in runs]


async def _status(http: httpx.AsyncClient, exp_id: str) -> str:
    status: str = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["status"]
    return status


async def test_pause_holds_across_a_restart_without_blocking_the_queue_then_resume_and_cancel(
    tmp_path: Path,
) -> None:
    settings = {**DAEMON_SETTINGS, "training_slots": 1}
    async with (
        running_daemon(tmp_path / "state", **settings) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        # The only slot is busy (a few seconds of training), so the sweep's runs wait in the queue.
        longer = hyperparams(epochs=3, max_samples=1000, layerwise_every=0)
        busy = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": longer})).json()
        exp_id = await create(http, "paused sweep", sweep(seed=[1, 2, 3]))
        async with connect(daemon.ws_url, max_size=None) as ws:
            await subscribe(ws, f"experiment:{exp_id}")
            started = (await http.post(f"/api/v1/experiments/{exp_id}/start")).json()["data"]
            assert started["status"] == "pending" and [r["group"] for r in started["runs"]] == ["default"] * 3
            paused = await http.post(f"/api/v1/experiments/{exp_id}/pause")
            assert paused.status_code == 200 and paused.json()["data"]["status"] == "paused"
            assert (await experiment_events(ws, "paused", timeout=5))[-1]["status"] == "paused"
        conflict(await http.post(f"/api/v1/experiments/{exp_id}/pause"), "is paused")
        listed = await http.get("/api/v1/experiments", params={"filter[status]": "paused"})
        assert [e["id"] for e in listed.json()["data"]] == [exp_id]

        # A run queued after the sweep's goes first: a paused experiment does not block the queue.
        later = (await http.post(f"/api/models/{busy['model_id']}/train")).json()["run_id"]

        async def later_done() -> bool:
            state: str = (await http.get(f"/api/runs/{later}")).json()["state"]
            return state == "succeeded"

        await eventually(later_done)
        assert await _states(http, exp_id) == ["pending"] * 3 and await _status(http, exp_id) == "paused"
        # Nor does it hold the only slot against seed 001's one-active-run rule.
        inline = await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams()})
        assert inline.status_code == 202, inline.text
        assert await cancel(http, inline.json()["run_id"]) == "cancelled"

    async with (
        running_daemon(tmp_path / "state", **settings) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        await daemon.services.supervisor.dispatch()
        assert await _status(http, exp_id) == "paused" and await _states(http, exp_id) == ["pending"] * 3
        async with connect(daemon.ws_url, max_size=None) as ws:
            await subscribe(ws, f"experiment:{exp_id}")
            resumed = await http.post(f"/api/v1/experiments/{exp_id}/resume")
            assert resumed.status_code == 200 and resumed.json()["data"]["status"] in ("pending", "running")
            await experiment_events(ws, "running", timeout=30)
            cancelled = await http.post(f"/api/v1/experiments/{exp_id}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "cancelled"
            events = await experiment_events(ws, "cancelled", timeout=5)
            assert events[-1]["completed_at"] is not None

            async def all_finished() -> bool:
                return all(state in ("cancelled", "completed") for state in await _states(http, exp_id))

            await eventually(all_finished, timeout=30)
        assert "cancelled" in await _states(http, exp_id) and await _status(http, exp_id) == "cancelled"
        for action, phrase in (("cancel", "is cancelled"), ("pause", "is cancelled"), ("resume", "is cancelled")):
            conflict(await http.post(f"/api/v1/experiments/{exp_id}/{action}"), phrase)
        conflict(await http.post(f"/api/v1/experiments/{exp_id}/start"), "already started")

        clone = await http.post(f"/api/v1/experiments/{exp_id}/clone", json={"name": "again"})
        assert clone.status_code == 201, clone.text
        copy = clone.json()["data"]
        assert copy["id"] != exp_id and copy["name"] == "again" and copy["status"] == "pending"
        assert copy["config"] == sweep(seed=[1, 2, 3]) and copy["runs"] == [] and copy["started_at"] is None
        named = (await http.post(f"/api/v1/experiments/{exp_id}/clone", json={})).json()["data"]
        assert named["name"] == "paused sweep (copy)"


async def test_a_phoenix_client_follows_a_sweep_on_its_experiment_channel(tmp_path: Path) -> None:
    """End to end through the real producer: the lifecycle publishes, /socket/websocket pushes seed 004's events."""
    async with (
        running_daemon(tmp_path / "state", **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=10) as http,
    ):
        exp_id = await create(http, "phoenix", {**sweep(seed=[7]), "hyperparams": {**SWEEP_HP, "epochs": 3}})
        topic = f"experiment:{exp_id}"
        socket = "ws" + daemon.url.removeprefix("http") + "/socket/websocket?vsn=2.0.0"
        async with connect(socket) as ws:
            await ws.send(json.dumps(["1", "1", topic, "phx_join", {}]))
            assert json.loads(await ws.recv()) == ["1", "1", topic, "phx_reply", {"status": "ok", "response": {}}]
            assert (await http.post(f"/api/v1/experiments/{exp_id}/start")).status_code == 200
            pushes: list[tuple[str, dict[str, Any]]] = []
            async with asyncio.timeout(60):
                while not pushes or pushes[-1] != ("status_changed", {**pushes[-1][1], "status": "completed"}):
                    join_ref, ref, frame_topic, event, payload = json.loads(await ws.recv())
                    assert (join_ref, ref, frame_topic) == ("1", None, topic)
                    pushes.append((event, payload))
        events = [event for event, _ in pushes]
        statuses = [payload["status"] for event, payload in pushes if event == "status_changed"]
        assert statuses == ["running", "completed"], statuses  # what start answered, then the end: no `pending`
        assert events[-3:] == ["run_completed", "progress_updated", "status_changed"], events
        # The first epoch's end moves the progress before the run finishes (later ones inside a second do not).
        first = next(payload for event, payload in pushes if event == "progress_updated")
        assert first["progress"] == 0.0 and first["epoch_progress"] == pytest.approx(1 / 3, abs=1e-4)
        completed = dict(pushes)["run_completed"]
        assert completed["status"] == "completed" and completed["group"] == "default"
        assert 0 <= completed["metrics"]["val_accuracy"] <= 1
        assert dict(pushes)["progress_updated"] == {"progress": 1.0, "epoch_progress": 1.0, "eta_seconds": 0.0}
        final = pushes[-1][1]
        assert final["status"] == "completed" and final["completed_at"].endswith("+00:00")
        # The model the sweep created holds the sweep's base hyperparams; `trained` is seed 001's saved flag.
        run_id = (await http.get(f"/api/v1/experiments/{exp_id}/runs")).json()["data"][0]["id"]
        model_id = (await http.get(f"/api/runs/{run_id}")).json()["model_id"]
        model = (await http.get(f"/api/v1/models/{model_id}")).json()["data"]
        stored = model["config"]["hyperparams"]
        assert (stored["epochs"], stored["max_samples"], stored["dataset"], stored["seed"]) == (3, 200, "digits", 42)
        assert (model["status"], model["trained"]) == ("active", False)


async def test_a_run_waiting_in_the_queue_of_a_cancelled_experiment_is_cancelled(tmp_path: Path) -> None:
    """Attached after the cancel, or left by a daemon that died mid-cancel: either way it must not wait forever."""
    async with (
        running_daemon(tmp_path / "state", **DAEMON_SETTINGS) as daemon,
        daemon_client(daemon.url, timeout=10) as http,
    ):
        exp_id = await create(http, "cancelled", sweep(seed=[1]))
        assert (await http.post(f"/api/v1/experiments/{exp_id}/start")).status_code == 200
        assert (await http.post(f"/api/v1/experiments/{exp_id}/cancel")).status_code == 200
        session = await http.post(
            "/api/v1/training/sessions",
            json={"session_name": "late", "config": {"architecture": MLP, "hyperparams": SWEEP_HP}},
        )
        run_id = session.json()["session_id"]  # created, not yet queued: the dispatcher cannot take it first
        attached = await http.post(f"/api/v1/experiments/{exp_id}/runs", json={"run_ids": [run_id]})
        assert attached.status_code == 200, attached.text

        async def cancelled() -> bool:
            return (await http.get(f"/api/runs/{run_id}")).json()["state"] == "cancelled"

        await eventually(cancelled, timeout=30)
