"""WS /socket/websocket: the Phoenix Channels wire protocol, its topics, and misbehaving clients.

Most hub messages are published straight into the real daemon's hub in the shapes their producers use; one
test here goes through the telemetry route, and tests/training/test_experiment_sweeps.py follows a real sweep.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from pivotd.store.ops import Tx
from tests.daemon import TEST_TOKEN, RunningDaemon, daemon_client, running_daemon
from tests.node_packages import installed_package
from tests.payloads import contract_payload

Frame = list[Any]
OWNER = {"authorization": f"Bearer {TEST_TOKEN}"}
PHOENIX_CLIENT = Path(__file__).parent / "phoenix_client"


def socket_url(daemon: RunningDaemon, **params: str) -> str:
    base = "ws" + daemon.url.removeprefix("http") + "/socket/websocket"
    return base + "?" + urlencode({"vsn": "2.0.0", **params})


class Client:
    """A bare v2 client: frames in and out, refs counted like phoenix.js does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ref = 0

    async def send(self, topic: str, event: str, payload: Any = None, join_ref: str | None = None) -> str:
        self.ref += 1
        ref = str(self.ref)
        await self.ws.send(json.dumps([join_ref, ref, topic, event, {} if payload is None else payload]))
        return ref

    async def recv(self, timeout: float = 5) -> Frame:
        frame: Frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return frame

    async def until(self, topic: str, event: str, timeout: float = 5) -> Frame:
        """Skip other frames until one of `event` on `topic` arrives."""
        async with asyncio.timeout(timeout):
            while (frame := await self.recv(timeout)) and (frame[2], frame[3]) != (topic, event):
                pass
        return frame

    async def join(self, topic: str) -> str:
        """Join and check the ok reply; returns the join_ref."""
        self.ref += 1
        join_ref = str(self.ref)
        await self.ws.send(json.dumps([join_ref, join_ref, topic, "phx_join", {}]))
        assert await self.recv() == [join_ref, join_ref, topic, "phx_reply", {"status": "ok", "response": {}}]
        return join_ref


@asynccontextmanager
async def client(daemon: RunningDaemon, **params: str) -> AsyncIterator[Client]:
    async with connect(socket_url(daemon, **params)) as ws:
        yield Client(ws)


def publish(daemon: RunningDaemon, topic: str, message: dict[str, Any]) -> None:
    daemon.services.hub.publish((topic,), json.dumps({"topic": topic, **message}))


async def create_experiment(http: httpx.AsyncClient, name: str = "socket") -> str:
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": name}})
    assert response.status_code == 201, response.text
    experiment_id: str = response.json()["data"]["id"]
    return experiment_id


def telemetry_event(name: list[str], experiment_id: str | None = None) -> dict[str, Any]:
    metadata = {"experiment_id": experiment_id} if experiment_id else {}
    return {
        "type": "telemetry_event",
        "event": {
            "id": f"evt_{'_'.join(name)}_{experiment_id}",
            "event_name": name,
            "measurements": {"duration_ms": 12.5},
            "metadata": metadata,
            "timestamp": "2024-01-15T10:00:00.000Z",
        },
    }


@pytest.mark.shared_daemon  # its own connections only: one daemon for the module's such tests
async def test_heartbeat_join_and_leave(daemon: RunningDaemon) -> None:
    async with client(daemon) as c:
        ref = await c.send("phoenix", "heartbeat")
        assert await c.recv() == [None, ref, "phoenix", "phx_reply", {"status": "ok", "response": {}}]
        join_ref = await c.join("telemetry:all")
        ref = await c.send("telemetry:all", "phx_leave", join_ref=join_ref)
        assert await c.recv() == [join_ref, ref, "telemetry:all", "phx_reply", {"status": "ok", "response": {}}]
        assert await c.recv() == [join_ref, join_ref, "telemetry:all", "phx_close", {}]
        # Left: the topic's events stop, and a push to it is unmatched.
        publish(daemon, "telemetry", telemetry_event(["a", "b"]))
        ref = await c.send("telemetry:all", "subscribe", {"event_types": ["b"]}, join_ref=join_ref)
        error = {"status": "error", "response": {"reason": "unmatched topic"}}
        assert await c.recv() == [None, ref, "telemetry:all", "phx_reply", error]


@pytest.mark.shared_daemon  # its own connections only: one daemon for the module's such tests
async def test_unmatched_topics_and_unknown_events(daemon: RunningDaemon) -> None:
    error = {"status": "error", "response": {"reason": "unmatched topic"}}
    async with client(daemon) as c:
        for topic in ("rooms:lobby", "experiment:", "telemetry", "dashboard:", "phoenix"):
            ref = await c.send(topic, "phx_join", join_ref="j")
            assert await c.recv() == [None, ref, topic, "phx_reply", error], topic
        ref = await c.send("phoenix", "ping")
        assert await c.recv() == [None, ref, "phoenix", "phx_reply", error]
        # A leave of a topic never joined is answered ok, as Phoenix does.
        ref = await c.send("telemetry:all", "phx_leave", join_ref="9")
        assert await c.recv() == ["9", ref, "telemetry:all", "phx_reply", {"status": "ok", "response": {}}]
        join_ref = await c.join("telemetry:all")
        ref = await c.send("telemetry:all", "shout", {"body": "hi"}, join_ref=join_ref)
        reply = await c.recv()
        assert reply[:4] == [join_ref, ref, "telemetry:all", "phx_reply"]
        assert reply[4]["status"] == "error" and "unknown event 'shout'" in reply[4]["response"]["reason"]


@pytest.mark.shared_daemon  # its own connections only: one daemon for the module's such tests
async def test_join_of_an_unknown_experiment_is_refused(daemon: RunningDaemon) -> None:
    async with client(daemon) as c:
        ref = await c.send("experiment:exp_missing", "phx_join", join_ref="7")
        error = {"status": "error", "response": {"reason": "not found"}}
        assert await c.recv() == ["7", ref, "experiment:exp_missing", "phx_reply", error]


async def test_experiment_events_reach_the_joined_channel(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    experiment_id = await create_experiment(http)
    other_id = await create_experiment(http, "other")
    topic = f"experiment:{experiment_id}"
    async with client(daemon) as c:
        join_ref = await c.join(topic)
        base = {"experiment_id": experiment_id}
        publish(daemon, f"experiment:{other_id}", {"type": "experiment_error", "experiment_id": other_id})
        publish(daemon, topic, base | {"type": "experiment_status", "status": "running", "started_at": "t0"})
        publish(daemon, topic, base | {"type": "experiment_progress", "progress": 0.5, "eta_seconds": 30.0})
        run = {"run_id": "run_1", "status": "completed", "group": "a", "metrics": {"loss": 0.1}}
        publish(daemon, topic, base | {"type": "experiment_run_completed", **run})
        publish(daemon, topic, base | {"type": "experiment_error", "message": "boom", "code": "run_failed"})
        expected = [
            ("status_changed", {"status": "running", "started_at": "t0"}),
            ("progress_updated", {"progress": 0.5, "eta_seconds": 30.0}),
            ("run_completed", run),
            ("error", {"message": "boom", "code": "run_failed"}),
        ]
        for event, payload in expected:
            assert await c.recv() == [join_ref, None, topic, event, payload]


async def test_a_second_join_closes_the_first(daemon: RunningDaemon) -> None:
    async with client(daemon) as c:
        first = await c.join("telemetry:all")
        second = str(c.ref + 1)
        c.ref += 1
        await c.ws.send(json.dumps([second, second, "telemetry:all", "phx_join", {}]))
        assert await c.recv() == [first, first, "telemetry:all", "phx_close", {}]
        assert await c.recv() == [second, second, "telemetry:all", "phx_reply", {"status": "ok", "response": {}}]
        # A leave of the first join (a client racing the server's close) is not answered.
        await c.send("telemetry:all", "phx_leave", join_ref=first)
        publish(daemon, "telemetry", telemetry_event(["x"]))
        frame = await c.recv()
        assert frame[:4] == [second, None, "telemetry:all", "event"]


async def test_telemetry_filters_by_experiment_and_event_type(daemon: RunningDaemon) -> None:
    async with client(daemon) as c:
        everything = await c.join("telemetry:all")
        only_a = await c.join("telemetry:exp_a")
        publish(daemon, "telemetry", telemetry_event(["crucible", "model", "inference"], "exp_b"))
        publish(daemon, "telemetry", telemetry_event(["crucible", "model", "inference"], "exp_a"))
        received = [await c.recv() for _ in range(3)]
        assert [(f[0], f[2], f[4]["metadata"].get("experiment_id")) for f in received] == [
            (everything, "telemetry:all", "exp_b"),
            (everything, "telemetry:all", "exp_a"),
            (only_a, "telemetry:exp_a", "exp_a"),
        ]
        assert received[2][4]["event_name"] == ["crucible", "model", "inference"]

        # telemetry:all narrows to one type (whole trailing segments); telemetry:exp_a drops it instead.
        ref = await c.send("telemetry:all", "subscribe", {"event_types": ["model.inference"]}, join_ref=everything)
        filters = {"event_types": ["model.inference"], "excluded_event_types": []}
        assert await c.recv() == [everything, ref, "telemetry:all", "phx_reply", {"status": "ok", "response": filters}]
        ref = await c.send("telemetry:exp_a", "unsubscribe", {"event_types": ["model.inference"]}, join_ref=only_a)
        filters = {"event_types": None, "excluded_event_types": ["model.inference"]}
        assert await c.recv() == [only_a, ref, "telemetry:exp_a", "phx_reply", {"status": "ok", "response": filters}]
        for name in (["crucible", "model", "inference_batch"], ["model"], ["crucible", "model", "inference"]):
            publish(daemon, "telemetry", telemetry_event(name, "exp_a"))
        publish(daemon, "telemetry", telemetry_event(["crucible", "training", "step"], "exp_a"))
        received = [await c.recv() for _ in range(4)]
        assert [(f[2], ".".join(f[4]["event_name"])) for f in received] == [
            ("telemetry:exp_a", "crucible.model.inference_batch"),
            ("telemetry:exp_a", "model"),
            ("telemetry:all", "crucible.model.inference"),
            ("telemetry:exp_a", "crucible.training.step"),
        ]

        for bad in ({}, {"event_types": []}, {"event_types": "model.inference"}, {"event_types": [""]}, [1]):
            ref = await c.send("telemetry:all", "subscribe", bad, join_ref=everything)
            reply = await c.recv()
            assert reply[1] == ref and reply[4]["status"] == "error", bad
            assert reply[4]["response"]["reason"].startswith("event_types: "), bad


async def test_events_posted_to_the_telemetry_route_reach_a_joined_channel(daemon: RunningDaemon) -> None:
    """End to end through the real producer: the ingest route publishes, the channel filters and pushes."""
    async with client(daemon) as c, daemon_client(daemon.url) as http:
        join_ref = await c.join("telemetry:exp_live")
        events = [
            {"event_name": "crucible.model.inference", "measurements": {"duration_ms": 234}, "metadata": {}},
            {"event_name": ["crucible", "model", "inference"], "measurements": {"duration_ms": 198},
             "metadata": {"experiment_id": "exp_live", "model": "mlp"}, "timestamp": "2024-01-15T10:35:00Z"},
        ]  # fmt: skip
        response = await http.post("/api/v1/telemetry/events", json={"events": events})
        assert response.status_code == 202 and response.json()["data"] == {"accepted": 2, "rejected": 0}
        pushed = await c.until("telemetry:exp_live", "event")
        assert pushed[:2] == [join_ref, None]
        event = pushed[4]
        assert event["id"].startswith("evt_") and event["measurements"] == {"duration_ms": 198}
        assert event["metadata"] == {"experiment_id": "exp_live", "model": "mlp"}
        assert event["timestamp"].startswith("2024-01-15T10:35:00")


@dataclass(frozen=True)
class FinishRun:
    """A store write marking a run succeeded now (what the supervisor does for managed runs)."""

    run_id: str

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("UPDATE runs SET status = 'succeeded', finished_at = ? WHERE run_id = ?", (tx.now, self.run_id))


async def test_dashboard_streams_system_stats_and_the_experiment_summary(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", sample_interval_s=0.2) as daemon,
        daemon_client(daemon.url, timeout=10) as http,
        client(daemon) as c,
    ):
        join_ref = await c.join("dashboard:user_123")
        stats = await c.recv()
        assert stats[:4] == [join_ref, None, "dashboard:user_123", "system_stats"]
        assert {"cpu", "memory", "gpu"} <= set(stats[4]) and 0 <= stats[4]["cpu"] <= 100
        assert 0 < stats[4]["memory"] <= 100
        summary = {"active": 0, "completed_today": 0}
        assert await c.recv() == [join_ref, None, "dashboard:user_123", "experiment_summary", summary]
        # The sampler keeps the stats coming.
        later = await c.until("dashboard:user_123", "system_stats")
        assert later[4]["timestamp"] != stats[4]["timestamp"]

        # A layer-wise run is running while it reports; attached, its experiment becomes active.
        experiment_id = await create_experiment(http)
        assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload())).status_code == 202
        run_id = contract_payload()["metadata"]["run_id"]
        attached = await http.post(f"/api/v1/experiments/{experiment_id}/runs", json={"run_ids": [run_id]})
        assert attached.status_code == 200, attached.text
        changed = await c.until("dashboard:user_123", "experiment_summary")
        assert changed[4] == {"active": 1, "completed_today": 0}
        await daemon.services.store.writer.submit(FinishRun(run_id))
        changed = await c.until("dashboard:user_123", "experiment_summary")
        assert changed[4] == {"active": 0, "completed_today": 1}


async def test_a_client_that_falls_behind_is_told_on_each_channel(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "state", ws_queue_size=2) as daemon, client(daemon) as c:
        join_ref = await c.join("telemetry:all")
        for step in range(5):  # published without yielding: the mailbox overflows before the pump runs
            publish(daemon, "telemetry", telemetry_event([f"step{step}"]))
        assert await c.recv() == [join_ref, None, "telemetry:all", "lagged", {"dropped": 3}]
        assert [(await c.recv())[4]["event_name"] for _ in range(2)] == [["step3"], ["step4"]]


@pytest.mark.shared_daemon  # its own connections only: one daemon for the module's such tests
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 1008),
        ('{"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "1"}', 1008),  # a v1 frame on v2
        ('[null, "1", "phoenix", "heartbeat"]', 1008),
        ('[null, "1", "phoenix", "heartbeat", {}, "extra"]', 1008),
        ('[null, "1", 5, "heartbeat", {}]', 1008),
        ('[null, "1", "phoenix", "", {}]', 1008),
        ('[null, true, "phoenix", "heartbeat", {}]', 1008),
        ('[null, "1", "phoenix", "heartbeat", "' + "x" * 70_000 + '"]', 1009),
        (b"\x00\x01\x02", 1003),  # the v2 binary serializer
    ],
)
async def test_bad_frames_close_the_connection(daemon: RunningDaemon, frame: str | bytes, code: int) -> None:
    async with client(daemon) as c:
        await c.ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await c.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    async with client(daemon) as c:  # the daemon is unharmed
        ref = await c.send("phoenix", "heartbeat")
        assert (await c.recv())[1] == ref


@pytest.mark.shared_daemon  # its own connections only: one daemon for the module's such tests
async def test_v1_serializer_speaks_objects(daemon: RunningDaemon) -> None:
    async with client(daemon, vsn="1.0.0") as c:
        await c.ws.send(json.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": 1}))
        reply = json.loads(await c.ws.recv())
        assert reply == {
            "topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}},
            "ref": 1, "join_ref": None,
        }  # fmt: skip


@pytest.mark.shared_daemon  # its own connections only: one daemon for the module's such tests
async def test_an_unsupported_serializer_version_is_refused(daemon: RunningDaemon) -> None:
    for vsn in ("3.0.0", "2.1.0", "two"):
        with pytest.raises(InvalidStatus) as refused:
            async with client(daemon, vsn=vsn):
                pass
        assert refused.value.response.status_code == 422
        assert b"vsn: unsupported serializer version" in refused.value.response.body


async def test_a_silent_client_is_closed(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "state", socket_idle_timeout_s=0.3) as daemon, client(daemon) as c:
        ref = await c.send("phoenix", "heartbeat")  # any frame restarts the clock
        assert (await c.recv())[1] == ref
        with pytest.raises(ConnectionClosed) as closed:
            await c.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "heartbeat timeout")


async def test_token_in_connect_params_when_loopback_is_not_trusted(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "state", trust_loopback=False) as daemon:
        with pytest.raises(InvalidStatus) as refused:
            async with client(daemon):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            async with client(daemon, token="wrong"):
                pass
        async with client(daemon, token=TEST_TOKEN) as c:
            await c.join("telemetry:all")
        # phoenix.js's `authToken` option: the token in a subprotocol, base64 without padding (`btoa`).
        url = socket_url(daemon)
        for token, accepted in ((TEST_TOKEN, True), ("wrong", False)):
            encoded = base64.b64encode(token.encode()).decode().rstrip("=")
            protocols = [Subprotocol("phoenix"), Subprotocol(f"base64url.bearer.phx.{encoded}")]
            if not accepted:
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(url, subprotocols=protocols):
                        pass
                assert refused.value.response.status_code == 401
                continue
            async with connect(url, subprotocols=protocols) as ws:
                assert ws.subprotocol == "phoenix"  # a browser drops a socket that does not get it back
                await Client(ws).join("telemetry:all")


def phoenix_client_dir() -> Path:
    """tests/phoenix_client with its locked node_modules, installed once per lockfile into a cache dir."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the Phoenix JavaScript client (apt-get install nodejs npm)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        pytest.skip(f"the Phoenix JavaScript client needs node 18 or later, found {version}")
    target = installed_package(npm, PHOENIX_CLIENT, "phoenix-client")
    # The script runs from there so that its imports resolve to that node_modules. Concurrent tests (xdist
    # workers) may be running it: the new copy replaces it in one step, never a half-written file.
    staging = target / f"client.mjs.{os.getpid()}"
    shutil.copy(PHOENIX_CLIENT / "client.mjs", staging)
    staging.replace(target / "client.mjs")
    return target


@pytest.mark.parametrize("auth", ["params", "authToken"])
async def test_the_phoenix_javascript_client(tmp_path: Path, auth: str) -> None:
    """The npm `phoenix` client (tests/phoenix_client/client.mjs) joins, heartbeats, filters, receives, leaves,
    against a daemon that trusts no one without the token, sent as a connect param or as `authToken`."""
    directory = phoenix_client_dir()
    async with running_daemon(tmp_path / "state", trust_loopback=False) as daemon:
        async with daemon_client(daemon.url, headers=OWNER) as http:
            experiment_id = await create_experiment(http)
        await _drive_the_phoenix_javascript_client(daemon, directory, experiment_id, auth)


async def _drive_the_phoenix_javascript_client(
    daemon: RunningDaemon, directory: Path, experiment_id: str, auth: str
) -> None:
    url = "ws" + daemon.url.removeprefix("http") + "/socket"
    node = await asyncio.create_subprocess_exec(
        "node", "client.mjs", url, TEST_TOKEN, experiment_id, auth,
        cwd=directory, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert node.stdout is not None and node.stderr is not None
    steps: dict[str, dict[str, Any]] = {}
    telemetry: list[list[str]] = []
    try:
        async with asyncio.timeout(30):
            while line := await node.stdout.readline():
                step = json.loads(line)
                steps[step["step"]] = step
                if step["step"] == "telemetry_event":
                    telemetry.append(step["event"]["event_name"])
                if step["step"] == "ready":
                    for name in (["crucible", "model", "training"], ["crucible", "model", "inference"]):
                        publish(daemon, "telemetry", telemetry_event(name, experiment_id))
                    status = {"status": "completed", "started_at": "t0", "completed_at": "t1"}
                    message = {"type": "experiment_status", "experiment_id": experiment_id, **status}
                    publish(daemon, f"experiment:{experiment_id}", message)
            code = await node.wait()
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    stderr = (await node.stderr.read()).decode()
    assert code == 0, f"{steps}\n{stderr}"
    assert steps["join_refused"]["reason"] == "unmatched topic"
    assert steps["subscribed"]["filter"] == {"event_types": ["model.inference"], "excluded_event_types": []}
    assert telemetry == [["crucible", "model", "inference"]]  # the client's subscribe filtered the rest
    assert steps["status_changed"]["payload"] == {"status": "completed", "started_at": "t0", "completed_at": "t1"}
    assert {"left", "closed"} <= set(steps)


async def test_channels_and_event_type_filters_are_capped(daemon: RunningDaemon) -> None:
    """Frames after the handshake are not rate limited: these caps are what bound one connection's cost."""
    async with client(daemon) as c:
        for index in range(100):
            await c.join(f"telemetry:exp_{index}")
        ref = await c.send("telemetry:one_too_many", "phx_join", join_ref="x")
        assert await c.recv() == ["x", ref, "telemetry:one_too_many", "phx_reply",
                                  {"status": "error", "response": {"reason": "too many channels"}}]  # fmt: skip
        ref = await c.send("telemetry:exp_0", "phx_join", join_ref="rejoin")  # not one more channel
        assert (await c.recv())[3] == "phx_close"
        assert (await c.recv())[4] == {"status": "ok", "response": {}}
        join_ref = "telemetry:exp_1"
        ref = await c.send(join_ref, "subscribe", {"event_types": [f"t{i}" for i in range(256)]})
        reply = await c.until(join_ref, "phx_reply")
        assert reply[1] == ref and reply[4]["status"] == "ok" and len(reply[4]["response"]["event_types"]) == 256
        for event in ("subscribe", "unsubscribe"):  # excluded types count too, before any subscribe
            topic = join_ref if event == "subscribe" else "telemetry:exp_2"
            ref = await c.send(topic, event, {"event_types": ["one-more"] + [f"u{i}" for i in range(256)]})
            reply = await c.until(topic, "phx_reply")
            assert reply[4] == {
                "status": "error",
                "response": {"reason": "too many event types", "max_event_types": 256},
            }
        await c.send("telemetry:exp_1", "unsubscribe", {"event_types": ["t0"]})
        assert len((await c.until("telemetry:exp_1", "phx_reply"))[4]["response"]["event_types"]) == 255


async def test_events_for_an_earlier_join_are_dropped(daemon: RunningDaemon) -> None:
    """Phoenix drops any event on a joined topic that carries another join's join_ref, not only a leave."""
    async with client(daemon) as c:
        first = await c.join("telemetry:all")
        ref = await c.send("telemetry:all", "phx_join", join_ref="second")
        assert await c.recv() == [first, first, "telemetry:all", "phx_close", {}]
        assert (await c.recv())[:2] == ["second", ref]
        for event in ("subscribe", "unknown", "phx_leave"):
            await c.send("telemetry:all", event, {"event_types": ["b"]}, join_ref=first)
        # Nothing was answered, and the current join still has no filter: the next reply is the heartbeat's.
        ref = await c.send("phoenix", "heartbeat")
        assert (await c.recv())[1:4] == [ref, "phoenix", "phx_reply"]
        ref = await c.send("telemetry:all", "subscribe", {"event_types": ["c"]})  # null join_ref: accepted
        reply = await c.recv()
        assert reply[:2] == ["second", ref] and reply[4]["response"]["event_types"] == ["c"]


async def test_a_store_failure_fails_the_join_not_the_connection(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: a real store cannot be made to fail one read on demand, so the live daemon's reader
    methods are replaced by ones that raise what SQLite raises on a failing disk."""

    async def failing(*args: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    experiments = daemon.services.store.experiments
    async with client(daemon) as c:
        for topic, method in (("experiment:exp_1", "get"), ("dashboard:me", "summary")):
            with monkeypatch.context() as patch:
                patch.setattr(experiments, method, failing)
                ref = await c.send(topic, "phx_join", join_ref=f"join-{method}")
                assert await c.recv() == [f"join-{method}", ref, topic, "phx_reply",
                                          {"status": "error", "response": {"reason": "unavailable"}}]  # fmt: skip
        assert "could not join experiment:exp_1" in caplog.text and "disk I/O error" in caplog.text
        # A failing summary on a later sample: the stats still arrive, the connection stays.
        join_ref = await c.join("dashboard:me")
        await c.until("dashboard:me", "experiment_summary")
        monkeypatch.setattr(experiments, "summary", failing)
        monkeypatch.setattr("pivotd.channels.topics.SUMMARY_INTERVAL_S", 0.0)
        sample = {"cpu": {"percent": 12.5}, "memory": {"percent": 40.0}, "timestamp": "t"}
        publish(daemon, "resources", {"type": "resources", "data": sample})
        while (stats := await c.until("dashboard:me", "system_stats"))[4]["timestamp"] != "t":
            pass  # the daemon's own sampler may publish one first
        assert stats[:2] == [join_ref, None] and stats[4]["cpu"] == 12.5
        ref = await c.send("phoenix", "heartbeat")
        assert (await c.recv())[1] == ref
        assert "could not compute the experiment summary" in caplog.text
