"""Models and training (prefix `/api`, the simple error envelope): models, training runs, parameters and inference.

Errors leave as `{"error": msg}` (the family's envelope, applied by `pivotd.errors`); states are `RunState`'s
`queued/running/succeeded/failed/cancelled`. Answers are `shared.models.registry` models, sent without the
optional fields a view leaves unset (`param_id` before a run succeeded, outputs that were not asked for).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from pivotd.api.body import openapi_body, parse_lenient, read_json_body
from pivotd.api.deps import RunIdPath, ServicesDep
from pivotd.api.responses import error_responses, json_response
from pivotd.api.sse import EventStream, event_stream_doc, stream_run, wire
from pivotd.errors import BadRequest, PivotError, ValidationFailed
from pivotd.inference import as_batch, outputs
from pivotd.jobs.service import EPOCH_METRICS, Training, read_params_layout
from pivotd.services import Services
from pivotd.store import JobRow, ModelRow
from pivotd.telemetry.service import INFERENCE_EVENT
from pivotd.timefmt import iso
from shared.models.errors import SimpleErrorEnvelope
from shared.models.registry import (
    AdhocInference,
    AdhocInferRequest,
    CancelRequested,
    Inference,
    InferRequest,
    ManagedRun,
    ManagedRunPage,
    ModelDefinition,
    ModelDetail,
    ModelSaved,
    ModelSummary,
    Outputs,
    Params,
    PixelInference,
    PixelInferRequest,
    SaveModel,
    TrainInline,
    TrainModel,
    TrainQueued,
)
from shared.models.runs import FINAL_STATES, RunState
from shared.models.storable import INT64_MAX
from shared.models.streams import RUN_STREAM_EVENTS, RunMetricEvent, RunStateEvent

router = APIRouter(prefix="/api", tags=["models and training"])
RUN_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
Id = Annotated[str, Path(max_length=128)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The family's `{"error": msg}` answers; any route may also answer 401, 403 and 429 (access rules)."""
    return error_responses(SimpleErrorEnvelope, *sorted({401, 403, 429, *codes}))


def _send(model: BaseModel, status_code: int = 200) -> Response:
    """The model as JSON, without the optional fields its view left unset (as the seeds send them: absent)."""
    return json_response(model.model_dump(mode="json", exclude_unset=True), status_code)


async def _object(
    request: Request, services: Services, optional: bool = False, limit: int | None = None
) -> dict[str, Any]:
    if optional and request.headers.get("content-length") in (None, "0"):
        return {}
    document = parse_lenient(await read_json_body(request, limit or services.settings.max_body_bytes))
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object")
    return document


def _ts(value: float | None) -> str | None:
    return None if value is None else iso(value)


async def run_view(training: Training, run: JobRow) -> ManagedRun:
    """A registry run (`state`, `epoch`, `metrics`, `param_id` once succeeded) plus timestamps and `error`."""
    latest = await training.latest_metrics(run)
    view = ManagedRun(
        run_id=run.run_id,
        model_id=run.model_id,
        state=RunState(run.status),
        epoch=run.epoch or 0,
        epochs_total=run.epochs_total,
        metrics={name: latest[name] for name in RUN_METRICS if name in latest},
        created_at=iso(run.created_at),
        started_at=_ts(run.started_at),
        finished_at=_ts(run.finished_at),
        error=run.error,
        events_url=f"/api/runs/{run.run_id}/events",
        gpus=run.gpus,
    )
    if run.status == RunState.SUCCEEDED and run.param_id:
        view.param_id = run.param_id  # set only now: absent before, as the registry's clients expect
    return view


def _is_file(path: FilePath) -> bool:
    """Whether a recorded path is a file now; a path the OS refuses to look up (a name too long) is none."""
    try:
        return path.is_file()
    except OSError:
        return False


async def _summary_fields(training: Training, model: ModelRow, counts: tuple[int, str | None]) -> dict[str, Any]:
    total, latest_id = counts
    latest = await training.reader.job(latest_id) if latest_id else None
    recorded = model.saved_model_path  # older versions stored a number as readily as a path, if a client sent one
    saved = training.settings.artifact_path(recorded) if isinstance(recorded, str) and recorded else None
    return {
        "model_id": model.model_id,
        "name": model.name,
        "description": model.description,
        "architecture": model.architecture,
        "hyperparams": model.hyperparams,
        "created_at": iso(model.created_at),
        "updated_at": iso(model.updated_at),
        "trained": model.trained,
        "saved_model_path": None if saved is None else str(saved),
        "saved_model_exists": saved is not None and _is_file(saved),
        "last_trained_at": _ts(model.last_trained_at),
        "runs_total": total,
        "latest_run": await run_view(training, latest) if latest else None,
    }


async def model_summary(training: Training, model: ModelRow, counts: tuple[int, str | None]) -> ModelSummary:
    return ModelSummary(**await _summary_fields(training, model, counts))


@router.get("/models", summary="Model summaries", response_model=list[ModelSummary], responses=_errors())
async def list_models(services: ServicesDep) -> Response:
    training = services.training
    counts = await training.reader.run_counts()
    models = [
        await model_summary(training, m, counts.get(m.model_id, (0, None))) for m in await training.reader.models()
    ]
    return json_response([m.model_dump(mode="json", exclude_unset=True) for m in models])


_MODEL_FIELDS = ("name", "description", "architecture", "hyperparams", "trained", "saved_model_path")
_TEXT_FIELDS = {"name": 200, "description": 10_000, "saved_model_path": 4096}
"""Stored as text (the limits of `/api/v1/models`): anything but a string or null could not be bound, a 500."""


def _model_values(document: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    values = {name: document[name] for name in names if name in document}
    for name, limit in _TEXT_FIELDS.items():
        value = values.get(name)
        if value is not None and not (isinstance(value, str) and len(value) <= limit):
            raise BadRequest(f"{name}: must be a string of at most {limit} characters, or null")
    return values


@router.post(
    "/models",
    summary="Create (201) or update by model_id (200) a model definition",
    response_model=ModelSummary,
    responses={
        201: {"model": ModelSummary, "description": "Created"},
        **_errors(400, 409, 413, 415, 422, 507),
    },
    openapi_extra=openapi_body("ModelDefinition", ModelDefinition, "A model definition"),
)
async def post_model(request: Request, services: ServicesDep) -> Response:
    document = await _object(request, services)
    model_id = document.get("model_id")
    if model_id is not None and (not isinstance(model_id, str) or not 0 < len(model_id) <= 128):
        raise BadRequest("model_id must be a string of 1..128 characters")
    values = _model_values(document, _MODEL_FIELDS)
    if "trained" in values:
        values["trained"] = bool(values["trained"])
    if values.get("saved_model_path") is not None:  # a string by now (_model_values)
        if not values["saved_model_path"]:
            raise BadRequest("saved_model_path must be a non-empty string or null")
        values["saved_model_path"] = services.settings.artifact_ref(FilePath(values["saved_model_path"]))
    training = services.training
    model, created = await training.put_model(model_id, values)
    counts = (await training.reader.run_counts([model.model_id])).get(model.model_id, (0, None))
    return _send(await model_summary(training, model, counts), 201 if created else 200)


@router.get(
    "/models/{model_id}",
    summary="A model's summary with its runs",
    response_model=ModelDetail,
    responses=_errors(404, 422),
)
async def get_model(model_id: Id, services: ServicesDep) -> Response:
    training = services.training
    model = await training.get_model(model_id)
    counts = (await training.reader.run_counts([model_id])).get(model_id, (0, None))
    runs = [await run_view(training, run) for run in await training.reader.jobs(model_id=model_id)]
    return _send(ModelDetail(**await _summary_fields(training, model, counts), runs=runs))


@router.post(
    "/models/{model_id}/save",
    summary="Register a definition, or promote a succeeded run ({run_id})",
    response_model=ModelSaved,
    responses=_errors(400, 404, 409, 413, 415, 422, 507),
    openapi_extra=openapi_body("SaveModel", SaveModel, "`run_id` to promote, or a definition"),
)
async def save_model(model_id: Id, request: Request, services: ServicesDep) -> Response:
    document = await _object(request, services)
    training = services.training
    run_id = document.get("run_id")
    if run_id is None:
        values = _model_values(document, ("name", "description", "architecture", "hyperparams"))
        model, _ = await training.put_model(model_id, {**values, "trained": False, "saved_model_path": None})
        counts = (await training.reader.run_counts([model_id])).get(model_id, (0, None))
        return _send(ModelSaved(**await _summary_fields(training, model, counts)))
    await training.get_model(model_id)
    run = await training.get_run(str(run_id))
    if run.model_id != model_id:
        raise ValidationFailed(f"run {run_id!r} belongs to model {run.model_id!r}, not {model_id!r}")
    params = await training.succeeded_params(run.run_id)
    model, _ = await training.put_model(
        model_id,
        {"trained": True, "saved_model_path": params.path, "saved_run_id": run.run_id,
         "architecture": run.config["architecture"], "hyperparams": run.config["hyperparams"]},
    )  # fmt: skip
    counts = (await training.reader.run_counts([model_id])).get(model_id, (0, None))
    saved = ModelSaved(**await _summary_fields(training, model, counts), run_id=run.run_id, param_id=params.param_id)
    return _send(saved)


@router.post(
    "/models/{model_id}/train",
    status_code=202,
    summary="Train a stored model",
    response_model=TrainQueued,
    responses=_errors(400, 404, 409, 413, 415, 422, 507),
    openapi_extra=openapi_body("TrainModel", TrainModel, "Hyperparameters", required=False),
)
async def train_model(model_id: Id, request: Request, services: ServicesDep) -> Response:
    document = await _object(request, services, optional=True)
    run_id = await services.training.train_model(model_id, document.get("hyperparams"))
    return _send(TrainQueued(run_id=run_id, model_id=model_id, status=RunState.QUEUED), 202)


@router.post(
    "/train",
    status_code=202,
    summary="Train an inline architecture; 409 when all slots are busy",
    response_model=TrainQueued,
    responses=_errors(400, 409, 413, 415, 422, 507),
    openapi_extra=openapi_body("TrainInline", TrainInline, "An architecture and hyperparameters"),
)
async def train_inline(request: Request, services: ServicesDep) -> Response:
    document = await _object(request, services)
    if "architecture" not in document:
        raise BadRequest("architecture: field required")
    model_id, run_id = await services.training.train_inline(document["architecture"], document.get("hyperparams"))
    queued = TrainQueued(
        model_id=model_id, run_id=run_id, events_url=f"/api/runs/{run_id}/events", status=RunState.QUEUED
    )
    return _send(queued, 202)


@router.post(
    "/train/{run_id}/cancel",
    status_code=202,
    summary="Cancel a queued or running run",
    response_model=CancelRequested,
    responses=_errors(404, 409, 422),
)
async def cancel_run(run_id: RunIdPath, services: ServicesDep) -> Response:
    run = await services.training.cancel(run_id)
    return _send(CancelRequested(run_id=run_id, state=RunState(run.status), cancel_requested=True), 202)


@router.get(
    "/runs/{run_id}",
    summary="A training run's state and latest metrics",
    response_model=ManagedRun,
    responses=_errors(404, 422),
)
async def get_run(run_id: RunIdPath, services: ServicesDep) -> Response:
    training = services.training
    return _send(await run_view(training, await training.get_run(run_id)))


@router.get(
    "/runs/{run_id}/events",
    summary="SSE: `state` and `metric` events, history first",
    response_class=EventStream,
    responses={
        200: event_stream_doc("The event stream; it ends after a final state", RUN_STREAM_EVENTS),
        **_errors(404, 422),
    },
)
async def run_events(run_id: RunIdPath, services: ServicesDep) -> Response:
    training = services.training
    await training.get_run(run_id)  # 404 before the stream starts
    seen: set[int] = set()
    last_state: list[str] = []

    def state_frame(state: str, error: str | None) -> list[tuple[str, dict[str, Any]]]:
        if last_state and last_state[-1] == state:
            return []
        last_state.append(state)
        return [("state", wire(RunStateEvent, {"run_id": run_id, "state": state, "error": error or None}))]

    def metric_frames(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        frames = []
        for record in records:
            if record["epoch"] not in seen:
                seen.add(record["epoch"])
                frames.append(("metric", wire(RunMetricEvent, {**record, "run_id": run_id})))
        return frames

    async def history() -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        run = await training.get_run(run_id)
        records = await training.epoch_records(run, EPOCH_METRICS)
        final = run.status in FINAL_STATES
        if final:
            return metric_frames(records) + state_frame(run.status, run.error), True
        return state_frame(run.status, None) + metric_frames(records), False

    def translate(message: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        if message.get("type") == "scalars":
            records = [
                {**p["values"], "epoch": p["epoch"], "step": p["step"], "timestamp": p.get("timestamp")}
                for p in message["points"]
                if p.get("epoch") is not None and "train_loss" in p["values"]
            ]
            return metric_frames(records), False
        if message.get("type") == "run_state":
            return state_frame(message["state"], message.get("error")), message["state"] in FINAL_STATES
        return [], False

    return stream_run(services, run_id, history, translate)


@router.get(
    "/models/{model_id}/runs",
    summary="A model's runs, newest first, with cursor paging",
    response_model=ManagedRunPage,
    responses=_errors(400, 404, 422),
)
async def model_runs(
    model_id: Id,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    training = services.training
    await training.get_model(model_id)
    after = None
    if cursor:
        try:
            after = int(base64.urlsafe_b64decode(cursor.encode()).decode())
            if not 0 <= after <= INT64_MAX:  # SQLite binds no bigger integer
                raise ValueError(after)
        except ValueError:
            raise BadRequest("cursor is not one this server issued") from None
    runs = await training.reader.jobs(model_id=model_id, after_ref=after, limit=limit + 1, newest_first=True)
    page = runs[:limit]
    next_cursor = base64.urlsafe_b64encode(str(page[-1].ref).encode()).decode() if len(runs) > limit else None
    items = [await run_view(training, run) for run in page]
    return _send(ManagedRunPage(items=items, next_cursor=next_cursor))


@router.get(
    "/params/{param_id}",
    summary="Trained parameters as JSON layers",
    response_model=Params,
    responses=_errors(404, 422),
)
async def get_params(param_id: Id, services: ServicesDep) -> Response:
    training = services.training
    params = await training.get_params(param_id)
    arch = await training.params_architecture(params)
    layout = await read_params_layout(services.settings.artifact_path(params.path), arch)
    body = Params(param_id=param_id, model_id=params.model_id, run_id=params.run_id, parameters=layout,
                  size_bytes=params.size_bytes, created_at=iso(params.created_at))  # fmt: skip
    return _send(body)


@router.post(
    "/infer",
    summary="Inference: {run_id, pixels} or {param_id, inputs, return}",
    response_model=PixelInference | Inference,
    responses=_errors(400, 404, 409, 413, 415, 422),
    openapi_extra=openapi_body("InferBody", PixelInferRequest | InferRequest, "One image, or a batch"),
)
async def infer(request: Request, services: ServicesDep) -> Response:
    started = time.perf_counter()
    seen: dict[str, Any] = {}
    try:
        response = await _infer(request, services, seen)
    except Exception as exc:
        _record_inference(services, started, seen, exc.code if isinstance(exc, PivotError) else "internal_error")
        raise
    _record_inference(services, started, seen, None)
    return response


def _record_inference(services: Services, started: float, seen: dict[str, Any], error: str | None) -> None:
    """One `pivot.model.inference` telemetry event per request: what model statistics are computed from."""
    measurements = {"duration_ms": (time.perf_counter() - started) * 1000}
    for name in ("batch_size", "compute_ms"):
        if name in seen:
            measurements[name] = seen[name]
    metadata: dict[str, Any] = {key: seen.get(key) for key in ("model_id", "param_id", "run_id")}
    metadata |= {"route": "/api/infer", "status": "error" if error else "ok"}
    if error:
        metadata["error"] = error
    services.telemetry.emit(INFERENCE_EVENT, measurements, metadata)


async def _infer(request: Request, services: Services, seen: dict[str, Any]) -> Response:
    """`seen` collects what the telemetry event reports (ids, batch size, compute time) as it becomes known."""
    document = await _object(request, services, limit=services.settings.max_infer_body_bytes)
    training = services.training
    if "pixels" in document or ("run_id" in document and "param_id" not in document):
        run_id = document.get("run_id")
        if not isinstance(run_id, str):
            raise BadRequest("run_id: field required (a string)")
        seen["run_id"] = run_id
        params = await training.succeeded_params(run_id)
        seen |= {"model_id": params.model_id, "param_id": params.param_id}
        arch = await training.params_architecture(params)
        batch = as_batch([document.get("pixels")], arch.input_features, "pixels", single=True)
        seen["batch_size"] = len(batch)
        engine = await services.inference.engine(params.param_id, arch, services.settings.artifact_path(params.path))
        logits, latency = await services.inference.logits(engine, batch)
        seen["compute_ms"] = latency
        result = outputs(logits, {"labels": True, "probabilities": True})
        answer = PixelInference(run_id=run_id, label=result["labels"][0], probabilities=result["probabilities"][0],
                                latency_ms=round(latency, 3))  # fmt: skip
        return _send(answer)
    param_id = document.get("param_id")
    if not isinstance(param_id, str):
        raise BadRequest("param_id (or run_id with pixels): field required")
    seen["param_id"] = param_id
    params = await training.get_params(param_id)
    seen |= {"model_id": params.model_id, "run_id": params.run_id}
    arch = await training.params_architecture(params)
    batch = as_batch(document.get("inputs"), arch.input_features)
    seen["batch_size"] = len(batch)
    engine = await services.inference.engine(param_id, arch, services.settings.artifact_path(params.path))
    logits, latency = await services.inference.logits(engine, batch)
    seen["compute_ms"] = latency
    answer = Inference(model_id=params.model_id, param_id=param_id,
                       outputs=Outputs(**outputs(logits, _wanted(document))), latency_ms=round(latency, 3))  # fmt: skip
    return _send(answer)


def _wanted(document: dict[str, Any]) -> dict[str, bool]:
    wanted = document.get("return") or {}
    if not isinstance(wanted, dict):
        raise BadRequest("return must be an object like {logits, probabilities, labels}")
    return {name: bool(wanted.get(name, default)) for name, default in
            (("logits", False), ("probabilities", True), ("labels", True))}  # fmt: skip


@router.post(
    "/infer_adhoc",
    summary="Forward pass with a given architecture and parameters; nothing is saved",
    response_model=AdhocInference,
    responses=_errors(400, 413, 415, 422),
    openapi_extra=openapi_body("AdhocInferRequest", AdhocInferRequest, "Architecture, parameters, inputs"),
)
async def infer_adhoc(request: Request, services: ServicesDep) -> Response:
    document = await _object(request, services, limit=services.settings.max_infer_body_bytes)
    arch = services.training.architecture(document.get("architecture"))
    batch = as_batch(document.get("inputs"), arch.input_features)
    logits, latency = await services.inference.adhoc(arch, document.get("parameters"), batch)
    answer = AdhocInference(outputs=Outputs(**outputs(logits, _wanted(document))), latency_ms=round(latency, 3))
    return _send(answer)
