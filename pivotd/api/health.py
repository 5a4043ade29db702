"""`GET /health` (seed 000): liveness plus the number of open WebSocket connections."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from pivotd.api.deps import ServicesDep
from pivotd.api.responses import json_response
from shared import __version__

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    active_connections: int
    version: str


@router.get("/health", response_model=Health, summary="Liveness; always open (no token needed)")
async def health(services: ServicesDep) -> Response:
    healthy = services.store.writer.alive
    return json_response(
        {
            "status": "healthy" if healthy else "unhealthy",
            "active_connections": services.hub.connection_count,
            "version": __version__,
        },
        status_code=200 if healthy else 503,
    )
