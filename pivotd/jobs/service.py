"""Training use cases shared by the model, training-session and run routes: define models, start, cancel and
describe runs.

Routes translate their API's shapes and words; the rules (validation, the 409s, what a run looks like)
live here once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pivotd.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
    invalid_field,
    validation_failed,
)
from pivotd.ids import new_id
from pivotd.jobs.supervisor import Supervisor
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.training import (
    ACTIVE_STATES,
    CreateJob,
    JobRow,
    ModelRow,
    ParamsRow,
    PutModel,
    TrainingReader,
)
from shared.models.runs import RunState
from shared.models.training import (
    Architecture,
    ArchitectureError,
    Hyperparams,
    TrainingConfig,
    check_architecture,
)

_M = TypeVar("_M", bound=BaseModel)
CLASSES = 10  # both datasets are MNIST digits
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")


class InvalidDefinition(BadRequest):
    """Architecture or hyperparameters that cannot be trained (the model API answers 400 on invalid dimensions)."""


def _parse(model: type[_M], value: Any, prefix: str) -> _M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = validation_failed(exc, prefix, model)
        raise InvalidDefinition(error.message, details=error.details) from None


class Training:
    def __init__(self, settings: Settings, store: Store, supervisor: Supervisor) -> None:
        self.settings = settings
        self.store = store
        self.supervisor = supervisor
        self.reader: TrainingReader = supervisor.reader

    # -- definitions ----------------------------------------------------------------------------------------

    def architecture(self, value: Any) -> Architecture:
        arch = _parse(Architecture, value, "architecture")
        try:
            check_architecture(arch, CLASSES, self.settings.max_linear_layers)
        except ArchitectureError as exc:
            raise InvalidDefinition(f"architecture.{exc}") from None
        return arch

    def hyperparams(self, value: Any) -> Hyperparams:
        return _parse(Hyperparams, {} if value is None else value, "hyperparams")

    async def get_model(self, model_id: str) -> ModelRow:
        model = await self.reader.model(model_id)
        if model is None:
            raise NotFound(f"model {model_id!r} not found")
        return model

    async def put_model(self, model_id: str | None, values: dict[str, Any]) -> tuple[ModelRow, bool]:
        """Create (no id, or an unknown one) or update the given fields. Validates what it stores."""
        if values.get("architecture") is not None:
            values["architecture"] = self.architecture(values["architecture"]).wire()
        if values.get("hyperparams") is not None:
            values["hyperparams"] = self.hyperparams(values["hyperparams"]).model_dump()
        result: tuple[ModelRow, bool] = await self.store.writer.submit(PutModel(model_id or new_id("m"), values))
        return result

    # -- runs -----------------------------------------------------------------------------------------------

    async def create_run(
        self,
        arch: Architecture,
        hp: Hyperparams,
        *,
        model_id: str,
        queue: bool,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> str:
        refusal = await asyncio.to_thread(self.supervisor.device_refusal, hp.device)
        if refusal is not None and refusal.absent:
            raise invalid_field("hyperparams.device", f"{hp.device!r}: {refusal.reason}")
        if refusal is not None:
            raise Conflict(f"hyperparams.device {hp.device!r}: {refusal.reason}")
        run_id = new_id("r")
        config = {"architecture": arch.wire(), "hyperparams": hp.model_dump()}
        status = RunState.QUEUED if queue else RunState.CREATED
        await self.store.writer.submit(CreateJob(run_id, status, config, hp.epochs, model_id, name, tags or []))
        if queue:
            await self.supervisor.dispatch()
        return run_id

    async def train_inline(self, architecture: Any, hyperparams: Any) -> tuple[str, str]:
        """The model API's POST /api/train: 409 while every training slot is taken, or claimed by runs queued ahead
        (runs that a paused sweep holds back claim nothing)."""
        arch, hp = self.architecture(architecture), self.hyperparams(hyperparams)
        running, queued = await self.reader.slot_demand()
        if running + queued >= self.supervisor.slots:
            raise Conflict(
                f"a training run is already active ({running} running and {queued} queued for "
                f"{self.supervisor.slots} slot(s)); POST /api/models/{{model_id}}/train queues a run instead"
            )
        model, _ = await self.put_model(None, {"architecture": arch.wire(), "hyperparams": hp.model_dump()})
        run_id = await self.create_run(arch, hp, model_id=model.model_id, queue=True)
        return model.model_id, run_id

    async def train_model(self, model_id: str, hyperparams: Any, *, queue: bool = True, **extra: Any) -> str:
        """The model API's POST /models/{id}/train: 409 when an active run of the model has other hyperparameters."""
        model = await self.get_model(model_id)
        if model.architecture is None:
            raise Conflict(f"model {model_id!r} has no architecture to train")
        arch = self.architecture(model.architecture)
        hp = self.hyperparams(hyperparams if hyperparams is not None else model.hyperparams)
        for run in await self.reader.jobs(model_id=model_id, statuses=ACTIVE_STATES):
            if run.config.get("hyperparams") != hp.model_dump():
                raise Conflict(
                    f"model {model_id!r} already has run {run.run_id} {run.status} with different hyperparameters"
                )
        return await self.create_run(arch, hp, model_id=model_id, queue=queue, **extra)

    async def get_run(self, run_id: str) -> JobRow:
        run = await self.reader.job(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        return run

    async def cancel(self, run_id: str, wait: bool = False) -> JobRow:
        run = await self.get_run(run_id)
        if run.status not in (RunState.CREATED, *ACTIVE_STATES):
            raise Conflict(f"run {run_id!r} is {run.status}; only queued or running runs can be cancelled")
        await self.supervisor.cancel(run_id, wait=wait)
        return await self.get_run(run_id)

    async def epoch_records(self, run: JobRow, names: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """One record per finished epoch: `{epoch, timestamp, train_loss, ...}` (the training sessions' Metrics)."""
        records: dict[int, dict[str, Any]] = {}
        for name, epoch, value, timestamp in await self.reader.epoch_metrics(run.ref, names):
            record = records.setdefault(epoch, {"epoch": epoch, "timestamp": timestamp})
            record[name] = value
        return [records[epoch] for epoch in sorted(records)]

    async def latest_metrics(self, run: JobRow) -> dict[str, float]:
        records = await self.epoch_records(run, EPOCH_METRICS)
        if not records:
            return {}
        return {k: v for k, v in records[-1].items() if k in EPOCH_METRICS}

    async def managed_fields(self, run_id: str) -> dict[str, Any]:
        """What `GET /api/v1/runs/{id}` adds for a managed run (api-map: progress, hyperparameters, ...)."""
        run = await self.get_run(run_id)
        total = run.epochs_total or 0
        checkpoints = await self.reader.checkpoints(run_id)
        return {
            "model_id": run.model_id,
            "epoch": run.epoch or 0,
            "epochs_total": total,
            "progress": round((run.epoch or 0) / total, 4) if total else 0.0,
            "hyperparameters": run.config.get("hyperparams"),
            "metrics": await self.latest_metrics(run),
            "param_id": run.param_id,
            "error": run.error,
            "gpus": run.gpus,
            "checkpoints": [
                {"checkpoint_id": c.checkpoint_id, "epoch": c.epoch, "is_best": c.is_best, "size_bytes": c.size_bytes}
                for c in checkpoints
            ],
        }

    async def succeeded_params(self, run_id: str) -> ParamsRow:
        """The params of a finished run: 404 unknown, 409 not (successfully) finished."""
        run = await self.get_run(run_id)
        if run.status != RunState.SUCCEEDED or run.param_id is None:
            raise Conflict(f"run {run_id!r} is {run.status}; inference needs a succeeded run")
        return await self.get_params(run.param_id)

    async def get_params(self, param_id: str) -> ParamsRow:
        params = await self.reader.params(param_id)
        if params is None:
            raise NotFound(f"param {param_id!r} not found")
        if not self.settings.artifact_path(params.path).is_file():
            raise NotFound(f"the weights of param {param_id!r} are gone from disk")
        return params

    async def params_architecture(self, params: ParamsRow) -> Architecture:
        run = await self.reader.job(params.run_id)
        if run is not None:
            return Architecture.model_validate(run.config["architecture"])
        model = await self.reader.model(params.model_id) if params.model_id else None
        if model is None or model.architecture is None:
            raise NotFound(f"the architecture of param {params.param_id!r} is gone")
        return Architecture.model_validate(model.architecture)

    # -- session configs (training sessions) ---------------------------------------------------------------

    def read_config_file(self, config_path: str) -> dict[str, Any]:
        """A YAML or JSON file under `config_dir`; any path leading outside it (.., symlinks) is refused, and so is
        any the OS cannot open (a NUL byte, a name over 255 bytes, a directory, no permission): a 422 each."""
        base = self.settings.config_dir.resolve()
        try:
            target = (base / config_path).resolve()
            if not target.is_relative_to(base):
                raise invalid_field("config_path", "must name a file inside the daemon's config directory")
            if not target.is_file():
                raise invalid_field("config_path", f"no file {config_path!r} in the config directory")
            text = target.read_text()
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte, or text that is not UTF-8
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise invalid_field("config_path", f"cannot read {config_path!r}: {reason}") from None
        try:
            document = yaml.safe_load(text)  # YAML is a superset of JSON
        except (yaml.YAMLError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise invalid_field("config_path", f"{config_path!r} is not YAML or JSON: {reason}") from None
        if not isinstance(document, dict):
            raise invalid_field("config_path", f"{config_path!r} must hold a mapping with architecture/hyperparams")
        return document

    async def create_session(self, config: Any, config_path: str | None, name: str | None, tags: list[str]) -> str:
        if (config is None) == (config_path is None):
            raise ValidationFailed("give exactly one of config_path or config")
        # Off the event loop: a large or deeply nested file takes seconds to parse, and every request would wait.
        document = await asyncio.to_thread(self.read_config_file, config_path) if config_path is not None else config
        parsed = _parse(TrainingConfig, document, "config")
        if parsed.model_id is not None:
            return await self.train_model(
                parsed.model_id,
                None if parsed.hyperparams is None else parsed.hyperparams.model_dump(),
                queue=False,
                name=name,
                tags=tags,
            )
        arch = self.architecture(document["architecture"])
        hp = parsed.hyperparams or Hyperparams()
        model, _ = await self.put_model(
            None, {"architecture": arch.wire(), "hyperparams": hp.model_dump(), "name": name}
        )
        return await self.create_run(arch, hp, model_id=model.model_id, queue=False, name=name, tags=tags)

    async def start_session(self, run_id: str) -> JobRow:
        run = await self.get_run(run_id)
        if run.status != RunState.CREATED:
            raise Conflict(f"session {run_id!r} is already {run.status}")
        await self.supervisor.enqueue(run_id)
        return await self.get_run(run_id)


async def read_params_layout(path: Path, arch: Architecture) -> dict[str, Any]:
    """The model API's parameter JSON from a safetensors file; read with numpy, so the daemon never imports torch."""

    def read() -> dict[str, Any]:
        try:
            from safetensors.numpy import load_file  # noqa: PLC0415 - only with the `train` extra
        except ImportError:
            raise ServiceUnavailable("reading parameters needs the train extra (safetensors, numpy)") from None
        tensors = load_file(path)
        layers = []
        for index, layer in enumerate(arch.layers):
            entry: dict[str, Any] = {"type": layer.type}
            for field, suffix in (("W", "weight"), ("b", "bias")):
                tensor = tensors.get(f"layers.{index}.{suffix}")
                if tensor is not None:
                    entry[field] = tensor.tolist()
            layers.append(entry)
        return {"layers": layers, "dtype": "float32", "layout": "row_major"}

    return await asyncio.to_thread(read)
