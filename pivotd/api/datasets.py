"""`GET /api/v1/datasets/digits/samples`: real images from the shipped digits, scaled as training scales them.

For trying a trained model on a real input (`POST /api/infer` with the `pixels`), from the TUI or a
shell, without MNIST files at hand. Read with numpy alone, so the daemon still never imports torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Response

from pivotd.api.responses import api_errors, model_response
from pivotd.errors import ValidationFailed
from shared.models.datasets import DigitSample, DigitSamples

router = APIRouter(prefix="/api/v1", tags=["datasets"])
DIGITS = Path(__file__).parent.parent / "training" / "data" / "digits5k.npz"


DIGIT_COUNT = 5_000
"""Images in the shipped file: the bound the document gives `offset` (the route checks the file's own count)."""


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DIGITS) as archive:
        return archive["images"], archive["labels"]


@router.get(
    "/datasets/digits/samples",
    summary="Images of the shipped digits dataset, pixels in [0, 1]",
    response_model=DigitSamples,
    responses=api_errors(422),
)
async def digit_samples(
    count: Annotated[int, Query(ge=1, le=64)] = 1,
    offset: Annotated[int, Query(ge=0, json_schema_extra={"maximum": DIGIT_COUNT - 1})] = 0,
) -> Response:
    images, labels = _digits()
    if offset >= len(images):
        raise ValidationFailed(
            f"offset: must be below {len(images)}", details=[{"field": "offset", "message": "out of range"}]
        )
    chosen = range(offset, min(len(images), offset + count))
    samples = [
        DigitSample(index=i, label=int(labels[i]), pixels=(images[i].reshape(-1) / 255.0).round(4).tolist())
        for i in chosen
    ]
    return model_response(DigitSamples(size=len(images), samples=samples))
