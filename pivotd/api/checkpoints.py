"""Checkpoints (`/api/v1/checkpoints`): list, upload (multipart `.pth`), streaming download, delete.

Uploads are streamed to disk under a size cap, then checked in a separate process (forked from the training fork
server where it can be) that loads them with `torch.load(weights_only=True)` only (see
`pivotd.training.checkpoint_check`); anything else is refused with 422 and deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile

import pivotd
from pivotd.api.body import JsonObject
from pivotd.api.deps import ServicesDep
from pivotd.api.responses import WRITES, api_errors, download, model_response
from pivotd.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
    invalid_field,
    validation_failed,
)
from pivotd.ids import new_id
from pivotd.jobs.forkserver import ForkedProcess, ForkServerError, fork
from pivotd.settings import Settings
from pivotd.store import AddCheckpoint, CheckpointRow, DeleteCheckpoint
from pivotd.timefmt import iso
from shared.models.checkpoints import CheckpointDeleted, CheckpointList, CheckpointPublic, CheckpointUploaded
from shared.models.layerwise import RUN_ID_PATTERN, RUN_ID_RULE, is_valid_run_id
from shared.models.storable import INT64_MAX

router = APIRouter(prefix="/api/v1", tags=["checkpoints"])
CHECK_TIMEOUT_S = 120
CHECK_MODULE = "pivotd.training.checkpoint_check"
CheckpointIdPath = Annotated[str, PathParam(min_length=1, max_length=128)]
CHUNK = 1024 * 1024
_METRICS: TypeAdapter[dict[str, Any]] = TypeAdapter(JsonObject)


def _public(row: CheckpointRow, settings: Settings) -> CheckpointPublic:
    return CheckpointPublic(
        checkpoint_id=row.checkpoint_id,
        session_id=row.run_id,
        epoch=row.epoch,
        metric_name=row.metric_name,
        metric_value=row.metric_value,
        metrics=row.metrics,
        file_size_mb=round(row.size_bytes / 1024**2, 3),
        size_bytes=row.size_bytes,
        file_path=str(settings.artifact_path(row.path)),
        is_best=row.is_best,
        source=row.source,
        created_at=iso(row.created_at),
    )


FILE = download("The checkpoint file", "<checkpoint_id>.pth", binary="application/octet-stream")
"""The 200 of a download route: the file's bytes."""


@router.get(
    "/checkpoints",
    summary="Checkpoints, optionally of one session",
    response_model=CheckpointList,
    responses=api_errors(422),
)
async def list_checkpoints(
    services: ServicesDep,
    session_id: Annotated[str | None, Query(min_length=1, max_length=128, pattern=RUN_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    rows = await services.training.reader.checkpoints(session_id, limit)
    return model_response(CheckpointList(checkpoints=[_public(row, services.settings) for row in rows]))


async def _output(proc: asyncio.subprocess.Process | ForkedProcess) -> tuple[bytes, bytes]:
    """The process's whole stdout and stderr, once it has exited."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
    await proc.wait()
    return out, err


def _unreadable(path: Path) -> str | None:
    """Why `torch.load` could not read the file whatever it holds, judged by its first bytes, else None: it reads a
    zip archive (torch's format since 1.6), a pickle (the legacy format) or a tar archive (older still). Such a file
    is refused without starting a process to load it."""
    with path.open("rb") as file:
        head = file.read(262)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[257:262] == b"ustar":
        return None
    return "not a PyTorch checkpoint: neither a zip archive nor a pickle"


async def _check(path: Path) -> str | None:
    """None if the file is a safe tensor checkpoint, else the reason it is not."""
    if (reason := _unreadable(path)) is not None:
        return reason
    root = str(Path(pivotd.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc: asyncio.subprocess.Process | ForkedProcess
    try:  # forked from the training fork server, which has imported torch: milliseconds, not 1.5 to 2 s of CPU
        proc = await fork(CHECK_MODULE, str(path), env)
    except ForkServerError:  # none ready (starting, or no torch): a fresh interpreter, which tells why if it fails
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", CHECK_MODULE, str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(_output(proc), CHECK_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"checking the file took longer than {CHECK_TIMEOUT_S} s"
    try:
        verdict = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = err.decode(errors="replace").strip().splitlines()
        if proc.returncode and tail and "torch" in tail[-1] and "No module" in tail[-1]:
            raise ServiceUnavailable("checking checkpoints needs the train extra (torch)") from None
        return f"the file could not be read ({tail[-1] if tail else f'exit {proc.returncode}'})"
    return None if verdict.get("ok") else str(verdict.get("reason"))


UPLOAD_FORM = {
    "type": "object",
    "required": ["file", "session_id"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "A .pth or .pt file, loadable with weights_only"},
        "session_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": RUN_ID_PATTERN},
        "epoch": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
        "metrics": {"type": "string", "description": 'A JSON object, e.g. `{"val_loss": 0.31}`'},
    },
}
"""The upload's form fields, as `upload_checkpoint` reads them."""
_UPLOAD_ERRORS = api_errors(400, 404, 413, 422, *WRITES)
_UPLOAD_ERRORS[503] = {**_UPLOAD_ERRORS[503], "description": "Shutting down, or checking the file needs torch"}


@router.post(
    "/checkpoints",
    status_code=201,
    summary="Upload a .pth checkpoint (multipart: file, session_id, epoch, metrics)",
    response_model=CheckpointUploaded,
    responses=_UPLOAD_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": UPLOAD_FORM}}}},
)
async def upload_checkpoint(request: Request, services: ServicesDep) -> Response:
    limit = services.settings.max_checkpoint_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"upload of {int(declared)} bytes exceeds max_checkpoint_bytes ({limit})")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("send multipart/form-data with fields file, session_id, epoch and metrics")
    async with request.form(max_files=1, max_fields=16) as form:
        upload = form.get("file")
        session_id = form.get("session_id")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("file: a .pth file is required", details=[{"field": "file", "message": "missing"}])
        if not isinstance(session_id, str) or not session_id:
            raise ValidationFailed("session_id: required", details=[{"field": "session_id", "message": "missing"}])
        if not is_valid_run_id(session_id):  # it becomes a directory name below
            raise invalid_field("session_id", f"must be {RUN_ID_RULE}")
        if not (upload.filename or "").endswith((".pth", ".pt")):
            raise ValidationFailed("file: must be a .pth (or .pt) file", details=[{"field": "file", "message": "name"}])
        epoch = _int_field(form.get("epoch"), "epoch")
        metrics = _metrics_field(form.get("metrics"))
        run = await services.training.reader.job(session_id)
        if run is None:
            raise NotFound(f"session {session_id!r} not found")
        checkpoint_id = new_id("ckpt")
        directory = services.settings.runs_path / session_id / "uploads"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{checkpoint_id}.pth"
        size = 0
        try:
            with path.open("wb") as handle:
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(f"upload exceeds max_checkpoint_bytes ({limit})")
                    handle.write(chunk)
            reason = await _check(path)
            if reason is not None:
                raise ValidationFailed(f"file: not a tensor checkpoint loadable with weights_only=True: {reason}")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    name = run.config.get("hyperparams", {}).get("selection_metric", "val_loss")
    value = metrics.get(name)
    await services.store.writer.submit(
        AddCheckpoint(checkpoint_id, session_id, epoch, name if value is not None else None,
                      value if isinstance(value, int | float) else None, metrics, services.settings.artifact_ref(path),
                      size, False, "upload")
    )  # fmt: skip
    uploaded = CheckpointUploaded(
        checkpoint_id=checkpoint_id, file_size_mb=round(size / 1024**2, 3), size_bytes=size,
        uploaded_at=iso(path.stat().st_mtime),
    )  # fmt: skip
    return model_response(uploaded, 201)


def _int_field(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise ValidationFailed(f"{name}: must be an integer", details=[{"field": name, "message": "integer"}]) from None
    if not 0 <= number <= INT64_MAX:  # SQLite binds no bigger integer; checked before the upload is written
        raise invalid_field(name, f"must be between 0 and {INT64_MAX}")
    return number


def _metrics_field(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    try:
        metrics = orjson.loads(str(value))
    except orjson.JSONDecodeError:
        metrics = None
    if not isinstance(metrics, dict):
        raise ValidationFailed(
            "metrics: must be a JSON object string", details=[{"field": "metrics", "message": "json"}]
        )
    try:
        return _METRICS.validate_python(metrics)  # stored as sent, and shown in every listing of the checkpoint
    except ValidationError as exc:
        raise validation_failed(exc, "metrics") from None


async def _checkpoint(services: Any, checkpoint_id: str) -> CheckpointRow:
    row = await services.training.reader.checkpoint(checkpoint_id)
    if row is None:
        raise NotFound(f"checkpoint {checkpoint_id!r} not found")
    return row


@router.get(
    "/checkpoints/{checkpoint_id}/download",
    summary="The checkpoint file, streamed",
    response_class=FileResponse,
    responses={200: FILE, **api_errors(404, 422)},
)
async def download_checkpoint(checkpoint_id: CheckpointIdPath, services: ServicesDep) -> Response:
    row = await _checkpoint(services, checkpoint_id)
    path = services.settings.artifact_path(row.path)
    if not path.is_file():
        raise NotFound(f"the file of checkpoint {checkpoint_id!r} is gone from disk")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{checkpoint_id}.pth")


@router.delete(
    "/checkpoints/{checkpoint_id}",
    summary="Delete a checkpoint and its file",
    response_model=CheckpointDeleted,
    responses=api_errors(404, 422, *WRITES),
)
async def delete_checkpoint(checkpoint_id: CheckpointIdPath, services: ServicesDep) -> Response:
    path = await services.store.writer.submit(DeleteCheckpoint(checkpoint_id))
    with contextlib.suppress(FileNotFoundError):
        services.settings.artifact_path(path).unlink()
    return model_response(CheckpointDeleted(message="Checkpoint deleted successfully", checkpoint_id=checkpoint_id))
