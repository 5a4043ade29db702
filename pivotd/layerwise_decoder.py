"""Layer-wise ingest bodies (one step, or the batch route's array) decoded and checked by msgspec, straight from
bytes, for the common payload.

`LayerwisePayload.model_validate_json` takes about 30 us for a 3-layer step and 240 us for a 50-layer one; msgspec
decodes the same body into the same dicts, checking the same constraints as it goes, in about a third of that
(docs/performance.md). This schema mirrors `shared.models.layerwise` and accepts only what pydantic accepts, with
the same result: a body it refuses for any reason (an invalid field, but also what pydantic's lax mode would still
take, such as `1.0` for an integer or a string for a number, or metadata with extra fields) goes to pydantic, which
accepts it or names the error in the usual 422. So the fast path changes no answer; `tests/test_layerwise_decoder.py`
holds the two schemas to that on valid and mutated payloads.

One difference that is not an answer: pydantic writes a layer's keys in the schema's order, msgspec in the order
they were sent. Clients send them in the schema's order (the SDK, the reference client), and JSON objects are
unordered anyway; a step's stored form holds whatever order it came with.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, NotRequired

import msgspec
from msgspec import Meta
from typing_extensions import TypedDict

from shared.models.layerwise import RUN_ID_PATTERN, LayerwisePayload, normalise_groups, sort_and_normalise
from shared.models.storable import INT64_MAX

# JSON floats are finite once decoded: msgspec refuses NaN/Infinity and numbers out of a float's range, as
# `allow_inf_nan=False` does.
_NonNegative = Annotated[float, Meta(ge=0)]
_Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
# msgspec searches the pattern, and `$` would let a trailing newline through: `\Z` is pydantic's `$`.
_RUN_ID = Annotated[str, Meta(min_length=1, max_length=128, pattern=RUN_ID_PATTERN.removesuffix("$") + r"\Z")]


class _IntermediateFeatures(TypedDict):
    activation_std: _NonNegative
    activation_mean: float
    activation_shape: Annotated[list[_Count], Meta(min_length=2)]
    cross_layer_std_ratio: NotRequired[_NonNegative | None]


class _GradientFlow(TypedDict):
    gradient_l2_norm: _NonNegative
    gradient_std: _NonNegative
    gradient_max_abs: _NonNegative


class _WeightStatistics(TypedDict):
    std: _NonNegative
    mean: float
    spectral_norm: _NonNegative
    frobenius_norm: _NonNegative


class _BiasStatistics(TypedDict):
    std: _NonNegative
    mean_abs: _NonNegative


class _ParameterStatistics(TypedDict):
    weight: _WeightStatistics
    bias: NotRequired[_BiasStatistics | None]


class _LayerStatistic(TypedDict):
    layer_id: Annotated[str, Meta(min_length=1, max_length=256)]
    layer_type: Annotated[str, Meta(min_length=1, max_length=128)]
    depth_index: _Count
    intermediate_features: _IntermediateFeatures
    gradient_flow: _GradientFlow
    parameter_statistics: _ParameterStatistics


class _CrossLayerAnalysis(TypedDict):
    feature_std_gradient: float
    gradient_norm_ratio: dict[str, float]


class DecodedMetadata(msgspec.Struct, forbid_unknown_fields=True):
    """`shared.models.layerwise.Metadata` without extra fields (a body with some goes to pydantic)."""

    run_id: _RUN_ID
    timestamp: Annotated[float, Meta(gt=0)]
    global_step: _Count
    batch_size: Annotated[int, Meta(ge=1, le=INT64_MAX)]
    layer_groups: dict[str, list[str]] | None = None
    experiment_id: Annotated[str, Meta(max_length=128)] | None = None
    group: Annotated[str, Meta(max_length=256)] | None = None
    tags: list[Annotated[str, Meta(max_length=128)]] | None = None
    model_extra: ClassVar[None] = None
    """What `Metadata.model_extra` is for a payload without extra fields, to the code that reads either."""


class DecodedPayload(msgspec.Struct):
    """A `LayerwisePayload` as the ingest path reads one: the same attributes, the same layer dicts."""

    metadata: DecodedMetadata
    layer_statistics: Annotated[list[_LayerStatistic], Meta(min_length=1)]
    cross_layer_analysis: _CrossLayerAnalysis


StepPayload = LayerwisePayload | DecodedPayload
"""One validated step, from either path."""

_DECODER = msgspec.json.Decoder(DecodedPayload)
_BATCH_DECODER = msgspec.json.Decoder(list[DecodedPayload])
_REFUSED = (msgspec.ValidationError, msgspec.DecodeError, ValueError, RecursionError)


def decode_step(body: bytes) -> DecodedPayload | None:
    """The payload if msgspec finds it valid and pydantic would read it the same way, else None (ask pydantic)."""
    try:
        return _checked(_DECODER.decode(body))
    except _REFUSED:
        return None


def decode_batch(body: bytes) -> list[DecodedPayload] | None:
    """The batch route's body (a JSON array of payloads) as `decode_step` reads one; None if any item needs
    pydantic, which then decides for the whole batch (and names the item it refuses)."""
    try:
        return [_checked(payload) for payload in _BATCH_DECODER.decode(body)]
    except _REFUSED:
        return None


def _checked(payload: DecodedPayload) -> DecodedPayload:
    """The checks and normalisation the models' validators do after the fields' own (ValueError: refused)."""
    sort_and_normalise(payload.layer_statistics)  # type: ignore[arg-type]  # the same keys and types
    meta = payload.metadata
    if meta.layer_groups:
        meta.layer_groups = normalise_groups(meta.layer_groups)
    return payload
