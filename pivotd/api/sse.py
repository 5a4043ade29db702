"""Server-Sent Events over the hub: history first, then live messages of a run's topic, with keep-alives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from pivotd.hub import run_topic
from pivotd.services import Services

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}

# Maps one hub message to (event name, data) frames; returns done=True after the run's final frame.
Translate = Callable[[dict[str, Any]], tuple[list[tuple[str, dict[str, Any]]], bool]]


def frame(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def stream_run(
    services: Services,
    run_id: str,
    history: Callable[[], Awaitable[tuple[list[tuple[str, dict[str, Any]]], bool]]],
    translate: Translate,
) -> StreamingResponse:
    """Subscribe before reading history, so nothing published in between is lost; `translate` dedupes."""
    hub = services.hub
    subscriber = hub.connect([run_topic(run_id)])
    keepalive = services.settings.sse_keepalive_s

    async def body() -> AsyncIterator[bytes]:
        try:
            frames, done = await history()
            for event, data in frames:
                yield frame(event, data)
            while not done:
                try:
                    messages = await asyncio.wait_for(subscriber.next_messages(), keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                for raw in messages:
                    more, done = translate(orjson.loads(raw))
                    for event, data in more:
                        yield frame(event, data)
                    if done:
                        break
        finally:
            with contextlib.suppress(Exception):
                hub.disconnect(subscriber)

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS)
