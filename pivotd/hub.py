"""Topic-based pub/sub for WebSocket connections, with a bounded queue per connection.

`publish` never awaits: a message is serialised once by the caller and offered to every matching
subscriber. A subscriber whose queue is full loses its oldest message and is told how many it
lost (`{"type": "lagged", "dropped": N}`) before its next message, so it can re-fetch over REST.
A slow or stalled client therefore costs ingestion nothing and never delays other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

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


def run_topic(run_id: str) -> str:
    return f"run:{run_id}"


def is_valid_topic(topic: str) -> bool:
    if topic in STATIC_TOPICS:
        return True
    return any(topic.startswith(prefix) and len(topic) > len(prefix) for prefix in PREFIXED_TOPICS)


class Subscriber:
    """One connection's mailbox."""

    __slots__ = ("_queue", "_ready", "capacity", "close", "dropped", "ended", "topics")

    def __init__(self, capacity: int, close: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.capacity = capacity
        self.close = close
        """Closes the connection behind this mailbox with a WebSocket close code."""
        self.topics: set[str] = set()
        self.dropped = 0
        self.ended = False
        """Set when the daemon shuts down: a stream with no socket to close (SSE) ends once it has read the rest."""
        self._queue: deque[str] = deque()
        self._ready = asyncio.Event()

    def end(self) -> None:
        self.ended = True
        self._ready.set()

    def offer(self, message: str) -> None:
        if len(self._queue) >= self.capacity:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(message)
        self._ready.set()

    async def next_messages(self) -> list[str]:
        """Wait for messages; a pending `lagged` notice comes first. Empty once `ended` and read to the end."""
        await self._ready.wait()
        if not self.ended:
            self._ready.clear()
        messages = list(self._queue)
        self._queue.clear()
        if self.dropped:
            messages.insert(0, orjson.dumps({"type": "lagged", "dropped": self.dropped}).decode())
            self.dropped = 0
        return messages


class Hub:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._by_topic: dict[str, set[Subscriber]] = {}
        self._subscribers: set[Subscriber] = set()

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
        for subscriber in targets:
            subscriber.offer(message)
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
