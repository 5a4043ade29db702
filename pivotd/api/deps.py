"""Dependencies shared by routes, as `Annotated` aliases so signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from pivotd.services import Services
from shared.models.layerwise import RUN_ID_PATTERN, RUN_ID_RULE


async def get_services(request: Request) -> Services:
    # async: a plain def dependency would be run in a worker thread on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
RunIdPath = Annotated[
    str, Path(min_length=1, max_length=128, pattern=RUN_ID_PATTERN, description=f"Run identifier: {RUN_ID_RULE}")
]
"""A run id in a path (a training session's id is one too): refused with a 422 unless a run could have it."""
