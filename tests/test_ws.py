"""WebSocket /ws: seed 000's flow exactly, PIVOT's topic extensions, and misbehaving clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shared.models.messages import WS_MESSAGE, WsMessage
from tests.daemon import RunningDaemon, daemon_client
from tests.payloads import contract_payload, layerwise_payload


async def receive(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def receive_type(ws: ClientConnection, kind: str, timeout: float = 5) -> dict[str, Any]:
    """Skip other messages until one of `kind` arrives."""
    async with asyncio.timeout(timeout):
        while (message := await receive(ws)) and message["type"] != kind:
            pass
    return message


@asynccontextmanager
async def client(daemon: RunningDaemon) -> AsyncIterator[ClientConnection]:
    async with connect(daemon.ws_url, max_size=None) as ws:
        yield ws


async def test_connect_sends_initial_runs(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    await http.post("/api/v1/metrics/layerwise", json=contract_payload())
    async with client(daemon) as ws:
        message = await receive(ws)
        assert message["type"] == "initial_runs"
        run = message["data"]["experiment_2024_0210_v2"]
        assert run["step_count"] == 1 and run["latest_step"] == 1500 and "T" in run["created_at"]


async def test_new_metrics_broadcast_after_post_from_another_client(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    async with client(daemon) as first, client(daemon) as second:
        assert (await receive(first))["data"] == {}
        await receive(second)
        assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload())).status_code == 202
        for ws in (first, second):
            message = await receive(ws)
            assert message["type"] == "new_metrics"
            assert message["run_id"] == "experiment_2024_0210_v2"
            assert set(message["data"]) == {"step", "timestamp", "batch_size", "layers", "cross_layer", "layer_groups"}
            assert message["data"]["step"] == 1500
            assert message["data"]["layers"][0]["layer_id"] == "encoder/linear1"


async def test_subscribe_run_history_full_and_lite(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    for step in (2, 1):
        await http.post("/api/v1/metrics/layerwise", json=contract_payload(step=step))
    async with client(daemon) as ws:
        await receive(ws)
        await ws.send(json.dumps({"action": "subscribe_run", "run_id": "experiment_2024_0210_v2"}))
        history = await receive(ws)
        assert history["type"] == "run_history" and history["run_id"] == "experiment_2024_0210_v2"
        assert {"created_at", "last_update", "steps"} <= set(history["data"])
        assert [s["step"] for s in history["data"]["steps"]] == [1, 2]
        assert "parameter_statistics" in history["data"]["steps"][0]["layers"][0]
        await ws.send(json.dumps({"action": "subscribe_run", "run_id": "experiment_2024_0210_v2", "lite": True}))
        lite = (await receive(ws))["data"]["steps"][0]["layers"][0]
        assert set(lite) == {
            "layer_id", "layer_type", "depth_index", "activation_std",
            "cross_layer_std_ratio", "gradient_l2_norm", "gradient_max_abs", "spectral_norm",
        }  # fmt: skip


async def test_unknown_run_ping_and_bad_messages_keep_the_socket_open(daemon: RunningDaemon) -> None:
    async with client(daemon) as ws:
        await receive(ws)
        await ws.send(json.dumps({"action": "subscribe_run", "run_id": "ghost"}))
        error = await receive(ws)
        assert error["type"] == "error" and "ghost" in error["message"]
        for bad, words in [
            ("{not json", "not valid JSON"),
            ("[1, 2]", "JSON object"),
            ('{"no_action": 1}', "action"),
            ('{"action": "dance"}', "dance"),
            ('{"action": "subscribe_run"}', "run_id"),
            ('{"action": "subscribe", "topics": ["nonsense"]}', "nonsense"),
            ('{"action": "subscribe", "topics": "runs"}', "topics"),
            ('{"action": "subscribe_run", "run_id": "x", "from_step": -1}', "from_step"),
        ]:
            await ws.send(bad)
            message = await receive(ws)
            assert message["type"] == "error" and words in message["message"], (bad, message)
        await ws.send(b'{"action": "ping"}')  # a binary frame is read as text
        assert await receive(ws) == {"type": "pong"}
        await ws.send(json.dumps({"action": "ping"}))
        assert await receive(ws) == {"type": "pong"}


async def test_topics_select_what_a_client_receives(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    async with client(daemon) as ws:
        await receive(ws)
        await ws.send(json.dumps({"action": "unsubscribe", "topics": ["metrics"]}))
        assert (await receive(ws)) == {"type": "unsubscribed", "topics": []}
        await ws.send(json.dumps({"action": "subscribe", "topics": ["runs", "run:wanted"]}))
        assert (await receive(ws))["topics"] == ["run:wanted", "runs"]
        await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("ignored", 0))
        created = await receive(ws)
        assert (created["type"], created["topic"], created["run_id"]) == ("run_created", "runs", "ignored")
        await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("wanted", 0))
        await http.post("/api/v1/runs/wanted/scalars", json=[{"step": 0, "values": {"train_loss": 1.5}}])
        kinds = [(await receive(ws))["type"] for _ in range(4)]
        # the step for "wanted" (once, though two topics match), its run list entries, its scalars;
        # nothing about "ignored" beyond the runs topic.
        assert sorted(kinds) == ["new_metrics", "run_created", "run_updated", "scalars"]


async def steps_until(ws: ClientConnection, run_id: str, step: int) -> list[tuple[str, int]]:
    """The (run_id, step) of every `new_metrics` received up to and including `run_id`'s `step`: one
    connection's messages arrive in publish order, so a later step is the barrier that proves no copy of an
    earlier one is still to come."""
    seen: list[tuple[str, int]] = []
    async with asyncio.timeout(5):
        while seen[-1:] != [(run_id, step)]:
            message = await receive(ws)
            if message["type"] == "new_metrics":
                assert set(message) == {"type", "run_id", "data"}, message  # seed 000's shape, whatever the topic
                seen.append((message["run_id"], message["data"]["step"]))
    return seen


async def test_the_run_topic_carries_its_steps_once_per_connection(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    run, other = "experiment_2024_0210_v2", "test_run_1707589200"
    assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload(run, 1400))).status_code == 202
    async with client(daemon) as only_run, client(daemon) as both:
        await receive(only_run)
        await only_run.send(json.dumps({"action": "unsubscribe", "topics": ["metrics"]}))
        await receive_type(only_run, "unsubscribed")
        await only_run.send(json.dumps({"action": "subscribe", "topics": [f"run:{run}"]}))
        assert (await receive_type(only_run, "subscribed"))["topics"] == [f"run:{run}"]
        await receive(both)
        # Seed 000's literal request: it answers the history and adds `run:<id>` to the `metrics` topic.
        await both.send(json.dumps({"action": "subscribe_run", "run_id": "experiment_2024_0210_v2"}))
        assert [s["step"] for s in (await receive_type(both, "run_history"))["data"]["steps"]] == [1400]
        for run_id, step in ((run, 1500), (other, 90), (run, 1600)):
            response = await http.post("/api/v1/metrics/layerwise", json=contract_payload(run_id, step))
            assert response.status_code == 202
        assert await steps_until(only_run, run, 1600) == [(run, 1500), (run, 1600)]
        assert await steps_until(both, run, 1600) == [(run, 1500), (other, 90), (run, 1600)]


async def test_lagged_reaches_a_real_slow_reader(tmp_path) -> None:
    from tests.daemon import running_daemon

    # A tiny receive buffer and no reading: the server's socket stops being writable. The client
    # gets a short close_timeout because, not reading, it cannot see the close handshake complete.
    async with (
        running_daemon(tmp_path, ws_queue_size=4) as daemon,
        connect(daemon.ws_url, max_size=None, max_queue=1, close_timeout=0.5) as ws,
    ):
        await receive(ws)
        async with daemon_client(daemon.url) as http:
            for chunk in range(20):
                batch = [layerwise_payload("big", chunk * 10 + s, layers=50) for s in range(10)]
                assert (await http.post("/api/v1/metrics/layerwise/batch", json=batch)).status_code == 202
        message = await receive_type(ws, "lagged", timeout=20)
        assert message["dropped"] > 0


async def test_many_subscribers_get_every_step_in_order_while_one_stalls(tmp_path) -> None:
    from tests.daemon import running_daemon

    async with running_daemon(tmp_path, ws_queue_size=16) as daemon:
        # A small receive buffer (set before connecting: the window it offers) and no reading: the daemon's side
        # of this connection stops being writable once the kernel's buffers are full, then its mailbox drops.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(daemon.url.rsplit(":", 1)[1])))
        async with (
            connect(daemon.ws_url, sock=sock, max_size=None, max_queue=1, close_timeout=0.5) as stalled,
            contextlib.AsyncExitStack() as stack,
        ):
            live = [await stack.enter_async_context(client(daemon)) for _ in range(10)]
            for ws in [stalled, *live]:
                await receive(ws)  # initial_runs

            async def read_steps(ws: ClientConnection) -> list[int]:
                """Every `fan` step this subscriber receives, up to the `end` run's step that follows them."""
                steps: list[int] = []
                while (message := await receive_type(ws, "new_metrics", timeout=30))["run_id"] == "fan":
                    steps.append(message["data"]["step"])
                return steps

            readers = [asyncio.create_task(read_steps(ws)) for ws in live]
            mailboxes = daemon.services.hub._subscribers
            steps = 0
            async with daemon_client(daemon.url) as http:
                # 50-layer steps (34 kB each), 10 to a batch (a mailbox holds 16), until the stalled connection's
                # mailbox has had to drop some: the kernel's buffers take the first few MB.
                while not any(mailbox.dropped for mailbox in mailboxes):
                    assert steps < 1000, "the stalled connection never stopped being writable"
                    batch = [layerwise_payload("fan", steps + s, layers=50) for s in range(10)]
                    assert (await http.post("/api/v1/metrics/layerwise/batch", json=batch)).status_code == 202
                    steps += 10
                end = await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("end", 0))
                assert end.status_code == 202
            for received in await asyncio.gather(*readers):
                assert received == list(range(steps))
            # Only now does the stalled one read: it hears first of what it lost.
            assert (await receive_type(stalled, "lagged", timeout=30))["dropped"] > 0


async def test_shutdown_closes_sockets_with_1001(tmp_path) -> None:
    from tests.daemon import running_daemon

    async with running_daemon(tmp_path) as daemon:
        ws = await connect(daemon.ws_url)
        await receive(ws)
        daemon.server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_a_connection_subscribes_to_at_most_100_topics(daemon: RunningDaemon) -> None:
    async with connect(daemon.ws_url) as ws:
        await ws.recv()  # initial_runs
        await ws.send(json.dumps({"action": "subscribe", "topics": [f"run:r{i}" for i in range(99)]}))
        assert len(json.loads(await ws.recv())["topics"]) == 100  # with `metrics`
        await ws.send(json.dumps({"action": "subscribe", "topics": ["runs"]}))
        assert json.loads(await ws.recv()) == {"type": "error", "message": "topics: at most 100 per connection"}
        await ws.send(json.dumps({"action": "unsubscribe", "topics": ["metrics"]}))
        await ws.recv()
        await ws.send(json.dumps({"action": "subscribe", "topics": ["runs"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"


async def test_every_message_the_daemon_sends_parses_as_its_model(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    """A run's life seen by one connection on every topic: each message parses as `shared.models.messages`'s model
    of its `type` (closed models: an undocumented field fails), and each kind the scenario causes arrives."""
    rule = {"name": "hot", "metric": "train_loss", "condition": "greater_than", "threshold": 5}
    assert (await http.post("/api/v1/alerts/rules", json=rule)).status_code == 201
    experiment = (await http.post("/api/v1/experiments", json={"experiment": {"name": "typed"}})).json()["data"]["id"]
    seen: dict[str, int] = {}
    async with client(daemon) as ws:

        async def next_of(kind: str) -> None:
            async with asyncio.timeout(10):
                while True:
                    frame = await ws.recv()
                    message = WS_MESSAGE.validate_json(frame)  # fails on a message its model does not describe
                    seen[message.type] = seen.get(message.type, 0) + 1
                    if message.type == kind:
                        return

        await next_of("initial_runs")
        topics = ["runs", "alerts", "notifications", "telemetry", "resources", f"experiment:{experiment}", "run:typed"]
        await ws.send(json.dumps({"action": "subscribe", "topics": topics}))
        await next_of("subscribed")
        assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload(run_id="typed"))).status_code == 202
        await next_of("new_metrics")
        attach = await http.post(f"/api/v1/experiments/{experiment}/runs", json={"run_ids": ["typed"]})
        assert attach.status_code == 200, attach.text
        await ws.send(json.dumps({"action": "subscribe_run", "run_id": "typed", "lite": True}))
        await next_of("run_history")
        points = [{"step": 2, "epoch": 0, "values": {"train_loss": 9.0}}]
        assert (await http.post("/api/v1/runs/typed/scalars", json=points)).status_code == 202
        await next_of("scalars")
        await next_of("notification")
        event = {"events": [{"event_name": "typed.check", "measurements": {"ms": 1.5}}]}
        assert (await http.post("/api/v1/telemetry/events", json=event)).status_code in (200, 202)
        await next_of("telemetry_event")
        finish = await http.post("/api/v1/runs/typed/finish", json={"status": "failed", "error": "boom"})
        assert finish.status_code == 200, finish.text
        await next_of("experiment_status")
        await ws.send(json.dumps({"action": "ping"}))
        await next_of("pong")
        await ws.send(json.dumps({"action": "subscribe_run", "run_id": "no_such_run"}))
        await next_of("error")
        await next_of("resources")
        assert (await http.delete("/api/v1/runs/typed")).status_code in (200, 204)
        await next_of("run_deleted")
    assert {"run_created", "run_updated", "run_state", "alert_triggered", "experiment_run_completed",
            "experiment_progress", "experiment_error"} <= set(seen), seen  # fmt: skip


def test_every_documented_message_type_has_a_model() -> None:
    """docs/api.md's table of server messages and `WsMessage` name the same types."""
    api = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    table = api[api.index("| type | topic | when | shape |") : api.index("**Slow clients.**")]
    documented = {
        kind
        for row in table.splitlines()
        if row.startswith("| `")
        for kind in re.findall(r"`(\w+)`", row.split("|")[1])
    }
    modelled = {
        kind for member in get_args(get_args(WsMessage)[0]) for kind in get_args(member.model_fields["type"].annotation)
    }
    assert documented == modelled
