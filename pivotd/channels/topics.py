"""The channels a `/socket/websocket` client can join, and how hub messages become their events.

Each channel names the hub topics it needs; the connection's one mailbox subscribes to their union and
offers every message to every joined channel, which keeps what is its own. Topics:

- `experiment:<id>`: `status_changed`, `progress_updated`, `run_completed`, `error` from the hub topic of
  the same name. Joining an unknown experiment is refused with `not found`.
- `telemetry:all` and `telemetry:<experiment_id>`: `event` with each telemetry event (hub topic
  `telemetry`); `subscribe`/`unsubscribe` narrow it by event type.
- `dashboard:<user>`: `system_stats` from each resource sample and `experiment_summary` from the store.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from pivotd.channels.protocol import Ref
from pivotd.errors import NotFound
from pivotd.monitor.sampler import RESOURCES_TOPIC, Sample
from pivotd.services import Services

log = logging.getLogger(__name__)
TELEMETRY_TOPIC = "telemetry"
MAX_EVENT_TYPES = 256
"""Event types one telemetry channel may filter on (included and excluded together): every event is matched
against each of them."""
Event = tuple[str, dict[str, Any]]
"""A server push: (event name, payload)."""

# Hub message types published on `experiment:<id>` -> the channel event clients of the socket expect.
EXPERIMENT_EVENTS = {
    "experiment_status": "status_changed",
    "experiment_progress": "progress_updated",
    "experiment_run_completed": "run_completed",
    "experiment_error": "error",
}
SUMMARY_INTERVAL_S = 2.0
"""The dashboard's experiment summary is recomputed on a resource sample at most this often."""


class JoinRefused(Exception):
    """A join answered with `{"status": "error", "response": {"reason": ...}}`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Channel:
    """One joined topic of one connection."""

    hub_topics: tuple[str, ...] = ()

    def __init__(self, topic: str, join_ref: Ref) -> None:
        self.topic = topic
        self.join_ref = join_ref

    async def joined(self) -> list[Event]:
        """Pushes sent right after the join's ok reply."""
        return []

    async def deliver(self, message: dict[str, Any]) -> list[Event]:
        """The pushes a hub message becomes on this channel (none when it is not this channel's)."""
        return []

    def handle_in(self, event: str, payload: Any) -> tuple[str, dict[str, Any]]:
        """Answer a client event: (status, response)."""
        return "error", {"reason": f"unknown event {event!r} on {self.topic}"}


class ExperimentChannel(Channel):
    def __init__(self, topic: str, join_ref: Ref, experiment_id: str) -> None:
        super().__init__(topic, join_ref)
        self.experiment_id = experiment_id
        self.hub_topics = (topic,)

    async def deliver(self, message: dict[str, Any]) -> list[Event]:
        event = EXPERIMENT_EVENTS.get(message.get("type", ""))
        if event is None or message.get("experiment_id") != self.experiment_id:
            return []
        # The payload is the hub message less its envelope: the channel event's fields plus whatever the producer adds.
        return [(event, {k: v for k, v in message.items() if k not in ("type", "topic", "experiment_id")})]


def dotted_name(event_name: Any) -> str:
    """`["crucible", "model", "inference"]` -> `crucible.model.inference`."""
    if isinstance(event_name, list):
        return ".".join(str(part) for part in event_name)
    return str(event_name)


def matches_type(name: str, event_type: str) -> bool:
    """An event type names whole trailing segments: `model.inference` matches `crucible.model.inference`
    (and itself) but not `crucible.model.inference_batch` or `model`."""
    return name == event_type or name.endswith("." + event_type)


def _event_types(payload: Any) -> list[str]:
    types = payload.get("event_types") if isinstance(payload, dict) else None
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
        raise ValueError("event_types: must be a non-empty list of non-empty strings")
    return types


class TelemetryChannel(Channel):
    hub_topics = (TELEMETRY_TOPIC,)

    def __init__(self, topic: str, join_ref: Ref, experiment_id: str | None) -> None:
        super().__init__(topic, join_ref)
        self.experiment_id = experiment_id
        self.included: set[str] | None = None
        """None until the first `subscribe`: every type flows."""
        self.excluded: set[str] = set()

    def wants(self, event: dict[str, Any]) -> bool:
        if self.experiment_id is not None:
            metadata = event.get("metadata")
            if not isinstance(metadata, dict) or metadata.get("experiment_id") != self.experiment_id:
                return False
        name = dotted_name(event.get("event_name"))
        if self.included is not None and not any(matches_type(name, t) for t in self.included):
            return False
        return not any(matches_type(name, t) for t in self.excluded)

    async def deliver(self, message: dict[str, Any]) -> list[Event]:
        event = message.get("event")
        if message.get("type") != "telemetry_event" or not isinstance(event, dict) or not self.wants(event):
            return []
        return [("event", event)]

    def handle_in(self, event: str, payload: Any) -> tuple[str, dict[str, Any]]:
        if event not in ("subscribe", "unsubscribe"):
            return super().handle_in(event, payload)
        try:
            types = set(_event_types(payload))
        except ValueError as exc:
            return "error", {"reason": str(exc)}
        included, excluded = self.included, self.excluded
        if event == "subscribe":
            included, excluded = (included or set()) | types, excluded - types
        elif included is None:
            excluded = excluded | types  # receiving everything: stop receiving these
        else:
            included = included - types
        if len(included or ()) + len(excluded) > MAX_EVENT_TYPES:
            return "error", {"reason": "too many event types", "max_event_types": MAX_EVENT_TYPES}
        self.included, self.excluded = included, excluded
        included = sorted(self.included) if self.included is not None else None
        return "ok", {"event_types": included, "excluded_event_types": sorted(self.excluded)}


def system_stats(sample: Sample) -> dict[str, Any]:
    """The `{cpu, memory, gpu}` percentages from a resource sample; `gpu` is the mean utilisation
    over the GPUs, null without any."""
    gpus = [gpu["utilization"] for gpu in sample.get("gpu", []) if gpu.get("utilization") is not None]
    return {
        "cpu": sample.get("cpu", {}).get("percent"),
        "memory": sample.get("memory", {}).get("percent"),
        "gpu": round(sum(gpus) / len(gpus), 1) if gpus else None,
        "timestamp": sample.get("timestamp"),
    }


class DashboardChannel(Channel):
    hub_topics = (RESOURCES_TOPIC,)

    def __init__(self, topic: str, join_ref: Ref, services: Services) -> None:
        super().__init__(topic, join_ref)
        self.services = services
        self.summary: dict[str, int] | None = None
        self.summarised_at = 0.0

    async def experiment_summary(self) -> dict[str, int]:
        """Experiments running now, and those completed since midnight UTC."""
        self.summarised_at = time.monotonic()
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        active, completed_today = await self.services.store.experiments.summary(midnight)
        return {"active": active, "completed_today": completed_today}

    async def joined(self) -> list[Event]:
        monitor = self.services.monitor
        sample = monitor.latest or await monitor.sample_now()
        self.summary = await self.experiment_summary()
        return [("system_stats", system_stats(sample)), ("experiment_summary", self.summary)]

    async def deliver(self, message: dict[str, Any]) -> list[Event]:
        if message.get("type") != RESOURCES_TOPIC or not isinstance(message.get("data"), dict):
            return []
        events: list[Event] = [("system_stats", system_stats(message["data"]))]
        if time.monotonic() - self.summarised_at >= SUMMARY_INTERVAL_S:
            try:
                summary = await self.experiment_summary()
            except Exception:  # a store read failed: the stats still go out, the summary is retried next sample
                log.exception("could not compute the experiment summary for %s", self.topic)
                return events
            if summary != self.summary:
                self.summary = summary
                events.append(("experiment_summary", summary))
        return events


async def open_channel(topic: str, join_ref: Ref, services: Services) -> Channel:
    """The channel for a join of `topic`; raises JoinRefused with Phoenix's reasons."""
    prefix, _, rest = topic.partition(":")
    if rest and prefix == "experiment":
        try:
            await services.store.experiments.get(rest)
        except NotFound:
            raise JoinRefused("not found") from None
        return ExperimentChannel(topic, join_ref, rest)
    if rest and prefix == "telemetry":
        return TelemetryChannel(topic, join_ref, None if rest == "all" else rest)
    if rest and prefix == "dashboard":
        return DashboardChannel(topic, join_ref, services)
    raise JoinRefused("unmatched topic")
