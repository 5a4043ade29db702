"""Model architecture and hyperparameters (the registry's and inline training's, plus pivotd's extras),
checked without torch, and the training sessions' words for a status.

`check_architecture` walks the layers with the shape each one receives and raises `ArchitectureError`
naming the first layer that does not fit, so a client sees "layers[7] (linear): expects 3136 inputs ..."
before anything is trained. The daemon and the trainer both call it: one rule set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.models.runs import RunState, states_shown_as

DEFAULT_MAX_LINEAR = 5  # the registry's documented "Max layers: 5 linear layers"
Padding = Annotated[int, Field(ge=0, le=64)] | Literal["same"]
Size = Annotated[int, Field(ge=1, le=1_000_000)]
Kernel = Annotated[int, Field(ge=1, le=64)]


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Linear(_Layer):
    type: Literal["linear"]
    in_features: Size = Field(alias="in")
    out_features: Size = Field(alias="out")


class Conv2d(_Layer):
    type: Literal["conv2d"]
    in_channels: Annotated[int, Field(ge=1, le=65_536)]
    out_channels: Annotated[int, Field(ge=1, le=65_536)]
    kernel_size: Kernel
    stride: Kernel = 1
    padding: Padding = 0


class MaxPool2d(_Layer):
    type: Literal["maxpool2d"]
    kernel_size: Kernel
    stride: Kernel | None = None
    """Defaults to `kernel_size`, as in PyTorch."""
    padding: Annotated[int, Field(ge=0, le=32)] = 0


class Dropout(_Layer):
    type: Literal["dropout"]
    p: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5


class Parameterless(_Layer):
    type: Literal["flatten", "relu", "sigmoid", "tanh", "softmax"]


Layer = Annotated[Linear | Conv2d | MaxPool2d | Dropout | Parameterless, Field(discriminator="type")]
LAYER_TYPES = ("linear", "conv2d", "maxpool2d", "flatten", "dropout", "relu", "sigmoid", "tanh", "softmax")


class Architecture(BaseModel):
    """An MLP (`input_size` + layers) or a CNN (input channels, height and width)."""

    model_config = ConfigDict(extra="forbid")

    input_size: Size | None = None
    input_channels: Annotated[int, Field(ge=1, le=64)] | None = None
    input_height: Annotated[int, Field(ge=1, le=4096)] | None = None
    input_width: Annotated[int, Field(ge=1, le=4096)] | None = None
    layers: list[Layer] = Field(min_length=1, max_length=256)

    @field_validator("layers", mode="before")
    @classmethod
    def _known_types(cls, layers: Any) -> Any:
        # A clearer message than the discriminator's for the most common mistake.
        if isinstance(layers, list):
            for index, layer in enumerate(layers):
                kind = layer.get("type") if isinstance(layer, dict) else None
                if kind not in LAYER_TYPES:
                    raise ValueError(f"layers[{index}]: unknown layer type {kind!r}; one of {', '.join(LAYER_TYPES)}")
        return layers

    @model_validator(mode="after")
    def _input_shape_given(self) -> Architecture:
        spatial = (self.input_channels, self.input_height, self.input_width)
        if any(v is not None for v in spatial) and not all(v is not None for v in spatial):
            raise ValueError("input_channels, input_height and input_width go together; give all three or none")
        if self.input_size is None and self.input_channels is None:
            raise ValueError("input_size: give input_size, or input_channels, input_height and input_width")
        if self.input_size is not None and self.input_channels is not None:
            c, h, w = spatial  # type: ignore[misc]
            if self.input_size != c * h * w:
                raise ValueError(f"input_size: {self.input_size} is not input_channels*input_height*input_width")
        return self

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) when spatial sizes are given, else (input_size,): what the model reshapes its input to."""
        if self.input_channels is not None:
            return (self.input_channels, self.input_height or 0, self.input_width or 0)
        return (self.input_size or 0,)

    @property
    def input_features(self) -> int:
        size = 1
        for dim in self.input_shape:
            size *= dim
        return size

    def wire(self) -> dict[str, Any]:
        """The JSON form clients sent (`in`/`out` for linear layers, no unset fields)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class ArchitectureError(ValueError):
    """The layers do not chain; the message starts with `layers[i]` of the first offender."""


@dataclass(frozen=True, slots=True)
class Shape:
    dims: tuple[int, ...]

    @property
    def spatial(self) -> bool:
        return len(self.dims) == 3

    def __str__(self) -> str:
        return " x ".join(str(d) for d in self.dims)


def _pooled(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def check_architecture(arch: Architecture, classes: int = 10, max_linear: int = DEFAULT_MAX_LINEAR) -> list[Shape]:
    """Every layer's output shape; raises `ArchitectureError` at the first layer that does not fit."""
    shape = Shape(arch.input_shape)
    shapes: list[Shape] = []
    linear = 0
    last = len(arch.layers) - 1
    for index, layer in enumerate(arch.layers):
        where = f"layers[{index}] ({layer.type})"

        def fail(message: str, where: str = where) -> ArchitectureError:
            return ArchitectureError(f"{where}: {message}")

        if isinstance(layer, Linear):
            linear += 1
            if linear > max_linear:
                raise fail(f"more than {max_linear} linear layers (the limit is max_linear_layers)")
            if shape.spatial:
                raise fail(f"gets a {shape} input; add a flatten layer before it")
            if layer.in_features != shape.dims[0]:
                raise fail(f"expects {layer.in_features} inputs but the previous layer gives {shape.dims[0]}")
            shape = Shape((layer.out_features,))
        elif isinstance(layer, Conv2d | MaxPool2d):
            if not shape.spatial:
                raise fail(
                    f"needs a channels x height x width input but gets {shape}; "
                    "give input_channels, input_height and input_width, and no flatten before it"
                )
            c, h, w = shape.dims
            if isinstance(layer, Conv2d):
                if layer.in_channels != c:
                    raise fail(f"in_channels is {layer.in_channels} but the input has {c} channels")
                if layer.padding == "same":
                    if layer.stride != 1:
                        raise fail('padding "same" needs stride 1')
                    oh, ow = h, w
                else:
                    oh = _pooled(h, layer.kernel_size, layer.stride, layer.padding)
                    ow = _pooled(w, layer.kernel_size, layer.stride, layer.padding)
                c = layer.out_channels
            else:
                if layer.padding * 2 > layer.kernel_size:
                    raise fail("padding must be at most half of kernel_size")
                stride = layer.stride or layer.kernel_size
                oh = _pooled(h, layer.kernel_size, stride, layer.padding)
                ow = _pooled(w, layer.kernel_size, stride, layer.padding)
            if oh < 1 or ow < 1:
                raise fail(f"kernel_size {layer.kernel_size} does not fit the {h} x {w} input")
            shape = Shape((c, oh, ow))
        elif layer.type == "flatten":
            features = 1
            for dim in shape.dims:
                features *= dim
            shape = Shape((features,))
        elif layer.type == "softmax" and index != last:
            raise fail("softmax is allowed only as the last layer")
        shapes.append(shape)
    if not any(isinstance(layer, Linear | Conv2d) for layer in arch.layers):
        raise ArchitectureError("layers: at least one linear or conv2d layer is needed to train anything")
    if shape.spatial or shape.dims[0] != classes:
        raise ArchitectureError(
            f"layers[{last}] ({arch.layers[last].type}): the model outputs {shape} values "
            f"but the dataset has {classes} classes"
        )
    return shapes


# ---- hyperparameters ---------------------------------------------------------------------------------------

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")


class Optimizer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """SGD only."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0


class LrSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["none", "step", "cosine"] = "none"
    step_size: Annotated[int, Field(ge=1)] = 1
    """Epochs between decays (`step`)."""
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Decay factor (`step`)."""


class Hyperparams(BaseModel):
    """The registry's fields plus optimizer choice, schedule, dataset, device and reporting intervals."""

    model_config = ConfigDict(extra="forbid")

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 5
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    optimizer: Optimizer = Field(default_factory=Optimizer)
    loss: Literal["cross_entropy"] = "cross_entropy"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = 42
    train_split: Annotated[float, Field(gt=0, lt=1)] = 0.9
    shuffle: bool = True
    max_samples: Annotated[int, Field(ge=10)] | None = None
    dataset: Literal["auto", "mnist", "digits"] = "auto"
    """`mnist`: IDX files in the data dir; `digits`: 5,000 real MNIST digits shipped with pivotd; `auto`: mnist if
    its files are present, else digits."""
    device: Annotated[str, Field(json_schema_extra={"pattern": _DEVICE.pattern})] = "auto"
    """`auto` (first CUDA device, else CPU), `cpu`, `cuda` or `cuda:N`. The pattern is stated in the schema (the
    fuzz sent `device` strings the schema allowed); `_device` checks it, with a message that names the choices."""
    lr_schedule: LrSchedule = Field(default_factory=LrSchedule)
    checkpoint_every: Annotated[int, Field(ge=0)] = 1
    """Save a checkpoint every N epochs (0: never); the best by `selection_metric` is flagged."""
    layerwise_every: Annotated[int, Field(ge=0)] = 10
    """Post layer-wise statistics every N steps (0: never); with `layerwise_overhead`, the shortest stride."""
    layerwise_overhead: Annotated[float, Field(gt=0, lt=1)] | None = 0.03
    """Budget for layer-wise statistics as a fraction of the training thread's time: multiples of `layerwise_every`
    are skipped while a monitored step would cost more (a snapshot at least every 2 s); null: every N exactly."""
    selection_metric: Literal["val_loss", "val_accuracy"] = "val_loss"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value


class TrainingConfig(BaseModel):
    """A session config (file or inline): an architecture, or the id of a stored model, plus hyperparams."""

    model_config = ConfigDict(extra="forbid")
    architecture: Architecture | None = None
    model_id: str | None = None
    hyperparams: Hyperparams | None = None

    @model_validator(mode="after")
    def _one_model(self) -> TrainingConfig:
        if (self.architecture is None) == (self.model_id is None):
            raise ValueError("config: give exactly one of architecture or model_id")
        return self


# ---- session status -------------------------------------------------------------------------------------


class SessionStatus(StrEnum):
    """A training session's status in the sessions' closed vocabulary (`/api/v1/training/sessions...`)."""

    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    COMPLETED = "completed"
    FAILED = "failed"


SESSION_STATUS: Mapping[RunState, SessionStatus] = MappingProxyType(
    {
        RunState.CREATED: SessionStatus.CREATED,
        RunState.QUEUED: SessionStatus.CREATED,
        RunState.RUNNING: SessionStatus.RUNNING,
        RunState.CANCELLED: SessionStatus.STOPPED,
        RunState.SUCCEEDED: SessionStatus.COMPLETED,
        RunState.FAILED: SessionStatus.FAILED,
        RunState.LOST: SessionStatus.FAILED,
    }
)
"""The one mapping from a run's state (`RunState`, pivotd's words) to a session's. A session is a
managed run: queued shows as `created` (sessions have no queue), cancelled as `stopped`, succeeded as `completed`.
Sessions have no `lost` (only external runs get lost): it shows as `failed`, and the session's `error` says why."""

SESSION_RUN_STATES = states_shown_as(SESSION_STATUS, SessionStatus)
"""The inverse: the run states a session status stands for (what `?status=` filters on)."""

FINAL_SESSION_STATUSES = frozenset({SessionStatus.STOPPED, SessionStatus.COMPLETED, SessionStatus.FAILED})
"""Statuses a session ends in; after one, its streams close."""
