"""Topic-based pub/sub for WebSocket connections, with a bounded queue per connection.

`publish` never awaits: a message is serialised once by the caller and offered to every matching
subscriber. A subscriber whose queue is full loses its oldest message and is told how many it
lost (`{"type": "lagged", "dropped": N}`) before its next message, so it can re-fetch over REST.
A slow or stalled client therefore costs ingestion nothing and never delays other clients.

Two ways out of a mailbox. A reader task awaits `next_messages` (SSE, the Phoenix socket, any server without
the frame sink). A mailbox `attach`ed to a `FrameSink` (a `/ws` connection under pivotd's own uvicorn protocol,
`pivotd.ws_protocol`) is written by the hub itself: a message becomes one WebSocket text frame, encoded once
per publish and shared by every such subscriber, and at each flush (at the end of the event-loop turn, or
later while flushes keep coming: FLUSH_SPACING) each mailbox with something queued has all of it written to its
connection in one write. No task wakes, no per-connection serialisation or compression; a connection whose
peer does not read (its transport past the high-water mark) is not written to, and its mailbox fills and drops
exactly as a reader's does, until the transport drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import orjson

from shared.models.messages import RunStateChanged
from shared.models.runs import RunState

# The layer-wise protocol broadcasts every accepted step to every /ws client; connections start on this topic.
METRICS_TOPIC = "metrics"
RUNS_TOPIC = "runs"
# Every accepted telemetry event (`telemetry_event`), published only while someone subscribes.
TELEMETRY_TOPIC = "telemetry"
STATIC_TOPICS = frozenset({METRICS_TOPIC, RUNS_TOPIC, "resources", "alerts", "notifications", TELEMETRY_TOPIC})
PREFIXED_TOPICS = ("run:", "experiment:")
FRAMES_EXTENSION = "pivot.frames"
"""The ASGI scope extension (`scope["extensions"]`) holding a connection's `FrameSink` (`pivotd.ws_protocol`)."""
FLUSH_SPACING = 8
"""After a flush that took `t` of CPU, the next waits until `FLUSH_SPACING * t` has passed: while messages keep
coming, writing them takes at most a ninth of the daemon's time and each write carries what accumulated
meanwhile (200 /ws subscribers: a flush of about 1 ms, then up to 8 ms to gather the next). After a quiet spell
the next flush is immediate, and cheap flushes (a few subscribers) are hardly delayed at all."""
MAX_FLUSH_DELAY_S = 0.010
"""However many subscribers, no message waits longer than this for its flush to start."""


def run_topic(run_id: str) -> str:
    return f"run:{run_id}"


def is_valid_topic(topic: str) -> bool:
    if topic in STATIC_TOPICS:
        return True
    return any(topic.startswith(prefix) and len(topic) > len(prefix) for prefix in PREFIXED_TOPICS)


_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


def text_frame(message: str) -> bytes:
    """`message` as one unmasked WebSocket text frame (RFC 6455 section 5.2), as a server sends it: the same
    bytes for every connection. Never compressed: a frame without RSV1 is a plain message on a connection that
    negotiated permessage-deflate too, and leaves both ends' compression contexts as they were (RFC 7692)."""
    payload = message.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return _HEAD_16.pack(0x81, 126, size) + payload
    return _HEAD_64.pack(0x81, 127, size) + payload


def _lagged(dropped: int) -> str:
    return orjson.dumps({"type": "lagged", "dropped": dropped}).decode()


class FrameSink(Protocol):
    """A WebSocket connection the hub may write whole frames to, between the app's own sends."""

    def writable(self) -> bool:
        """False while the peer is not reading (the transport's buffer is past its high-water mark) and once
        the connection is closing or gone."""
        ...

    def write(self, frames: list[bytes]) -> None:
        """Write whole frames now, in order, without waiting."""
        ...

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` each time the connection becomes writable again (None: stop)."""
        ...


class Subscriber:
    """One connection's mailbox."""

    __slots__ = ("_queue", "_ready", "capacity", "close", "dropped", "ended", "flush_pending", "sink", "topics")

    def __init__(self, capacity: int, close: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.capacity = capacity
        self.close = close
        """Closes the connection behind this mailbox with a WebSocket close code."""
        self.topics: set[str] = set()
        self.dropped = 0
        self.ended = False
        """Set when the daemon shuts down: a stream with no socket to close (SSE) ends once it has read the rest."""
        self.sink: FrameSink | None = None
        """Set by `Hub.attach`: the queue then holds encoded frames, which the hub writes itself."""
        self.flush_pending = False
        """In the hub's list of mailboxes to write at the end of this event-loop turn."""
        self._queue: deque[str] | deque[bytes] = deque()
        self._ready = asyncio.Event()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    def offer(self, message: str) -> None:
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(message)  # type: ignore[arg-type]
        self._ready.set()

    async def next_messages(self) -> list[str]:
        """Wait for messages; a pending `lagged` notice comes first. Empty once `ended` and read to the end."""
        await self._ready.wait()
        if not self.ended:
            self._ready.clear()
        messages: list[str] = list(self._queue)  # type: ignore[arg-type]
        self._queue.clear()
        if self.dropped:
            messages.insert(0, _lagged(self.dropped))
            self.dropped = 0
        return messages

    def _offer_frame(self, frame: bytes) -> None:
        queue: deque[bytes] = self._queue  # type: ignore[assignment]
        if len(queue) >= self.capacity:
            queue.popleft()
            self.dropped += 1
        queue.append(frame)

    def _flush(self) -> None:
        """Write everything queued to the sink in one write, a pending `lagged` notice first; nothing while the
        peer is not reading (the queue keeps filling and dropping until it is)."""
        sink = self.sink
        if sink is None or not (self._queue or self.dropped) or not sink.writable():
            return
        frames: list[bytes] = list(self._queue)  # type: ignore[arg-type]
        self._queue.clear()
        if self.dropped:
            frames.insert(0, text_frame(_lagged(self.dropped)))
            self.dropped = 0
        sink.write(frames)


class Hub:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._by_topic: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()
        self._to_flush: list[Subscriber] = []
        self._flush_scheduled = False
        self._next_flush = 0.0
        """Loop time before which the next flush waits (FLUSH_SPACING)."""

    @property
    def connection_count(self) -> int:
        """WebSocket connections (mailboxes with a socket to close); SSE streams and in-process listeners
        subscribe too but are not connections in `/health`'s sense."""
        return sum(1 for subscriber in self._subscribers if subscriber.close is not None)

    def connect(self, topics: Iterable[str] = (), close: Callable[[int], Awaitable[None]] | None = None) -> Subscriber:
        subscriber = Subscriber(self.queue_size, close)
        self._subscribers.add(subscriber)
        self.subscribe(subscriber, topics)
        return subscriber

    def disconnect(self, subscriber: Subscriber) -> None:
        self.unsubscribe(subscriber, list(subscriber.topics))
        self._subscribers.discard(subscriber)
        if subscriber.sink is not None:
            subscriber.sink.on_writable(None)
            subscriber.sink = None

    def attach(self, subscriber: Subscriber, sink: FrameSink) -> None:
        """From now on write `subscriber`'s messages to `sink` as frames, all that is queued in one write per
        flush, instead of handing them to a task awaiting `next_messages`. What is queued already goes first."""
        queued = [text_frame(message) for message in subscriber._queue]  # type: ignore[arg-type]
        subscriber._queue = deque(queued)
        subscriber.sink = sink
        sink.on_writable(lambda: self._schedule_flush(subscriber))
        if queued or subscriber.dropped:
            self._schedule_flush(subscriber)

    def _schedule_flush(self, subscriber: Subscriber) -> None:
        if subscriber.flush_pending:
            return
        subscriber.flush_pending = True
        self._to_flush.append(subscriber)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            delay = self._next_flush - loop.time()
            if delay > 0:
                loop.call_later(min(delay, MAX_FLUSH_DELAY_S), self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One write per mailbox with something queued: all that was published to it since leaves together, in
        order."""
        started = time.thread_time()
        self._flush_scheduled = False
        subscribers, self._to_flush = self._to_flush, []
        for subscriber in subscribers:
            subscriber.flush_pending = False
            subscriber._flush()
        took = time.thread_time() - started
        self._next_flush = asyncio.get_running_loop().time() + took * FLUSH_SPACING

    def subscribe(self, subscriber: Subscriber, topics: Iterable[str]) -> None:
        for topic in topics:
            subscriber.topics.add(topic)
            self._by_topic.setdefault(topic, set()).add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, topics: Iterable[str]) -> None:
        for topic in topics:
            subscriber.topics.discard(topic)
            members = self._by_topic.get(topic)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._by_topic[topic]

    def has_subscribers(self, *topics: str) -> bool:
        return any(topic in self._by_topic for topic in topics)

    def publish(self, topics: Iterable[str], message: str) -> int:
        """Offer an already-serialised message once to each subscriber of any of `topics`."""
        groups = [members for topic in topics if (members := self._by_topic.get(topic))]
        if not groups:
            return 0
        targets = groups[0] if len(groups) == 1 else set().union(*groups)
        frame: bytes | None = None
        for subscriber in targets:
            if subscriber.sink is None:
                subscriber.offer(message)
                continue
            if frame is None:
                frame = text_frame(message)  # once for every connection the hub writes to
            subscriber._offer_frame(frame)
            if not subscriber.flush_pending:
                self._schedule_flush(subscriber)
        return len(targets)

    def publish_run_state(self, run_id: str, state: str, error: str | None) -> None:
        """`run_state` on `runs` and `run:<id>`: a run changed state (managed or external, the same message)."""
        topic = run_topic(run_id)
        message = RunStateChanged(type="run_state", topic=topic, run_id=run_id, state=RunState(state), error=error)
        self.publish((RUNS_TOPIC, topic), message.model_dump_json())

    async def close_all(self, code: int = 1001, timeout: float = 2.0) -> None:
        """Close every connection (1001 "going away" on shutdown), bounded in time, and end every stream that has no
        socket to close (SSE): otherwise the server would wait its whole graceful-shutdown timeout for them."""
        for subscriber in self._subscribers:
            if subscriber.close is None:
                subscriber.end()
        closers = [s.close(code) for s in list(self._subscribers) if s.close is not None]
        if closers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*closers, return_exceptions=True), timeout)
