"""Training sessions (prefix `/api/v1`): sessions, their metrics, and live updates over SSE and WS.

A session is a managed run (`session_id` = run id); its status is shown in the session vocabulary by the one mapping,
`shared.models.training.SESSION_STATUS`. Errors leave as `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect

from pivotd.api.body import openapi_body, read_model
from pivotd.api.deps import RunIdPath, ServicesDep
from pivotd.api.query import MAX_OFFSET
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.api.sse import EventStream, event_stream_doc, stream_run, wire
from pivotd.errors import NotFound
from pivotd.hub import run_topic
from pivotd.jobs.service import EPOCH_METRICS, Training
from pivotd.services import Services
from pivotd.store import JobRow
from pivotd.timefmt import iso
from shared.models.runs import FINAL_STATES
from shared.models.sessions import (
    SESSION_STREAM_EVENTS,
    EpochRecord,
    MetricHistory,
    SessionConfig,
    SessionCreated,
    SessionList,
    SessionMetrics,
    SessionMetricsMessage,
    SessionPublic,
    SessionStarted,
    SessionStatusMessage,
    SessionStopped,
    SessionSummary,
)
from shared.models.training import SESSION_RUN_STATES, SESSION_STATUS, SessionStatus

router = APIRouter(prefix="/api/v1", tags=["training sessions"])


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config_path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    config: dict[str, Any] | None = None
    session_name: Annotated[str, Field(max_length=256)] | None = None
    tags: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=64)


def _ts(value: float | None) -> str | None:
    return None if value is None else iso(value)


def _config(run: JobRow) -> SessionConfig:
    """Sessions show a flat config (epochs, batch_size, learning_rate); the full definition follows it."""
    hp = run.config.get("hyperparams", {})
    return SessionConfig.model_validate(
        {
            "epochs": hp.get("epochs"),
            "batch_size": hp.get("batch_size"),
            "learning_rate": hp.get("optimizer", {}).get("lr"),
            **run.config,
        }
    )


def _status(run: JobRow) -> SessionStatus:
    return SESSION_STATUS[run.status]  # type: ignore[index]  # a RunState word, stored as text


async def session_view(training: Training, run: JobRow) -> SessionPublic:
    epoch = run.epoch or 0
    total = run.epochs_total or 0
    return SessionPublic(
        session_id=run.run_id,
        session_name=run.name,
        status=_status(run),
        config=_config(run),
        created_at=iso(run.created_at),
        started_at=_ts(run.started_at),
        completed_at=_ts(run.finished_at),
        current_epoch=epoch,
        total_epochs=total,
        progress=round(epoch / total, 4) if total else 0.0,
        latest_metrics=await training.latest_metrics(run),
        tags=run.tags,
        model_id=run.model_id,
        error=run.error,
    )


def _summary(run: JobRow) -> SessionSummary:
    return SessionSummary(
        session_id=run.run_id,
        session_name=run.name,
        status=_status(run),
        created_at=iso(run.created_at),
        current_epoch=run.epoch or 0,
        total_epochs=run.epochs_total or 0,
        tags=run.tags,
    )


async def _session(services: Services, session_id: str) -> JobRow:
    run = await services.training.reader.job(session_id)
    if run is None:
        raise NotFound(f"session {session_id!r} not found", details={"field": "session_id"})
    return run


@router.post(
    "/training/sessions",
    status_code=201,
    summary="Create a session from a config file under config_dir, or an inline config",
    openapi_extra=openapi_body("SessionCreate", SessionCreate),
    response_model=SessionCreated,
    responses=error_responses(STRUCTURED_ERRORS, 400, 401, 403, 404, 409, 413, 415, 422, 429),
)
async def create_session(request: Request, services: ServicesDep) -> Response:
    body = await read_model(request, SessionCreate, services.settings.max_body_bytes)
    training = services.training
    run_id = await training.create_session(body.config, body.config_path, body.session_name, body.tags)
    run = await training.get_run(run_id)
    created = SessionCreated(
        session_id=run.run_id,
        session_name=run.name,
        status=_status(run),
        created_at=iso(run.created_at),
        config=_config(run),
        tags=run.tags,
    )
    return model_response(created, 201)


@router.post(
    "/training/sessions/{session_id}/start",
    summary="Queue the session (runs at once if a slot is free)",
    response_model=SessionStarted,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 409, 422, 429),
)
async def start_session(session_id: RunIdPath, services: ServicesDep) -> Response:
    await _session(services, session_id)
    run = await services.training.start_session(session_id)
    started = SessionStarted(
        session_id=session_id, status=_status(run), started_at=_ts(run.started_at or run.queued_at)
    )
    return model_response(started)


@router.post(
    "/training/sessions/{session_id}/stop",
    summary="Stop the session (SIGTERM, grace, SIGKILL)",
    response_model=SessionStopped,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 409, 422, 429),
)
async def stop_session(session_id: RunIdPath, services: ServicesDep) -> Response:
    await _session(services, session_id)
    run = await services.training.cancel(session_id, wait=True)
    return model_response(SessionStopped(session_id=session_id, status=_status(run), stopped_at=_ts(run.finished_at)))


@router.get(
    "/training/sessions/{session_id}",
    summary="A session's status, progress and latest metrics",
    response_model=SessionPublic,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 422, 429),
)
async def get_session(session_id: RunIdPath, services: ServicesDep) -> Response:
    return model_response(await session_view(services.training, await _session(services, session_id)))


@router.get(
    "/training/sessions",
    summary="Sessions, newest first; filter by status",
    response_model=SessionList,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 422, 429),
)
async def list_sessions(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status: SessionStatus | None = None,
) -> Response:
    training = services.training
    statuses = SESSION_RUN_STATES[status] if status else None
    runs = await training.reader.jobs(statuses=statuses, limit=limit, offset=offset, newest_first=True)
    total = await training.reader.count_jobs(statuses)
    return model_response(
        SessionList(sessions=[_summary(run) for run in runs], total=total, limit=limit, offset=offset)
    )


@router.get(
    "/training/sessions/{session_id}/metrics",
    summary="Per-epoch metric records",
    response_model=SessionMetrics,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 422, 429),
)
async def session_metrics(
    session_id: RunIdPath,
    services: ServicesDep,
    metric_name: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> Response:
    run = await _session(services, session_id)
    names = (metric_name,) if metric_name else None
    records = await services.training.epoch_records(run, names)
    metrics = [EpochRecord.model_validate({**r, "timestamp": _ts(r["timestamp"])}) for r in records[:limit]]
    return model_response(SessionMetrics(session_id=session_id, metrics=metrics))


@router.get(
    "/metrics/{session_id}/history",
    summary="One metric's values by epoch",
    response_model=MetricHistory,
    responses=error_responses(STRUCTURED_ERRORS, 401, 403, 404, 422, 429),
)
async def metric_history(
    session_id: RunIdPath,
    services: ServicesDep,
    metric_name: Annotated[str, Query(max_length=128)] = "val_loss",
    start_epoch: Annotated[int | None, Query(ge=0)] = None,
    end_epoch: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    run = await _session(services, session_id)
    records = [
        r
        for r in await services.training.epoch_records(run, (metric_name,))
        if (start_epoch is None or r["epoch"] >= start_epoch) and (end_epoch is None or r["epoch"] <= end_epoch)
    ]
    history = MetricHistory(
        metric_name=metric_name,
        values=[r[metric_name] for r in records],
        epochs=[r["epoch"] for r in records],
        timestamps=[_ts(r["timestamp"]) for r in records],
    )
    return model_response(history)


class _SessionFeed:
    """Turns hub messages of a session's run topic into `metrics` and `status` updates."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.seen: set[int] = set()
        self.status: str | None = None

    def metrics(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for record in records:
            if record["epoch"] in self.seen:
                continue
            self.seen.add(record["epoch"])
            timestamp = record.get("timestamp")
            # The record first: a metric named like a message field cannot stand in for it.
            fields = {**record, "session_id": self.session_id, "timestamp": _ts(timestamp) if timestamp else None,
                      "loss": record.get("train_loss")}  # fmt: skip
            fresh.append(wire(SessionMetricsMessage, fields))
        return fresh

    def state(self, internal: str, error: str | None) -> list[dict[str, Any]]:
        status = SESSION_STATUS[internal]  # type: ignore[index]  # a RunState word
        if status == self.status:
            return []
        self.status = status
        return [wire(SessionStatusMessage, {"session_id": self.session_id, "status": status, "error": error})]

    def translate(self, message: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        if message.get("type") == "scalars":
            records = [
                {**p["values"], "epoch": p["epoch"], "timestamp": p.get("timestamp")}
                for p in message["points"]
                if p.get("epoch") is not None and "train_loss" in p["values"]
            ]
            return [("metrics", m) for m in self.metrics(records)], False
        if message.get("type") == "run_state":
            done = message["state"] in FINAL_STATES
            return [("status", s) for s in self.state(message["state"], message.get("error"))], done
        return [], False

    async def history(self, training: Training) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        run = await training.get_run(self.session_id)
        records = await training.epoch_records(run, EPOCH_METRICS)
        frames = [("status", s) for s in self.state(run.status, run.error)]
        frames += [("metrics", m) for m in self.metrics(records)]
        return frames, run.status in FINAL_STATES


@router.get(
    "/sse/training/{session_id}",
    summary="SSE: `metrics` per epoch and `status` changes of a session",
    description="`text/event-stream`: `event: metrics` with a `SessionMetricsMessage` (the recorded epochs first), "
    "`event: status` with a `SessionStatusMessage` (the first is the state then); it ends after a final status. "
    "The WebSocket `/api/v1/ws/training/{session_id}` sends the same messages with `type` set.",
    response_class=EventStream,
    responses={
        200: event_stream_doc("The event stream", SESSION_STREAM_EVENTS),
        **error_responses(STRUCTURED_ERRORS, 401, 403, 404, 422, 429),
    },
)
async def session_events(session_id: RunIdPath, services: ServicesDep) -> Response:
    await _session(services, session_id)
    feed = _SessionFeed(session_id)
    return stream_run(services, session_id, lambda: feed.history(services.training), feed.translate)


@router.websocket("/ws/training/{session_id}")
async def session_socket(websocket: WebSocket, session_id: str) -> None:
    """Messages `{"type": "metrics", "epoch", "loss", ...}` and `{"type": "status", "status"}`; closes when done."""
    services: Services = websocket.app.state.services
    await websocket.accept()
    if await services.training.reader.job(session_id) is None:
        await websocket.send_text(
            orjson.dumps({"type": "error", "message": f"session {session_id!r} not found"}).decode()
        )
        await websocket.close(1008)
        return

    async def close(code: int) -> None:  # the hub closes sockets with 1001 on shutdown
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code)

    subscriber = services.hub.connect([run_topic(session_id)], close=close)
    feed = _SessionFeed(session_id)
    receiver = asyncio.create_task(websocket.receive())  # notices the client leaving
    try:
        frames, done = await feed.history(services.training)
        while True:
            for kind, data in frames:
                await websocket.send_text(orjson.dumps({"type": kind, **data}).decode())
            if done:
                await websocket.close(1000)
                return
            waiter = asyncio.create_task(subscriber.next_messages())
            finished, _ = await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in finished:
                if receiver.result()["type"] == "websocket.disconnect":
                    waiter.cancel()
                    return
                receiver = asyncio.create_task(websocket.receive())  # client messages are ignored
            frames = []
            if waiter not in finished:
                waiter.cancel()
                continue
            for raw in waiter.result():
                more, done = feed.translate(orjson.loads(raw))
                frames += more
                if done:
                    break
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away
    finally:
        receiver.cancel()
        services.hub.disconnect(subscriber)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await receiver
