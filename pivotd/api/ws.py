"""WebSocket `/ws`: the layer-wise protocol exactly, extended with PIVOT topics (docs/api.md).

Client actions: `subscribe_run` (history, optionally `lite`), `ping`, and the extensions
`subscribe`/`unsubscribe` with `topics`. Every connection starts on the `metrics` topic, which
carries `new_metrics` for every run; a client that only wants some runs unsubscribes
from it and subscribes to `run:<id>`. Under pivotd's server the hub writes each connection's messages itself,
once per event-loop turn (`pivotd.ws_protocol`); elsewhere one task per connection drains its hub mailbox. Either
way a slow client only ever delays itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from pivotd.hub import FRAMES_EXTENSION, METRICS_TOPIC, FrameSink, Subscriber, is_valid_topic, run_topic
from pivotd.ingest import lite_steps, run_summary
from pivotd.services import Services
from pivotd.timefmt import iso
from shared.models.messages import Pong, SocketError, TopicsChanged

router = APIRouter()
log = logging.getLogger(__name__)


MAX_TOPICS = 100
"""Topics one connection may subscribe to: each costs memory and hub work, and frames after the handshake
are not rate limited, so this is what bounds a connection."""


def _error(message: str) -> bytes:
    return SocketError(type="error", message=message).model_dump_json().encode()


class Session:
    """One /ws connection: answers actions and forwards hub messages, one writer at a time."""

    def __init__(self, websocket: WebSocket, services: Services) -> None:
        self.websocket = websocket
        self.services = services
        self.send_lock = asyncio.Lock()
        self.subscriber: Subscriber = services.hub.connect([METRICS_TOPIC], close=self._close)

    async def _close(self, code: int) -> None:
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close(code)

    async def send(self, message: str | bytes) -> None:
        async with self.send_lock:
            await self.websocket.send_text(message if isinstance(message, str) else message.decode())

    async def pump(self) -> None:
        """Forward hub messages until the connection goes away."""
        while True:
            messages = await self.subscriber.next_messages()
            async with self.send_lock:
                for message in messages:
                    await self.websocket.send_text(message)

    async def initial_runs(self) -> bytes:
        runs, _ = await self.services.store.reader.list_runs()
        return orjson.dumps({"type": "initial_runs", "data": {run.run_id: run_summary(run) for run in runs}})

    async def handle(self, text: str) -> bytes | None:
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return _error(f"message is not valid JSON: {exc}")
        if not isinstance(request, dict):
            return _error("message must be a JSON object with an 'action' field")
        action = request.get("action")
        if action == "ping":
            return Pong(type="pong").model_dump_json().encode()
        if action == "subscribe_run":
            return await self.subscribe_run(request)
        if action in ("subscribe", "unsubscribe"):
            return self.change_topics(action, request.get("topics"))
        if action is None:
            return _error("action: field required (one of subscribe_run, ping, subscribe, unsubscribe)")
        return _error(f"action: unknown action {action!r} (one of subscribe_run, ping, subscribe, unsubscribe)")

    async def subscribe_run(self, request: dict[str, Any]) -> bytes:
        run_id = request.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            return _error("run_id: field required (a string)")
        bounds = {}
        for name in ("from_step", "to_step"):
            value = request.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                return _error(f"{name}: must be a non-negative integer")
            bounds[name] = value
        reader = self.services.store.reader
        run = await reader.get_run(run_id)
        if run is None:
            return _error(f"Run {run_id!r} not found")
        if self._too_many({run_topic(run_id)}):
            return _error(f"topics: at most {MAX_TOPICS} per connection")
        self.services.hub.subscribe(self.subscriber, [run_topic(run_id)])
        steps = await reader.steps(run.ref, **bounds)
        if request.get("lite") is True:
            steps = await lite_steps(steps)
        head = orjson.dumps({"type": "run_history", "run_id": run_id})
        data = orjson.dumps({"created_at": iso(run.created_at), "last_update": iso(run.last_update)})
        return head[:-1] + b',"data":' + data[:-1] + b',"steps":[' + b",".join(steps) + b"]}}"

    def _too_many(self, topics: set[str]) -> bool:
        return len(self.subscriber.topics | topics) > MAX_TOPICS

    def change_topics(self, action: str, topics: Any) -> bytes:
        if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
            return _error("topics: must be a non-empty list of strings")
        invalid = [t for t in topics if not is_valid_topic(t)]
        if invalid:
            return _error(
                f"topics: unknown topic {invalid[0]!r} (runs, metrics, resources, alerts, notifications, "
                "run:<id>, experiment:<id>)"
            )
        if action == "subscribe" and self._too_many(set(topics)):
            return _error(f"topics: at most {MAX_TOPICS} per connection")
        hub = self.services.hub
        (hub.subscribe if action == "subscribe" else hub.unsubscribe)(self.subscriber, topics)
        answer = "subscribed" if action == "subscribe" else "unsubscribed"
        return TopicsChanged(type=answer, topics=sorted(self.subscriber.topics)).model_dump_json().encode()


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    session = Session(websocket, services)
    sink: FrameSink | None = websocket.scope.get("extensions", {}).get(FRAMES_EXTENSION)
    pump: asyncio.Task[None] | None = None
    try:
        await session.send(await session.initial_runs())
        # Hub messages published meanwhile waited in the mailbox: initial_runs is always the first message.
        if sink is not None:
            services.hub.attach(session.subscriber, sink)
        else:
            pump = asyncio.create_task(session.pump(), name="ws-pump")
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                text = raw.decode("utf-8", errors="replace")
            reply = await session.handle(text)
            if reply is not None:
                await session.send(reply)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the peer went away mid-send; nothing to tell it
    finally:
        services.hub.disconnect(session.subscriber)
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                await pump
