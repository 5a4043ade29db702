"""Dependencies shared by routes, as `Annotated` aliases so signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pivotd.services import Services


async def get_services(request: Request) -> Services:
    # async: a plain def dependency would be run in a worker thread on every request.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
