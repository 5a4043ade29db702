"""`GET /health`: liveness and open WebSocket connections; `GET /api/v1/health`:
components, system load and uptime."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

from fastapi import APIRouter, Response

from pivotd.api.deps import ServicesDep
from pivotd.api.responses import STRUCTURED_ERRORS, error_responses, model_response
from pivotd.services import Services
from pivotd.timefmt import iso
from shared import __version__
from shared.models.monitor import ComponentHealth, Health, HealthDetail, HealthStatus, SystemLoad

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness; always open (no token needed)",
    responses={503: {"model": Health, "description": "The store's writer has stopped: `unhealthy`"}},
)
async def health(services: ServicesDep) -> Response:
    healthy = services.store.writer.alive
    body = Health(
        status=HealthStatus.HEALTHY if healthy else HealthStatus.UNHEALTHY,
        active_connections=services.hub.connection_count,
        version=__version__,
    )
    return model_response(body, status_code=200 if healthy else 503)


async def _database(services: Services) -> HealthStatus:
    if not services.store.writer.alive:
        return HealthStatus.UNHEALTHY
    try:
        await asyncio.wait_for(services.store.reader.ping(), 2)
    except (TimeoutError, OSError, sqlite3.Error):
        return HealthStatus.UNHEALTHY
    return HealthStatus.HEALTHY


def _filesystem(services: Services, disk_percent: float | None) -> HealthStatus:
    if not os.access(services.settings.data_dir, os.W_OK) or services.store.writer.disk_full_since is not None:
        return HealthStatus.UNHEALTHY
    return HealthStatus.DEGRADED if disk_percent is not None and disk_percent >= 95 else HealthStatus.HEALTHY


@router.get(
    "/api/v1/health",
    summary="Rich health: components, system load, uptime",
    description="`status` is `healthy`, `degraded` (a component degraded, e.g. disk over 95%) or "
    "`unhealthy` (503). `components.gpu` is `unavailable` on a machine without NVML or GPU.",
    response_model=HealthDetail,
    responses={
        503: {"model": HealthDetail, "description": "A component is `unhealthy`"},
        **error_responses(STRUCTURED_ERRORS, 401, 403, 429),
    },
)
async def rich_health(services: ServicesDep) -> Response:
    sample = services.monitor.latest or await services.monitor.sample_now()
    disk = sample.get("disk", {}).get("percent")
    components = ComponentHealth(
        database=await _database(services),
        filesystem=_filesystem(services, disk),
        gpu="healthy" if sample.get("gpu") else "unavailable",
    )
    states = {components.database, components.filesystem}
    status = (
        HealthStatus.UNHEALTHY
        if HealthStatus.UNHEALTHY in states
        else HealthStatus.DEGRADED
        if HealthStatus.DEGRADED in states
        else HealthStatus.HEALTHY
    )
    now = time.time()
    body = HealthDetail(
        status=status,
        timestamp=iso(now),
        uptime_seconds=round(now - services.started_at, 1),
        version=__version__,
        system=SystemLoad(
            cpu_percent=sample.get("cpu", {}).get("percent"),
            memory_percent=sample.get("memory", {}).get("percent"),
            disk_percent=disk,
            gpu_count=len(sample.get("gpu", [])),
        ),
        components=components,
        active_connections=services.hub.connection_count,
        open_alerts=len(services.alerts.open_alerts()),
    )
    return model_response(body, status_code=503 if status == HealthStatus.UNHEALTHY else 200)
