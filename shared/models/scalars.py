"""Scalar points `(run_id, name, step)`: what loss curves plot."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.models.storable import INT64_MAX

MAX_TIMESTAMP = 253_402_300_799
"""Unix seconds of 9999-12-31T23:59:59Z: the last instant the routes that show a point's time can write."""
ScalarName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_./:-]+$")]


class ScalarPoint(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    step: Annotated[int, Field(ge=0, le=INT64_MAX)]
    epoch: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None
    timestamp: Annotated[float, Field(ge=0, le=MAX_TIMESTAMP)] | None = None
    # Keys outside the name pattern are refused: the document says so beside `patternProperties`.
    values: dict[ScalarName, float] = Field(min_length=1, json_schema_extra={"additionalProperties": False})


class ScalarBatch(BaseModel):
    """Object form of the scalar route's body; the bare-array form is `list[ScalarPoint]`."""

    model_config = ConfigDict(allow_inf_nan=False)
    points: list[ScalarPoint] = Field(min_length=1)
    experiment_id: Annotated[str, Field(max_length=128)] | None = None
    group: Annotated[str, Field(max_length=256)] | None = None
    tags: list[Annotated[str, Field(max_length=128)]] | None = None


class ScalarsAccepted(BaseModel):
    status: str = "accepted"
    run_id: str
    points: int


class ScalarSeries(BaseModel):
    steps: list[int]
    values: list[float]
    timestamps: list[float | None]


class ScalarsResponse(BaseModel):
    run_id: str
    series: dict[str, ScalarSeries]
    downsampled: bool = False
