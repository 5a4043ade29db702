"""`GET /health` (seed 000): liveness and open WebSocket connections; `GET /api/v1/health` (seed 002):
components, system load and uptime."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

from fastapi import APIRouter, Response
from pydantic import BaseModel

from pivotd.api.deps import ServicesDep
from pivotd.api.responses import json_response
from pivotd.services import Services
from pivotd.timefmt import iso
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


async def _database(services: Services) -> str:
    if not services.store.writer.alive:
        return "unhealthy"
    try:
        await asyncio.wait_for(services.store.reader.ping(), 2)
    except (TimeoutError, OSError, sqlite3.Error):
        return "unhealthy"
    return "healthy"


def _filesystem(services: Services, disk_percent: float | None) -> str:
    if not os.access(services.settings.data_dir, os.W_OK) or services.store.writer.disk_full_since is not None:
        return "unhealthy"
    return "degraded" if disk_percent is not None and disk_percent >= 95 else "healthy"


@router.get(
    "/api/v1/health",
    summary="Rich health (seed 002): components, system load, uptime",
    description="`status` is `healthy`, `degraded` (a component degraded, e.g. disk over 95%) or "
    "`unhealthy` (503). `components.gpu` is `unavailable` on a machine without NVML or GPU.",
)
async def rich_health(services: ServicesDep) -> Response:
    sample = services.monitor.latest or await services.monitor.sample_now()
    disk = sample.get("disk", {}).get("percent")
    components = {
        "database": await _database(services),
        "filesystem": _filesystem(services, disk),
        "gpu": "healthy" if sample.get("gpu") else "unavailable",
    }
    states = set(components.values())
    status = "unhealthy" if "unhealthy" in states else "degraded" if "degraded" in states else "healthy"
    now = time.time()
    body = {
        "status": status,
        "timestamp": iso(now),
        "uptime_seconds": round(now - services.started_at, 1),
        "version": __version__,
        "system": {
            "cpu_percent": sample.get("cpu", {}).get("percent"),
            "memory_percent": sample.get("memory", {}).get("percent"),
            "disk_percent": disk,
            "gpu_count": len(sample.get("gpu", [])),
        },
        "components": components,
        "active_connections": services.hub.connection_count,
        "open_alerts": len(services.alerts.open_alerts()),
    }
    return json_response(body, status_code=503 if status == "unhealthy" else 200)
