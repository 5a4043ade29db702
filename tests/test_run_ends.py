"""External runs end: `POST /api/v1/runs/{id}/finish`, `lost` after a silence (once, also across a restart), and
`running` again when their script sends data. Against a real daemon; the SDK's side is in tests/sdk/test_run_ends.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from pivotd.store.run_ends import FinishRun, MarkLost
from shared.client import AsyncPivotClient, PivotAPIError, PivotClient
from shared.models.runs import RunState
from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.training.helpers import MLP, hyperparams

FAST = {"alert_check_interval_s": 0.05, "run_lost_after_s": 1}

# The tests that take the `daemon` fixture write only under their own run ids: they share the module's one.
pytestmark = pytest.mark.shared_daemon


@asynccontextmanager
async def watched(daemon: RunningDaemon) -> AsyncIterator[tuple[httpx.AsyncClient, ClientConnection]]:
    """An HTTP client and a /ws client subscribed to runs, alerts and notifications."""
    async with daemon_client(daemon.url, timeout=10) as http, connect(daemon.ws_url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "topics": ["runs", "alerts", "notifications"]}))
        await next_message(ws, "subscribed")
        yield http, ws


async def next_message(ws: ClientConnection, kind: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
    """The next message of `kind` whose top-level fields equal `fields`, skipping others."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return message


async def finish(http: httpx.AsyncClient, run_id: str, **body: Any) -> httpx.Response:
    return await http.post(f"/api/v1/runs/{run_id}/finish", json=body)


async def scalars(http: httpx.AsyncClient, run_id: str, step: int) -> None:
    response = await http.post(f"/api/v1/runs/{run_id}/scalars", json=[{"step": step, "values": {"loss": 1.0}}])
    assert response.status_code == 202, response.text


async def training_notifications(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    listed = (await http.get("/api/v1/notifications", params={"type": "training"})).json()["notifications"]
    return [n for n in listed if n["data"]["run_id"] == run_id]


async def test_a_script_ends_its_run_and_data_makes_it_live_again(daemon: RunningDaemon) -> None:
    async with watched(daemon) as (http, ws):
        await scalars(http, "exp42", 0)
        ended = await finish(http, "exp42", status="failed", error="ValueError: loss is nan")
        assert ended.status_code == 200, ended.text
        assert ended.json()["run_id"] == "exp42"
        assert (ended.json()["status"], ended.json()["error"], ended.json()["kind"]) == (
            "failed", "ValueError: loss is nan", "external",
        )  # fmt: skip
        state = await next_message(ws, "run_state", run_id="exp42")
        assert (state["state"], state["error"]) == ("failed", "ValueError: loss is nan")
        notified = await training_notifications(http, "exp42")
        assert [(n["message"], n["priority"], n["data"]["state"]) for n in notified] == [
            ("Training run exp42 failed", "high", "failed")
        ]

        again = await finish(http, "exp42", status="failed", error="ValueError: loss is nan")
        assert again.status_code == 200 and again.json()["status"] == "failed"
        assert len(await training_notifications(http, "exp42")) == 1  # the same end twice is one end
        other = await finish(http, "exp42", status="succeeded")
        assert other.status_code == 409
        assert (
            other.json()["detail"]["error"] == "conflict"
            and "already ended as failed" in other.json()["detail"]["message"]
        )

        await scalars(http, "exp42", 1)  # resumed with the same run id
        state = await next_message(ws, "run_state", run_id="exp42")
        assert (state["state"], state["error"]) == ("running", None)
        run = (await http.get("/api/v1/runs/exp42", params={"steps": "none"})).json()
        assert (run["status"], run["error"]) == ("running", None)
        done = await finish(http, "exp42", status="succeeded")
        assert (done.status_code, done.json()["status"], done.json()["error"]) == (200, "succeeded", None)
        assert (await next_message(ws, "run_state", run_id="exp42"))["state"] == "succeeded"


async def test_a_script_that_died_before_sending_anything_still_shows(http: httpx.AsyncClient) -> None:
    ended = await finish(http, "crashed-early", status="failed", error="ImportError: no module named 'torchvision'")
    assert ended.status_code == 200
    runs = (await http.get("/api/v1/runs")).json()
    assert runs["crashed-early"]["status"] == "failed" and runs["crashed-early"]["step_count"] == 0
    assert runs["crashed-early"]["error"] == "ImportError: no module named 'torchvision'"

    async with AsyncPivotClient(str(http.base_url)) as client:
        cancelled = await client.finish_run("stopped", "cancelled", "KeyboardInterrupt")
        assert (cancelled.run_id, cancelled.status, cancelled.error) == ("stopped", "cancelled", "KeyboardInterrupt")
        with pytest.raises(PivotAPIError) as refused:
            await client.finish_run("stopped", "succeeded")
        assert (refused.value.status, refused.value.code) == (409, "conflict")
    synced = PivotClient(str(http.base_url))
    try:
        assert (await asyncio.to_thread(synced.finish_run, "stopped", "cancelled")).status == "cancelled"
    finally:
        synced.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "lost"}, "status"),
        ({"status": "done"}, "status"),
        ({"status": "failed", "eror": "typo"}, "eror"),
        ({"status": "succeeded", "error": "a succeeded run has no error"}, "error"),
        ({"status": "failed", "error": "x" * 4097}, "error"),
        ({"status": "failed", "error": 3}, "error"),
        ([], "body"),
    ],
)
async def test_a_bad_end_is_a_422_naming_the_field(http: httpx.AsyncClient, body: Any, field: str) -> None:
    response = await http.post("/api/v1/runs/badly-ended/finish", json=body)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["field"] == field and problem["loc"] == ["body"] + ([] if field == "body" else [field])
    assert (await http.get("/api/v1/runs/badly-ended")).status_code == 404  # nothing was created


async def test_a_bad_run_id_or_body_is_refused(http: httpx.AsyncClient) -> None:
    bad_id = await http.post("/api/v1/runs/not%20a%20run/finish", json={"status": "succeeded"})
    assert bad_id.status_code == 422 and bad_id.json()["detail"][0]["loc"] == ["path", "run_id"]
    not_json = await http.post("/api/v1/runs/exp42/finish", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["type"] == "json_invalid"
    empty = await http.post("/api/v1/runs/exp42/finish")
    assert empty.status_code == 422 and empty.json()["detail"][0]["type"] == "missing"


async def test_a_managed_runs_state_is_its_trainers_alone(http: httpx.AsyncClient) -> None:
    created = await http.post(
        "/api/v1/training/sessions", json={"config": {"architecture": MLP, "hyperparams": hyperparams(epochs=1)}}
    )
    session_id = created.json()["session_id"]
    refused = await finish(http, session_id, status="succeeded")
    assert refused.status_code == 409 and "managed" in refused.json()["detail"]["message"]
    await scalars(http, session_id, 0)  # metrics may arrive for it; they never change its state
    run = (await http.get(f"/api/v1/runs/{session_id}", params={"steps": "none"})).json()
    assert (run["kind"], run["status"]) == ("managed", "created")


async def test_a_silent_run_is_lost_once_and_its_silence_alert_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(tmp_path / "state", **FAST) as daemon, watched(daemon) as (http, ws):
        silent = await http.patch("/api/v1/alerts/rules/rule_run_silent", json={"threshold": 0.3})
        assert silent.status_code == 200
        experiment = (await http.post("/api/v1/experiments", json={"experiment": {"name": "killed"}})).json()["data"]
        sent = await http.post(
            "/api/v1/runs/killed/scalars",
            json={"points": [{"step": 0, "values": {"loss": 1.0}}], "experiment_id": experiment["id"]},
        )
        assert sent.status_code == 202
        last_update = (await http.get("/api/v1/runs")).json()["killed"]["last_update"]

        fired = await next_message(ws, "alert_triggered")
        assert fired["data"]["rule_id"] == "rule_run_silent" and fired["data"]["run_id"] == "killed"
        # As for a managed run: the notification and the alerts first, then `run_state`.
        resolved = await next_message(ws, "alert_resolved")
        assert resolved["data"]["alert_id"] == fired["data"]["alert_id"]
        assert resolved["data"]["resolution"] == "run lost: no data for 1 s"
        state = await next_message(ws, "run_state", run_id="killed")
        assert (state["state"], state["error"]) == ("lost", "no data for 1 s")

        run = (await http.get("/api/v1/runs")).json()["killed"]
        assert (run["status"], run["error"]) == ("lost", "no data for 1 s")
        assert run["last_update"] == last_update  # still when its data stopped
        notified = await training_notifications(http, "killed")
        assert [(n["message"], n["data"]["outcome"], n["data"]["error"]) for n in notified] == [
            ("Training run killed lost", "failed", "no data for 1 s")
        ]
        assert await daemon.services.run_ends.mark_lost() == []  # once: it is no longer running
        # Each family shows it in its own words: L its own state, C (a closed vocabulary) `failed`.
        assert list((await http.get("/api/v1/runs", params={"filter[status]": "lost"})).json()) == ["killed"]
        assert list((await http.get("/api/v1/runs", params={"filter[status]": "failed"})).json()) == []
        members = (await http.get(f"/api/v1/experiments/{experiment['id']}/runs")).json()["data"]
        assert [(m["id"], m["status"]) for m in members] == [("killed", "failed")]
        detail = (await http.get(f"/api/v1/experiments/{experiment['id']}")).json()["data"]
        assert detail["status"] == "failed" and detail["results_summary"]["runs_by_status"] == {"failed": 1}

        # From here the run must stay revived: with FAST's 1 s of silence a slow machine could mark it lost again
        # between its revival and the reads below.
        async def no_loss() -> list[str]:
            return []

        monkeypatch.setattr(daemon.services.run_ends, "mark_lost", no_loss)
        await scalars(http, "killed", 1)  # it was only slow
        assert (await next_message(ws, "run_state", run_id="killed"))["state"] == "running"
        detail = (await http.get(f"/api/v1/experiments/{experiment['id']}")).json()["data"]
        assert detail["status"] == "running"
        assert len(await training_notifications(http, "killed")) == 1


async def test_a_restart_marks_a_run_left_silent_once(tmp_path: Path) -> None:
    """The state is stored: a run that went silent before a restart is marked by the next daemon, once, after that
    daemon has itself seen the silence (scripts retry while it is down)."""
    data_dir = tmp_path / "state"
    async with running_daemon(data_dir, run_lost_after_s=3600) as first, daemon_client(first.url) as http:
        await scalars(http, "left", 0)
    async with running_daemon(data_dir, **FAST) as second, watched(second) as (http, ws):
        run = (await http.get("/api/v1/runs")).json()["left"]
        if run["status"] == "running":
            assert (await next_message(ws, "run_state", run_id="left"))["state"] == "lost"
        [notified] = await training_notifications(http, "left")
        lost_at = datetime.fromisoformat(notified["created_at"]).timestamp()
        assert lost_at - second.services.started_at >= 0.9  # not before this daemon was up for the silence
    async with running_daemon(data_dir, **FAST) as third, daemon_client(third.url) as http:
        assert await third.services.store.writer.submit(MarkLost(time.time(), "no data")) == []
        assert (await http.get("/api/v1/runs")).json()["left"]["status"] == "lost"
        assert len(await training_notifications(http, "left")) == 1


async def test_an_experiments_final_status_comes_after_every_runs_end(daemon: RunningDaemon) -> None:
    """Two runs that end together both commit before either end's listener reads the experiment's status: the
    status must still follow both runs' `experiment_run_completed`, or a client that stops at it misses one."""
    async with daemon_client(daemon.url, timeout=10) as http, connect(daemon.ws_url) as ws:
        experiment = (await http.post("/api/v1/experiments", json={"experiment": {"name": "together"}})).json()["data"]
        topic = f"experiment:{experiment['id']}"
        for run_id in ("together_a", "together_b"):
            body = {"points": [{"step": 0, "values": {"loss": 1.0}}], "experiment_id": experiment["id"]}
            assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=body)).status_code == 202
        await ws.send(json.dumps({"action": "subscribe", "topics": [topic]}))
        await next_message(ws, "subscribed")
        # b's end is committed, its listener not called yet: the moment the race leaves it in.
        assert await daemon.services.store.writer.submit(FinishRun("together_b", RunState.SUCCEEDED, None))
        assert (await finish(http, "together_a", status="succeeded")).status_code == 200

        ended: list[str] = []
        async with asyncio.timeout(10):
            while (message := json.loads(await ws.recv()))["type"] != "experiment_status" or message["status"] in (
                "running",
                "pending",
            ):
                if message["type"] == "experiment_run_completed":
                    ended.append(message["run_id"])
        assert message["status"] == "completed"
        assert sorted(ended) == ["together_a", "together_b"]


class _WatchedLock(asyncio.Lock):
    """An asyncio lock that says when someone waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.contended.set()
        return await super().acquire()


async def test_a_runs_end_that_the_final_status_reported_is_not_reported_again(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b's end listener is under way (reading b's metrics) when a's end makes the experiment final: b's
    `experiment_run_completed` goes out once, before the status, whichever of the two listeners reports it."""
    events = daemon.services.experiments._events
    published: list[tuple[str, str | None]] = []
    final = asyncio.Event()
    publish = events._publish

    def spy(experiment_id: str, kind: str, body: dict[str, Any]) -> None:
        published.append((kind, body.get("run_id") or body.get("status")))
        if kind == "experiment_status" and body["status"] == "completed":
            final.set()
        publish(experiment_id, kind, body)

    monkeypatch.setattr(events, "_publish", spy)
    monkeypatch.setattr(events, "_lock", lock := _WatchedLock())
    reader = daemon.services.store.experiments
    read, reading, release = reader.runs_by_id, asyncio.Event(), asyncio.Event()

    async def paused(run_ids: list[str]) -> Any:
        if run_ids == ["again_b"]:
            reading.set()
            await release.wait()
        return await read(run_ids)

    monkeypatch.setattr(reader, "runs_by_id", paused)
    async with daemon_client(daemon.url, timeout=10) as http:
        experiment = (await http.post("/api/v1/experiments", json={"experiment": {"name": "again"}})).json()["data"]
        for run_id in ("again_a", "again_b"):
            body = {"points": [{"step": 0, "values": {"loss": 1.0}}], "experiment_id": experiment["id"]}
            assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=body)).status_code == 202
        assert await daemon.services.store.writer.submit(FinishRun("again_b", RunState.SUCCEEDED, None))
        listener = asyncio.create_task(events.run_finished("again_b", "succeeded", None))
        await reading.wait()
        ended = asyncio.create_task(finish(http, "again_a", status="succeeded"))
        # a's listener either waits for b's (the lock) or reports b's end with the final status: then b's goes on.
        async with asyncio.timeout(10):
            await asyncio.wait(
                [asyncio.create_task(lock.contended.wait()), asyncio.create_task(final.wait())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        release.set()
        async with asyncio.timeout(10):
            assert (await ended).status_code == 200
            await listener
            await final.wait()
    completed = [run_id for kind, run_id in published if kind == "experiment_run_completed"]
    assert sorted(completed) == ["again_a", "again_b"], published
    assert published.index(("experiment_status", "completed")) > max(
        published.index(("experiment_run_completed", run_id)) for run_id in completed
    )
