"""One `/socket/websocket` connection: Phoenix's socket semantics over joined channels and one hub mailbox.

What a Phoenix server does, message by message (Phoenix.Socket `handle_in`):
- `heartbeat` on topic `phoenix` -> ok reply, joined or not.
- `phx_join` -> ok reply and the channel's first pushes, or an error reply with a reason. A join of a
  topic already joined closes the old join first (`phx_close` with its join_ref).
- `phx_leave` -> ok reply, then `phx_close`. A leave of a topic not joined is answered ok too.
- Any other event: the joined channel answers it; on a topic not joined, `unmatched topic`.
- Any event but a join on a joined topic whose join_ref is neither null nor the current join's (the client
  raced a server close) gets nothing.
Replies and pushes leave under one lock, so a join's reply always precedes that channel's pushes. Each channel's
pushes carry its own join_ref, so they are encoded per connection; what one hub wake-up turns into leaves in one
write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import WebSocket
from starlette.websockets import WebSocketState

from pivotd.channels.protocol import (
    HEARTBEAT,
    JOIN,
    LEAVE,
    PHOENIX_TOPIC,
    Frame,
    Serializer,
    close,
    push,
    reply,
)
from pivotd.channels.topics import Channel, JoinRefused, open_channel
from pivotd.hub import FRAMES_EXTENSION, FrameSink, Subscriber, text_frame
from pivotd.services import Services

log = logging.getLogger(__name__)
UNMATCHED = {"reason": "unmatched topic"}
UNAVAILABLE = {"reason": "unavailable"}
"""A join that failed on our side (a store read); the client may retry, as phoenix.js does by itself."""
MAX_CHANNELS = 100
"""Channels one connection may have joined at once; each costs memory and work on every hub message, and
frames after the handshake are not rate limited, so this is what bounds a connection."""


class ChannelSession:
    def __init__(self, websocket: WebSocket, services: Services, serializer: Serializer) -> None:
        self.websocket = websocket
        self.services = services
        self.serializer = serializer
        self.channels: dict[str, Channel] = {}
        self.send_lock = asyncio.Lock()
        self.subscriber: Subscriber = services.hub.connect((), close=self.close)
        self.sink: FrameSink | None = websocket.scope.get("extensions", {}).get(FRAMES_EXTENSION)

    async def close(self, code: int, reason: str = "") -> None:
        if self.websocket.application_state is WebSocketState.CONNECTED:
            # A close reason is at most 123 bytes (RFC 6455).
            reason = reason.encode()[:123].decode(errors="ignore")
            with contextlib.suppress(RuntimeError, OSError):
                await self.websocket.close(code, reason)

    async def _send(self, frames: list[Frame]) -> None:
        """All of `frames` in one write where the server lets the app write frames itself (`pivotd.ws_protocol`)
        and the peer is reading; else one ASGI send each, which waits while the peer is not reading."""
        if not frames:
            return
        if self.sink is not None and self.sink.writable():
            self.sink.write([text_frame(self.serializer.encode(frame)) for frame in frames])
            return
        for frame in frames:
            await self.websocket.send_text(self.serializer.encode(frame))

    async def handle(self, frame: Frame) -> None:
        async with self.send_lock:
            await self._send(await self._answer(frame))

    async def _answer(self, frame: Frame) -> list[Frame]:
        if frame.topic == PHOENIX_TOPIC and frame.event == HEARTBEAT:
            return [reply(frame, "ok", {})]
        channel = self.channels.get(frame.topic)
        if frame.event == JOIN:
            return await self._join(frame, channel)
        if channel is None:
            if frame.event == LEAVE:
                return [reply(frame, "ok", {}, frame.join_ref)]
            return [reply(frame, "error", UNMATCHED)]
        if frame.join_ref is not None and frame.join_ref != channel.join_ref:
            # Meant for an earlier join of this topic (the client raced a server close): Phoenix drops it unanswered.
            log.debug("ignoring %s for an earlier join of %s", frame.event, frame.topic)
            return []
        if frame.event == LEAVE:
            self._remove(channel)
            return [reply(frame, "ok", {}, channel.join_ref), close(channel.join_ref, channel.topic)]
        status, response = channel.handle_in(frame.event, frame.payload)
        return [reply(frame, status, response, channel.join_ref)]

    async def _join(self, frame: Frame, existing: Channel | None) -> list[Frame]:
        if existing is None and len(self.channels) >= MAX_CHANNELS:
            return [reply(frame, "error", {"reason": "too many channels"}, frame.join_ref)]
        frames = []
        if existing is not None:
            self._remove(existing)
            frames.append(close(existing.join_ref, existing.topic))
        try:
            channel = await open_channel(frame.topic, frame.join_ref, self.services)
        except JoinRefused as refused:
            # Phoenix leaves join_ref out of the answer to a topic no channel matches.
            join_ref = None if refused.reason == UNMATCHED["reason"] else frame.join_ref
            return [*frames, reply(frame, "error", {"reason": refused.reason}, join_ref)]
        except Exception:  # a store read failed: this join fails, the connection and its other channels go on
            log.exception("could not join %s", frame.topic)
            return [*frames, reply(frame, "error", UNAVAILABLE, frame.join_ref)]
        self.channels[channel.topic] = channel
        self.services.hub.subscribe(self.subscriber, channel.hub_topics)
        try:
            pushes = await channel.joined()
        except Exception:
            log.exception("could not join %s", frame.topic)
            self._remove(channel)
            return [*frames, reply(frame, "error", UNAVAILABLE, frame.join_ref)]
        frames.append(reply(frame, "ok", {}, channel.join_ref))
        frames.extend(push(channel.join_ref, channel.topic, event, payload) for event, payload in pushes)
        return frames

    def _remove(self, channel: Channel) -> None:
        del self.channels[channel.topic]
        still_needed = {topic for other in self.channels.values() for topic in other.hub_topics}
        self.services.hub.unsubscribe(self.subscriber, [t for t in channel.hub_topics if t not in still_needed])

    async def pump(self) -> None:
        """Turn hub messages into pushes on the joined channels until the connection goes away."""
        while True:
            messages = await self.subscriber.next_messages()
            async with self.send_lock:
                frames: list[Frame] = []
                for raw in messages:
                    frames.extend(await self._pushes(orjson.loads(raw)))
                await self._send(frames)

    async def _pushes(self, message: dict[str, Any]) -> list[Frame]:
        channels = list(self.channels.values())
        if message.get("type") == "lagged":
            # This client fell behind and lost messages: every channel may have lost some.
            return [push(c.join_ref, c.topic, "lagged", {"dropped": message["dropped"]}) for c in channels]
        frames = []
        for channel in channels:
            try:
                events = await channel.deliver(message)
            except Exception:  # one channel's failure (a store read) must not end the connection's pushes
                log.exception("channel %s could not handle a hub message", channel.topic)
                continue
            frames.extend(push(channel.join_ref, channel.topic, event, payload) for event, payload in events)
        return frames
