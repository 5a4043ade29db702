"""The telemetry service: ingest (store + hub), pivotd's own events, and queries.

Ingested batches become one columnar block each (`columns.py`), written through the store's single writer as
one operation. pivotd's own events (inference latency, epoch times, ingest volumes) are buffered in memory and
written as one block per `telemetry_flush_interval_s`, so emitting costs a list append or a counter increment
on the hot paths. Queries flush that buffer first, so a client sees the events its own requests caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from pivotd.errors import InsufficientStorage
from pivotd.hub import TELEMETRY_TOPIC, Hub
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.telemetry import PutTelemetry, Stored, TelemetryReader
from pivotd.telemetry.columns import Block, decode, encode, event_id
from pivotd.telemetry.query import AggRow, Filters, Page, Selection, aggregate, ordered_events, page, select
from pivotd.telemetry.validate import Event, Scalar

log = logging.getLogger(__name__)

INFERENCE_EVENT = ("pivot", "model", "inference")
EPOCH_EVENT = ("pivot", "training", "epoch")


def iso_z(epoch_seconds: float) -> str:
    """Seed 004 writes timestamps as `2024-01-15T10:35:00Z`; telemetry keeps milliseconds and the `Z`."""
    return str(np.datetime_as_string(np.datetime64(round(epoch_seconds * 1000), "ms"), unit="ms")) + "Z"


def wire(event: dict[str, Any]) -> dict[str, Any]:
    """A decoded event with its timestamp in ISO 8601."""
    return {**event, "timestamp": iso_z(event["timestamp"])}


@dataclass(frozen=True, slots=True)
class Statistics:
    total_requests: int
    successes: int
    avg_latency_ms: float | None
    p99_latency_ms: float | None
    total_tokens: float
    error_breakdown: dict[str, int]


class Telemetry:
    def __init__(self, settings: Settings, store: Store, hub: Hub) -> None:
        self._settings = settings
        self._store = store
        self._hub = hub
        self.reader: TelemetryReader[Block] = TelemetryReader(store.path, settings.telemetry_cache_bytes, decode)
        self._stored = 0
        self._pending: list[Event] = []
        self._counters: dict[tuple[str, ...], dict[str, float]] = {}
        self.totals: dict[tuple[str, ...], dict[str, float]] = {}
        """What `count` added up since the daemon started, flushed or not: `/metrics` reads these."""
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()

    async def __aenter__(self) -> Telemetry:
        self._stored = await self.reader.open()
        self._flusher = asyncio.create_task(self._flush_every(), name="pivotd-telemetry-flush")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self.flush()
        except Exception:  # the store may already refuse writes; losing a second of self-telemetry is fine
            log.exception("could not write pivotd's last telemetry events")
        await self.reader.close()

    # -- ingest ---------------------------------------------------------------------------------------------

    async def ingest(self, events: list[Event]) -> Stored:
        """Store one batch as one block (one write operation), then offer each event to `telemetry` subscribers."""
        limit = self._settings.telemetry_max_events
        self._stored += len(events)
        stored: Stored = await self._store.writer.submit(PutTelemetry(encode(events), limit, self._stored > limit))
        self._stored -= stored.dropped_events
        if self._hub.has_subscribers(TELEMETRY_TOPIC):
            for offset, (name, timestamp, measurements, metadata) in enumerate(events):
                message = {
                    "type": "telemetry_event",
                    "topic": TELEMETRY_TOPIC,
                    "event": {
                        "id": event_id(stored.first_event + offset),
                        "event_name": list(name),
                        "measurements": measurements,
                        "metadata": metadata,
                        "timestamp": iso_z(timestamp),
                    },
                }
                self._hub.publish((TELEMETRY_TOPIC,), orjson.dumps(message).decode())
        return stored

    # -- pivotd's own events ----------------------------------------------------------------------------------

    def emit(self, name: tuple[str, ...], measurements: dict[str, float], metadata: dict[str, Scalar]) -> None:
        """Record one of pivotd's own events; written with the next flush."""
        if self._settings.telemetry_self_events:
            self._pending.append((name, time.time(), measurements, metadata))

    def count(self, name: tuple[str, ...], **amounts: float) -> None:
        """Add to per-interval totals (ingest volumes): one event per name per flush, not one per request."""
        running = self.totals.setdefault(name, {})
        for key, amount in amounts.items():
            running[key] = running.get(key, 0) + amount
        if not self._settings.telemetry_self_events:
            return
        totals = self._counters.get(name)
        if totals is None:
            self._counters[name] = dict(amounts)
            return
        for key, amount in amounts.items():
            totals[key] = totals.get(key, 0) + amount

    async def flush(self) -> None:
        async with self._flush_lock:
            if self._counters:
                now = time.time()
                interval = self._settings.telemetry_flush_interval_s
                for name, totals in self._counters.items():
                    self._pending.append((name, now, totals, {"interval_s": interval}))
                self._counters = {}
            if self._pending:
                events, self._pending = self._pending, []
                await self.ingest(events)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self._settings.telemetry_flush_interval_s)
            try:
                await self.flush()
            except InsufficientStorage:
                pass  # the writer reports a full disk once; a second of self-telemetry is not worth more
            except Exception:
                log.exception("writing pivotd's telemetry events failed")

    # -- queries ----------------------------------------------------------------------------------------------

    async def page(
        self, filters: Filters, *, descending: bool, offset: int, limit: int, after: tuple[float, int] | None
    ) -> Page:
        await self.flush()
        return await self.reader.run(
            lambda: page(self._select(filters), descending=descending, offset=offset, limit=limit, after=after)
        )

    async def aggregate(
        self, filters: Filters, *, agg: str, metric: str | None, group_by: str | None, interval: int | None
    ) -> list[AggRow]:
        await self.flush()
        return await self.reader.run(
            lambda: aggregate(self._select(filters), agg=agg, metric=metric, group_by=group_by, interval=interval)
        )

    def _select(self, filters: Filters) -> Selection:
        """The events passing `filters`, from the blocks whose time range can hold them (telemetry thread only)."""
        return select(self.reader.blocks(filters.after, filters.before), filters)

    async def events(self, filters: Filters, chunk: int = 5000) -> AsyncIterator[list[dict[str, Any]]]:
        """Every event passing `filters`, oldest first, in lists of up to `chunk` (timestamps as ISO 8601)."""
        await self.flush()
        reader = self.reader
        chunks: Iterator[list[dict[str, Any]]] = await reader.run(lambda: ordered_events(self._select(filters), chunk))
        while True:
            events = await reader.run(lambda: next(chunks, None))
            if events is None:
                return
            yield [wire(event) for event in events]

    async def experiment_events(self, experiment_id: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The first `limit` stored events whose `metadata.experiment_id` is `experiment_id`, oldest first, as
        the API shows them (`id`, `event_name`, `measurements`, `metadata`, `timestamp`), and whether there were
        more. For experiment export, which builds one document in memory."""
        found: list[dict[str, Any]] = []
        async for events in self.events(Filters(metadata=(("experiment_id", experiment_id),))):
            found.extend(events)
            if len(found) > limit:
                return found[:limit], True
        return found, False

    async def model_statistics(self, model_id: str, since: float) -> Statistics:
        """Seed 004's model statistics from pivotd's `pivot.model.inference` events of one model."""
        filters = Filters(event_name=INFERENCE_EVENT, after=since, metadata=(("model_id", model_id),))
        by_status = await self.aggregate(filters, agg="count", metric=None, group_by="status", interval=None)
        total = sum(row.count for row in by_status)
        successes = sum(row.count for row in by_status if row.group == "ok")
        latency = {
            agg: await self.aggregate(filters, agg=agg, metric="duration_ms", group_by=None, interval=None)
            for agg in ("avg", "p99")
        }
        tokens = await self.aggregate(filters, agg="sum", metric="tokens", group_by=None, interval=None)
        errors = await self.aggregate(
            Filters(filters.event_name, since, None, (*filters.metadata, ("status", "error"))),
            agg="count", metric=None, group_by="error", interval=None,
        )  # fmt: skip
        return Statistics(
            total_requests=total,
            successes=successes,
            avg_latency_ms=latency["avg"][0].value if latency["avg"] else None,
            p99_latency_ms=latency["p99"][0].value if latency["p99"] else None,
            total_tokens=(tokens[0].value or 0) if tokens else 0,
            error_breakdown={str(row.group if row.group is not None else "unknown"): row.count for row in errors},
        )
