"""The one ingest path: validated payloads -> store (group commit) -> hub.

Every writer of metrics goes through here: the layer-wise routes, the scalar route, and (later)
the daemon's own trainer, which posts through the same public routes as any external script.
Subscribers hear about a step only after it is committed, so nothing they see can be lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson

from pivotd.hub import METRICS_TOPIC, RUNS_TOPIC, Hub, run_topic
from pivotd.layerwise_decoder import StepPayload
from pivotd.store import (
    BatchOutcome,
    DeleteRun,
    PutEvent,
    PutScalars,
    PutSteps,
    RunFields,
    RunRow,
    StepRecord,
    Store,
)
from pivotd.timefmt import iso
from shared.models.layerwise import is_valid_run_id, lite_layer
from shared.models.messages import RunDeleted

if TYPE_CHECKING:
    from pivotd.alerts.engine import AlertEngine
    from pivotd.scalar_batch import ScalarColumns
    from pivotd.telemetry.service import Telemetry

log = logging.getLogger(__name__)

LAYERWISE_EVENT = ("pivot", "ingest", "layerwise")
SCALARS_EVENT = ("pivot", "ingest", "scalars")


_NO_FIELDS = RunFields()


def step_record(payload: StepPayload) -> StepRecord:
    meta = payload.metadata
    step = {
        "step": meta.global_step,
        "timestamp": meta.timestamp,
        "batch_size": meta.batch_size,
        "layers": payload.layer_statistics,
        "cross_layer": payload.cross_layer_analysis,
        "layer_groups": meta.layer_groups,
    }
    extra = meta.model_extra or None
    fields = (
        _NO_FIELDS  # most steps carry none: one object for all of them (a frozen dataclass is slow to build)
        if meta.experiment_id is None and meta.group is None and meta.tags is None and extra is None
        else RunFields(experiment_id=meta.experiment_id, group=meta.group, tags=meta.tags, extra=extra)
    )
    return StepRecord(meta.run_id, meta.global_step, meta.timestamp, meta.batch_size, orjson.dumps(step), fields)


def lite_step(document: bytes) -> bytes:
    """A stored step reduced to what a `lite` history carries: each layer's identity and health signals
    (`shared.models.layerwise.lite_layer`, the projection clients use too).

    Derived when read rather than stored: lite histories are asked for far less often than steps
    arrive, and a second stored copy made every write a third larger.
    """
    step = orjson.loads(document)
    step["layers"] = [lite_layer(layer) for layer in step["layers"]]
    return orjson.dumps(step)


async def lite_steps(documents: list[bytes]) -> list[bytes]:
    """`lite_step` for a whole history, off the event loop so a long run cannot stall other clients."""
    return await asyncio.to_thread(lambda: [lite_step(document) for document in documents])


def _deleted(run_id: str, reason: Literal["deleted", "retention"]) -> str:
    return RunDeleted(type="run_deleted", topic=RUNS_TOPIC, run_id=run_id, reason=reason).model_dump_json()


def run_message(kind: str, run: RunRow) -> str:
    """`run_created` / `run_updated` on the `runs` topic: the run's summary as the run list shows it."""
    return orjson.dumps({"type": kind, "topic": RUNS_TOPIC, "run_id": run.run_id, "data": run_summary(run)}).decode()


def run_summary(run: RunRow) -> dict[str, Any]:
    """A run as `GET /api/v1/runs`, `initial_runs` and the `runs` topic show it (the layer-wise protocol's fields
    and additive ones)."""
    return {
        "created_at": iso(run.created_at),
        "last_update": iso(run.last_update),
        "step_count": run.step_count,
        "latest_step": run.latest_step,
        "kind": run.kind,
        "status": run.status,
        "error": run.error,
        "experiment_id": run.experiment_id,
        "group": run.group,
        "tags": run.tags,
        "latest": run.latest,
    }


class Ingest:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        telemetry: Telemetry,
        alerts: AlertEngine,
        removed_listeners: Sequence[Callable[[str], None]],
    ) -> None:
        self._store = store
        self._hub = hub
        self._telemetry = telemetry
        """Counts what each route ingests (summed per flush interval, not per request)."""
        self._alerts = alerts
        """Evaluated after each commit."""
        self._removed_listeners = tuple(removed_listeners)
        """Told the id of every run deleted or evicted, once that is committed (e.g. to remove its files)."""
        store.writer.listeners.append(self._announce_batch)
        store.writer.announce_runs = lambda: hub.has_subscribers(RUNS_TOPIC)

    async def layerwise(self, payloads: Sequence[StepPayload]) -> list[str]:
        """Commit steps (one transaction), then broadcast each as `new_metrics`."""
        records = [step_record(payload) for payload in payloads]
        await self._store.writer.submit(PutSteps(records))
        self._telemetry.count(LAYERWISE_EVENT, requests=1, steps=len(records))
        listened: dict[str, bool] = {}  # per run: a batch's steps are mostly of one run
        for record in records:
            heard = listened.get(record.run_id)
            if heard is None:
                heard = listened[record.run_id] = self._hub.has_subscribers(METRICS_TOPIC, run_topic(record.run_id))
            if heard:
                run_id = orjson.dumps(record.run_id).decode()
                message = f'{{"type":"new_metrics","run_id":{run_id},"data":{record.data.decode()}}}'
                self._hub.publish((METRICS_TOPIC, run_topic(record.run_id)), message)
        transitions = self._alerts.evaluate_steps(payloads)
        if transitions:  # rare: only then does the request wait for the alert to be stored
            await self._alerts.apply(transitions)
        return [record.run_id for record in records]

    async def scalars(self, run_id: str, columns: ScalarColumns) -> int:
        count: int = await self._store.writer.submit(PutScalars(run_id, columns.series, columns.fields))
        self._telemetry.count(SCALARS_EVENT, requests=1, points=count)
        topic = run_topic(run_id)
        if self._hub.has_subscribers(topic):
            message = {"type": "scalars", "topic": topic, "run_id": run_id, "points": columns.message_points()}
            self._hub.publish((topic,), orjson.dumps(message).decode())
        transitions = self._alerts.evaluate_scalars(run_id, columns.series, columns.last_step)
        if transitions:
            await self._alerts.apply(transitions)
        return count

    async def record_rejection(
        self, run_id: str, step: int | None, field: str, reason: str, layer_id: str | None = None
    ) -> None:
        """Store the fact that a payload was refused (e.g. non-finite), so monitors can surface it."""
        where = f" at step {step}" if step is not None else ""
        message = f"rejected payload for run {run_id}{where}: {field}: {reason}"
        await self._store.writer.submit(PutEvent(run_id, "rejected_non_finite", message, step, field))
        log.warning("%s", message)
        topic = run_topic(run_id)
        event = {
            "timestamp": iso(time.time()),
            "kind": "rejected_non_finite",
            "step": step,
            "field": field,
            "message": message,
        }
        self._hub.publish(
            (topic,),
            orjson.dumps({"type": "run_event", "topic": topic, "run_id": run_id, "data": event}).decode(),
        )
        transitions = self._alerts.evaluate_rejection(run_id, step, field, layer_id)
        if transitions:
            await self._alerts.apply(transitions)

    async def delete_run(self, run_id: str) -> None:
        await self._store.writer.submit(DeleteRun(run_id))
        self._tell_removed([run_id])
        await self._alerts.close_run(run_id, "run deleted")
        self._hub.publish((RUNS_TOPIC, run_topic(run_id)), _deleted(run_id, "deleted"))

    def _announce_batch(self, outcome: BatchOutcome) -> None:
        """Tell the `runs` topic what a committed batch changed."""
        self._tell_removed(outcome.evicted)
        for run_id in outcome.evicted:
            self._alerts.forget_run(run_id)  # memory only: its stored alerts stay as they were
        if not self._hub.has_subscribers(RUNS_TOPIC) and not outcome.evicted:
            return
        for run in outcome.touched:
            kind = "run_created" if run.run_id in outcome.created else "run_updated"
            self._hub.publish((RUNS_TOPIC,), run_message(kind, run))
        for run_id in outcome.evicted:
            self._hub.publish((RUNS_TOPIC, run_topic(run_id)), _deleted(run_id, "retention"))

    def _tell_removed(self, run_ids: Sequence[str]) -> None:
        for run_id in run_ids:
            for listener in self._removed_listeners:
                try:
                    listener(run_id)
                except Exception:  # one listener's failure must not stop the others or the commit's callers
                    log.exception("run-removed listener failed for %s", run_id)


def run_id_of(document: Any) -> tuple[str | None, int | None]:
    """Best-effort (run_id, step) of a payload that failed validation, for recording the rejection."""
    if not isinstance(document, dict):
        return None, None
    meta = document.get("metadata")
    if not isinstance(meta, dict):
        return None, None
    run_id, step = meta.get("run_id"), meta.get("global_step")
    if not isinstance(run_id, str) or not is_valid_run_id(run_id):
        return None, None
    return run_id, step if isinstance(step, int) and not isinstance(step, bool) else None
