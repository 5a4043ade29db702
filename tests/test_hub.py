"""The hub's delivery rules, without sockets: topics, one copy per subscriber, bounded mailboxes."""

from __future__ import annotations

import asyncio
import json

from pivotd.hub import Hub, is_valid_topic


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
