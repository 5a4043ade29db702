"""Samples of the datasets pivotd ships, for trying a trained model on a real input."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DigitSample(BaseModel):
    index: int = Field(ge=0)
    label: int = Field(ge=0, le=9)
    pixels: list[float] = Field(description="784 values in [0, 1], row by row, as training scales them")


class DigitSamples(BaseModel):
    """`GET /api/v1/datasets/digits/samples`."""

    dataset: Literal["digits"] = "digits"
    size: int = Field(ge=0, description="Images in the dataset")
    samples: list[DigitSample]
