"""The model registry and its training runs: `/api/...` (the simple envelope) and
`/api/v1/models` (`{"data", "meta"}`), one table shown two ways.

`/api/...` runs show their state in pivotd's own words (`RunState`); `/api/v1/models` have a `ModelStatus`.
Timestamps are ISO 8601 strings. The request bodies of `/api/...` are documented here and checked by the routes
(`pivotd.api.models`), whose 400s and 422s name the field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.models.runs import RunGpu, RunState
from shared.models.training import Architecture, Hyperparams

# ---- `/api/...` ------------------------------------------------------------------------------------------------


class ManagedRun(BaseModel):
    """A registry run (`state`, `epoch`, `metrics`, `param_id` once succeeded) plus timestamps and `error`."""

    run_id: str
    model_id: str | None
    state: RunState
    epoch: int
    epochs_total: int | None
    metrics: dict[str, float | None] = Field(
        description="The last finished epoch's train_loss, train_accuracy, val_loss, val_accuracy"
    )
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    events_url: str
    param_id: str | None = Field(default=None, description="Present once the run has succeeded")
    gpus: list[RunGpu] = Field(
        default_factory=list, description="The GPUs its worker was pinned to, as of its last start ([]: none)"
    )


class ModelSummary(BaseModel):
    """A model summary, which also carries `model_id, architecture, hyperparams, created_at`."""

    model_id: str
    name: str | None
    description: str | None
    architecture: dict[str, Any] | None
    hyperparams: dict[str, Any] | None
    created_at: str
    updated_at: str
    trained: bool
    saved_model_path: str | None
    saved_model_exists: bool
    last_trained_at: str | None
    runs_total: int
    latest_run: ManagedRun | None = Field(description="The latest succeeded run")


class ModelDetail(ModelSummary):
    """`GET /api/models/{model_id}`: the summary with every run of the model."""

    runs: list[ManagedRun]


class ModelSaved(ModelSummary):
    """`POST /api/models/{model_id}/save`; a promoted run adds `run_id` and `param_id`."""

    run_id: str | None = Field(default=None, description="Present when a run was promoted")
    param_id: str | None = Field(default=None, description="Present when a run was promoted")


class TrainQueued(BaseModel):
    """`202` of `POST /api/models/{model_id}/train` and (with `events_url`) of `POST /api/train`."""

    run_id: str
    model_id: str
    status: Literal[RunState.QUEUED]
    events_url: str | None = Field(default=None, description="`POST /api/train` only")


class CancelRequested(BaseModel):
    run_id: str
    state: RunState
    cancel_requested: bool


class ManagedRunPage(BaseModel):
    """`GET /api/models/{model_id}/runs`: newest first; pass `next_cursor` back as `cursor` for the next page."""

    items: list[ManagedRun]
    next_cursor: str | None


class Params(BaseModel):
    """`GET /api/params/{param_id}`: trained parameters as JSON layers (`{"layers": [{type, W, b}, ...]}`)."""

    param_id: str
    model_id: str | None
    run_id: str
    parameters: dict[str, Any]
    size_bytes: int
    created_at: str


class Outputs(BaseModel):
    """What `return` asked for: labels and probabilities by default, logits on request; one row per input."""

    labels: list[int] | None = None
    probabilities: list[list[float]] | None = None
    logits: list[list[float]] | None = None


class PixelInference(BaseModel):
    """The answer to `{run_id, pixels}`: one image's label."""

    run_id: str
    label: int
    probabilities: list[float]
    latency_ms: float


class Inference(BaseModel):
    """The answer to `{param_id, inputs, return}`."""

    model_id: str | None
    param_id: str
    outputs: Outputs
    latency_ms: float


class AdhocInference(BaseModel):
    outputs: Outputs
    latency_ms: float


class ModelDefinition(BaseModel):
    """`POST /api/models`: a definition to create, or to update where `model_id` names a stored model. Other keys
    are ignored."""

    model_id: str | None = Field(default=None, min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    architecture: Architecture | None = None
    hyperparams: Hyperparams | None = None
    trained: bool | None = None
    saved_model_path: str | None = Field(default=None, min_length=1, max_length=4096)


class SaveModel(BaseModel):
    """`POST /api/models/{model_id}/save`: `run_id` promotes that succeeded run of the model; without it, the
    definition's fields are registered under the path's id."""

    run_id: str | None = Field(default=None, min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    architecture: Architecture | None = None
    hyperparams: Hyperparams | None = None


class TrainModel(BaseModel):
    """`POST /api/models/{model_id}/train`: the stored hyperparameters, or these (the body may be left out)."""

    hyperparams: Hyperparams | None = None


class TrainInline(BaseModel):
    """`POST /api/train`: an architecture to store as a new model and train."""

    architecture: Architecture
    hyperparams: Hyperparams | None = None


Tensor = list[float] | list[list[float]] | list[list[list[float]]]
"""One input: flat features, or nested rows (an image's pixels), flattened to the model's input size."""


class Wanted(BaseModel):
    """Which outputs to return."""

    logits: bool = False
    probabilities: bool = True
    labels: bool = True


class PixelInferRequest(BaseModel):
    """`POST /api/infer` with a run's trained parameters: one image."""

    run_id: str = Field(min_length=1, max_length=128)
    pixels: Tensor


class InferRequest(BaseModel):
    """`POST /api/infer` with stored parameters: a batch of inputs."""

    param_id: str = Field(min_length=1, max_length=128)
    inputs: list[Tensor] = Field(min_length=1)
    return_: Wanted | None = Field(default=None, alias="return")


class AdhocInferRequest(BaseModel):
    """`POST /api/infer_adhoc`: a forward pass of `architecture` with `parameters` in `GET /api/params`'s layout."""

    architecture: Architecture
    parameters: dict[str, Any] = Field(description='`{"layers": [{"type", "W", "b"}, ...]}`')
    inputs: list[Tensor] = Field(min_length=1)
    return_: Wanted | None = Field(default=None, alias="return")


# ---- `/api/v1/models` -------------------------------------------------------------------------------------


class ModelStatus(StrEnum):
    """A `/api/v1/models` model's status: `active`, pivotd's derived `untrained` (a PIVOT model without trained
    weights yet), and the two a client retiring a model would set."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    DEPRECATED = "deprecated"
    UNTRAINED = "untrained"


class ModelPublic(BaseModel):
    """A model in the `/api/v1/models` form. For PIVOT's own models (those with an architecture) `provider`, `type` and
    `status` are derived unless a client set them: `pivot`, `cnn`/`mlp`, `active`/`untrained`."""

    id: str
    name: str | None
    description: str | None
    provider: str | None
    type: str | None
    config: dict[str, Any] = Field(description="`architecture` and `hyperparams`, and any other keys as sent")
    status: ModelStatus
    trained: bool
    runs_total: int
    last_trained_at: str | None
    created_at: str
    updated_at: str


ModelPeriod = Literal["1h", "24h", "7d", "30d"]


class ModelStatistics(BaseModel):
    """Inference statistics of a model over `period`, from its `pivot.model.inference` telemetry events."""

    model_id: str
    period: ModelPeriod
    total_requests: int
    success_rate: float | None = Field(description="null without requests")
    avg_latency_ms: float | None
    p99_latency_ms: float | None
    total_tokens: int | float
    error_breakdown: dict[str, int] = Field(description="Failed requests by error code")
