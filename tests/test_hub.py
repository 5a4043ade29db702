"""The hub's delivery rules, without sockets: topics, one copy per subscriber, bounded mailboxes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from pivotd.hub import Hub, is_valid_topic, text_frame


async def test_publish_reaches_each_matching_subscriber_once() -> None:
    hub = Hub(queue_size=10)
    both = hub.connect(["metrics", "run:a"])
    only_b = hub.connect(["run:b"])
    assert hub.publish(["metrics", "run:a"], "m1") == 1
    assert hub.publish(["run:b"], "m2") == 1
    assert hub.publish(["nobody"], "m3") == 0
    assert await both.next_messages() == ["m1"]
    assert await only_b.next_messages() == ["m2"]


async def test_a_full_mailbox_drops_oldest_and_reports_lag_first() -> None:
    hub = Hub(queue_size=3)
    stalled = hub.connect(["metrics"])
    for index in range(10):
        hub.publish(["metrics"], f"m{index}")
    assert stalled.dropped == 7
    messages = await stalled.next_messages()
    assert json.loads(messages[0]) == {"type": "lagged", "dropped": 7}
    assert messages[1:] == ["m7", "m8", "m9"]
    assert stalled.dropped == 0


async def test_a_stalled_subscriber_does_not_affect_others_or_block_publish() -> None:
    hub = Hub(queue_size=2)
    stalled = hub.connect(["metrics"])
    healthy = hub.connect(["metrics"])
    received: list[str] = []

    async def drain() -> None:
        while len(received) < 1000:
            received.extend(await healthy.next_messages())

    reader = asyncio.create_task(drain())
    for index in range(1000):
        hub.publish(["metrics"], f"m{index}")  # synchronous: it cannot wait on anyone
        await asyncio.sleep(0)  # the healthy reader keeps up, as a fast client would
    await asyncio.wait_for(reader, 5)
    assert [m for m in received if not m.startswith("{")] == [f"m{i}" for i in range(1000)]
    assert stalled.dropped == 998


async def test_unsubscribe_and_disconnect_forget_the_subscriber() -> None:
    hub = Hub()
    subscriber = hub.connect(["metrics", "runs"])
    hub.unsubscribe(subscriber, ["metrics"])
    assert hub.publish(["metrics"], "x") == 0 and hub.publish(["runs"], "y") == 1
    hub.disconnect(subscriber)
    assert hub.connection_count == 0 and not hub.has_subscribers("runs")


def test_topic_names() -> None:
    assert all(is_valid_topic(t) for t in ["runs", "metrics", "run:x", "experiment:exp_1", "resources", "alerts"])
    assert not any(is_valid_topic(t) for t in ["run:", "runs:x", "", "everything"])


def text_frames(data: bytes) -> list[str]:
    """Split what a server wrote into its unmasked text frames' payloads."""
    messages, position = [], 0
    while position < len(data):
        assert data[position] == 0x81  # FIN, text, no RSV1: one whole, uncompressed message
        length, position = data[position + 1], position + 2
        if length == 126:
            length, position = int.from_bytes(data[position : position + 2], "big"), position + 2
        elif length == 127:
            length, position = int.from_bytes(data[position : position + 8], "big"), position + 8
        messages.append(data[position : position + length].decode())
        position += length
    return messages


class Sink:
    """A connection the hub writes frames to; `writable` is what the transport would say."""

    def __init__(self, expected: int = 0) -> None:
        self.open = True
        self.writes: list[list[bytes]] = []
        self.messages: list[str] = []
        self.callback: Callable[[], None] | None = None
        self.expected = expected
        self.received = asyncio.Event()
        """Set once `expected` messages have been written."""

    def writable(self) -> bool:
        return self.open

    def write(self, frames: list[bytes]) -> None:
        self.writes.append(frames)
        self.messages += [message for frame in frames for message in text_frames(frame)]
        if len(self.messages) >= self.expected:
            self.received.set()

    def on_writable(self, callback: Callable[[], None] | None) -> None:
        self.callback = callback


def test_text_frame_lengths() -> None:
    for size in (0, 125, 126, 65535, 65536):
        assert text_frames(text_frame("é" * (size // 2) + "x" * (size % 2))) == ["é" * (size // 2) + "x" * (size % 2)]


async def test_attached_mailboxes_get_every_message_in_order_in_one_write_per_turn() -> None:
    hub = Hub(queue_size=1000)
    sinks = [Sink(expected=100) for _ in range(50)]
    for sink in sinks:
        hub.attach(hub.connect(["metrics"]), sink)
    for index in range(100):  # one event-loop turn: nothing is written until it ends
        hub.publish(["metrics"], f"m{index}")
    assert not any(sink.writes for sink in sinks)
    await asyncio.gather(*(sink.received.wait() for sink in sinks))
    for sink in sinks:
        assert len(sink.writes) == 1 and sink.messages == [f"m{i}" for i in range(100)]
    assert len({id(frame) for sink in sinks for frame in sink.writes[0]}) == 100  # each frame encoded once for all


async def test_a_stalled_connection_holds_up_no_other_and_hears_of_its_losses_when_it_drains() -> None:
    hub = Hub(queue_size=10)
    stalled, healthy = Sink(expected=11), [Sink() for _ in range(20)]
    stalled.open = False  # its peer reads nothing: the transport is past its high-water mark
    hub.attach(hub.connect(["metrics"]), stalled)
    for sink in healthy:
        hub.attach(hub.connect(["metrics"]), sink)
    for burst in range(100):  # a burst per turn, as a daemon's loop publishes between requests
        for index in range(burst * 10, burst * 10 + 10):
            hub.publish(["metrics"], f"m{index}")
        for sink in healthy:
            sink.expected, sink.received = burst * 10 + 10, asyncio.Event()
        await asyncio.gather(*(sink.received.wait() for sink in healthy))
    for sink in healthy:
        assert sink.messages == [f"m{i}" for i in range(1000)]
    assert stalled.writes == []
    stalled.open = True  # the peer read at last: the transport says so
    assert stalled.callback is not None
    stalled.callback()
    await stalled.received.wait()
    assert [json.loads(stalled.messages[0]), *stalled.messages[1:]] == [
        {"type": "lagged", "dropped": 990},
        *[f"m{i}" for i in range(990, 1000)],
    ]


async def test_a_mailbox_attached_late_sends_what_it_queued_first() -> None:
    hub = Hub(queue_size=3)
    subscriber = hub.connect(["metrics"])
    for index in range(4):
        hub.publish(["metrics"], f"m{index}")  # before attach: a reader's mailbox (which drops m0)
    sink = Sink(expected=4)
    hub.attach(subscriber, sink)
    await sink.received.wait()
    sink.expected, sink.received = 5, asyncio.Event()
    hub.publish(["metrics"], "m4")
    await sink.received.wait()
    assert sink.messages == ['{"type":"lagged","dropped":1}', "m1", "m2", "m3", "m4"]
    hub.disconnect(subscriber)
    assert sink.callback is None and subscriber.sink is None
