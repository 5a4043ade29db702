"""Server-Sent Events over the hub: history first, then live messages of a run's topic, with keep-alives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from pivotd.api.body import register_schema
from pivotd.hub import run_topic
from pivotd.services import Services

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}

# Maps one hub message to (event name, data) frames; returns done=True after the run's final frame.
Translate = Callable[[dict[str, Any]], tuple[list[tuple[str, dict[str, Any]]], bool]]


class EventStream(StreamingResponse):
    """A `text/event-stream` answer: the route's `response_class`, so the document names that media type."""

    media_type = "text/event-stream"


def event_stream_doc(description: str, events: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """The OpenAPI entry of an event stream's 200: before OpenAPI 3.2 a `text/event-stream` schema describes one
    event (`event` and `data`, as the SSE spec parses a frame), here one of `events`, its `data` the JSON of
    that event's model."""
    variants = []
    for name, model in events.items():
        data = {
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": register_schema(model.__name__, model)},
        }
        variants.append({"properties": {"event": {"const": name}, "data": data}})
    schema = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"type": "string", "enum": list(events)}, "data": {"type": "string"}},
        "oneOf": variants,
    }
    return {"description": description, "content": {"text/event-stream": {"schema": schema}}}


def wire(model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` as `model` checks and sends them: a message's optional keys left at their default stay absent."""
    return model.model_validate(fields).model_dump(mode="json", exclude_defaults=True)


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
                if subscriber.ended and not messages:
                    return  # the daemon is shutting down: the client reconnects to the next one
                frames: list[bytes] = []
                for raw in messages:
                    more, done = translate(orjson.loads(raw))
                    frames.extend(frame(event, data) for event, data in more)
                    if done:
                        break
                if frames:
                    yield b"".join(frames)  # what arrived together leaves in one write
        finally:
            with contextlib.suppress(Exception):
                hub.disconnect(subscriber)

    return EventStream(body(), headers=SSE_HEADERS)
