"""The layer-wise metrics payload and its stored Step."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import (
    Annotated,
    Any,
    NotRequired,  # pydantic needs these on Python < 3.12
)

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator, with_config
from typing_extensions import TypedDict

from shared.models.storable import INT64_MAX, storable

# A run id names a directory (`<data_dir>/runs/<run_id>/`), so `.` and `..` (the runs directory and the data
# directory themselves) are refused. Written without look-around, which pydantic's regex engine lacks, so the
# OpenAPI document publishes the rule itself: up to two dots and another character, or three dots, then anything.
RUN_ID_PATTERN = r"^(?:\.{0,2}[A-Za-z0-9_-]|\.{3})[A-Za-z0-9_.-]*$"
RUN_ID_RULE = "1..128 letters, digits, '_', '.' or '-', and not '.' or '..'"
_RUN_ID = re.compile(RUN_ID_PATTERN)
RunId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=RUN_ID_PATTERN, description=f"Run identifier: {RUN_ID_RULE}")
]

# Every number on the wire must be finite: NaN/Infinity are rejected (rule 1 of the contract).
_FINITE = ConfigDict(allow_inf_nan=False)
# Standard deviations, norms and magnitudes are never negative; the layer-wise reference server refuses a negative one.
NonNegative = Annotated[float, Field(ge=0)]


def is_valid_run_id(run_id: str) -> bool:
    return 0 < len(run_id) <= 128 and _RUN_ID.fullmatch(run_id) is not None


def normalise_layer_id(layer_id: str) -> str:
    """Dots become slashes so `encoder.linear1` and `encoder/linear1` name the same layer."""
    return layer_id.replace(".", "/")


# The per-layer parts are validated TypedDicts rather than models: pydantic checks them in Rust
# without building an object per field group, which makes a 50-layer payload validate 2.7x faster
# (docs/performance.md). Scripts build them as plain dicts anyway.


@with_config(_FINITE)
class IntermediateFeatures(TypedDict):
    activation_std: NonNegative
    activation_mean: float
    activation_shape: Annotated[list[Annotated[int, Field(ge=0, le=INT64_MAX)]], Field(min_length=2)]
    cross_layer_std_ratio: NotRequired[NonNegative | None]


@with_config(_FINITE)
class GradientFlow(TypedDict):
    gradient_l2_norm: NonNegative
    gradient_std: NonNegative
    gradient_max_abs: NonNegative


@with_config(_FINITE)
class WeightStatistics(TypedDict):
    std: NonNegative
    mean: float
    spectral_norm: NonNegative
    frobenius_norm: NonNegative


@with_config(_FINITE)
class BiasStatistics(TypedDict):
    std: NonNegative
    mean_abs: NonNegative


@with_config(_FINITE)
class ParameterStatistics(TypedDict):
    weight: WeightStatistics
    bias: NotRequired[BiasStatistics | None]
    """Layers without bias omit it (a null is accepted and dropped)."""


@with_config(_FINITE)
class LayerStatistic(TypedDict):
    layer_id: Annotated[str, Field(min_length=1, max_length=256)]
    """Dots are normalised to `/` on ingest."""
    layer_type: Annotated[str, Field(min_length=1, max_length=128)]
    depth_index: Annotated[int, Field(ge=0, le=INT64_MAX)]
    intermediate_features: IntermediateFeatures
    gradient_flow: GradientFlow
    parameter_statistics: ParameterStatistics


@with_config(_FINITE)
class CrossLayerAnalysis(TypedDict):
    feature_std_gradient: float
    gradient_norm_ratio: dict[str, float]


class Metadata(BaseModel):
    """Step metadata; unknown extra fields are accepted, and experiment_id/group/tags are kept on the run."""

    model_config = ConfigDict(allow_inf_nan=False, extra="allow")
    run_id: RunId
    timestamp: Annotated[float, Field(gt=0)]
    """Unix seconds; not 0 or less, which the layer-wise reference server refuses as well."""
    global_step: Annotated[int, Field(ge=0, le=INT64_MAX)]
    batch_size: Annotated[int, Field(ge=1, le=INT64_MAX)]
    layer_groups: dict[str, list[str]] | None = None
    experiment_id: Annotated[str, Field(max_length=128)] | None = None
    group: Annotated[str, Field(max_length=256)] | None = None
    tags: list[Annotated[str, Field(max_length=128)]] | None = None

    @model_validator(mode="after")
    def _storable_extras(self) -> Metadata:
        """Extra fields are stored and returned as sent, so they must be JSON the store can hold."""
        for key, value in (self.model_extra or {}).items():
            storable(value, key)
        return self

    @field_validator("layer_groups")
    @classmethod
    def _normalise_groups(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        return normalise_groups(value)


class LayerwisePayload(BaseModel):
    """One monitored training step as a training script POSTs it."""

    model_config = _FINITE
    metadata: Metadata
    layer_statistics: list[LayerStatistic] = Field(min_length=1)
    cross_layer_analysis: CrossLayerAnalysis

    @model_validator(mode="after")
    def _sorted_and_normalised(self) -> LayerwisePayload:
        sort_and_normalise(self.layer_statistics)
        return self

    def to_step(self) -> Step:
        meta = self.metadata
        return Step(
            step=meta.global_step,
            timestamp=meta.timestamp,
            batch_size=meta.batch_size,
            layers=self.layer_statistics,
            cross_layer=self.cross_layer_analysis,
            layer_groups=meta.layer_groups,
        )


def normalise_groups(value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    """`layer_groups` with its layer ids normalised like the layers' own."""
    if value is None or not any("." in layer for layers in value.values() for layer in layers):
        return value
    return {group: [normalise_layer_id(layer) for layer in layers] for group, layers in value.items()}


def sort_and_normalise(layers: list[LayerStatistic]) -> None:
    """The checks and changes of a payload's layers after their fields are valid, in place: sorted by depth (else a
    ValueError naming the first out of order), ids normalised, a null bias dropped. Also run by the daemon's
    msgspec decoder of the same payload (`pivotd.layerwise_decoder`), so both paths store the same step."""
    previous_depth, previous_id = -1, ""
    for index, layer in enumerate(layers):
        depth, layer_id = layer["depth_index"], layer["layer_id"]
        if depth < previous_depth:
            raise ValueError(
                f"layer_statistics[{index}].depth_index: layers must be sorted by depth_index, but layer "
                f"{layer_id!r} (depth_index {depth}) comes after {previous_id!r} (depth_index {previous_depth})"
            )
        previous_depth, previous_id = depth, layer_id
        if "." in layer_id:
            layer["layer_id"] = normalise_layer_id(layer_id)
        parameters = layer["parameter_statistics"]
        if "bias" in parameters and parameters["bias"] is None:
            del parameters["bias"]


class Step(BaseModel):
    """A stored step as `GET /api/v1/runs/{id}`, `/latest` and the `new_metrics` message return it."""

    step: int
    timestamp: float
    batch_size: int
    layers: list[LayerStatistic]
    cross_layer: CrossLayerAnalysis
    layer_groups: dict[str, list[str]] | None = None


class LiteLayer(TypedDict):
    """A layer of a `lite` step: identity plus the health signals the layer views draw."""

    layer_id: str
    layer_type: str
    depth_index: int
    activation_std: float
    cross_layer_std_ratio: float | None
    gradient_l2_norm: float
    gradient_max_abs: float
    spectral_norm: float | None


def lite_layer(layer: Mapping[str, Any]) -> LiteLayer:
    """A stored layer (`LayerStatistic`, validated or as decoded JSON) as a lite history carries it: the one
    projection, used by the daemon's `lite=true` and by clients reducing the live full steps they receive."""
    features, gradients = layer["intermediate_features"], layer["gradient_flow"]
    return {
        "layer_id": layer["layer_id"],
        "layer_type": layer["layer_type"],
        "depth_index": layer["depth_index"],
        "activation_std": features["activation_std"],
        "cross_layer_std_ratio": features.get("cross_layer_std_ratio"),
        "gradient_l2_norm": gradients["gradient_l2_norm"],
        "gradient_max_abs": gradients["gradient_max_abs"],
        "spectral_norm": layer["parameter_statistics"]["weight"]["spectral_norm"],
    }


class LiteStep(BaseModel):
    """A step of a `lite=true` history (`GET /api/v1/runs/{id}?lite=true`, `run_history` with `lite`)."""

    step: int
    timestamp: float
    layers: list[LiteLayer]
    layer_groups: dict[str, list[str]] | None = None

    @classmethod
    def of(cls, step: Step) -> LiteStep:
        return cls.model_construct(
            step=step.step,
            timestamp=step.timestamp,
            layers=[lite_layer(layer) for layer in step.layers],
            layer_groups=step.layer_groups,
        )
