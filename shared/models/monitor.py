"""Resource monitoring and health: `/api/v1/monitor/resources...`, `/health`, `/api/v1/health`.

A resource sample drops a counter the machine could not read (no swap, no load average, a GPU without power
readings), so every section and most GPU fields are optional: absent, not null.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class CpuUsage(_Open):
    percent: float
    count: int
    per_cpu: list[float]


class Usage(_Open):
    percent: float
    used_gb: float
    total_gb: float


class DiskUsage(Usage):
    path: str


class LoadAverage(_Open):
    one: float = Field(alias="1m")
    five: float = Field(alias="5m")
    fifteen: float = Field(alias="15m")


class GpuProcess(_Open):
    pid: int
    memory_used_gb: float | None = Field(description="null where NVML cannot tell (no permission, MIG)")


class MigInstance(_Open):
    """One MIG instance of a GPU in MIG mode: what CUDA is given instead of the whole GPU."""

    index: int
    uuid: str | None = None
    name: str | None = None
    memory_used_gb: float | None = None
    memory_total_gb: float | None = None
    memory_percent: float | None = None


class GpuSample(_Open):
    id: int = Field(description="NVML's index")
    uuid: str | None = Field(default=None, description="`GPU-...`: what a run's `gpus` names")
    error: str | None = Field(default=None, description="Why NVML could not reach this GPU; nothing else is read")
    name: str | None = None
    utilization: float | None = None
    memory_used_gb: float | None = None
    memory_total_gb: float | None = None
    memory_percent: float | None = None
    temperature: float | None = None
    power_watts: float | None = None
    processes: list[GpuProcess] | None = None
    mig: list[MigInstance] | None = Field(default=None, description="Absent unless the GPU is in MIG mode")


class ResourceSample(_Open):
    """`GET /api/v1/monitor/resources`, and one sample of `resolution=recent` history: the monitoring shape plus
    swap, load and GPU power/processes. `time` is Unix seconds, `timestamp` the same as ISO 8601."""

    timestamp: str
    time: float
    cpu: CpuUsage | None = None
    memory: Usage | None = None
    swap: Usage | None = None
    disk: DiskUsage | None = None
    load: LoadAverage | None = None
    gpu: list[GpuSample] | None = Field(
        default=None,
        description="Empty where NVML answers with no GPU; absent while NVML cannot be asked (not installed, no "
        "driver, not initialised yet): unknown",
    )


class GpuAverage(_Open):
    id: int
    utilization: float | None = None
    temperature: float | None = None
    memory_percent: float | None = None
    power_watts: float | None = None


class ResourceAverage(_Open):
    """One stored history point: the mean of `samples` samples over `step_seconds`, ending at `time`."""

    time: float
    timestamp: str
    samples: int
    cpu_percent: float | None
    memory_percent: float | None
    swap_percent: float | None
    disk_percent: float | None
    load_1m: float | None
    gpu: list[GpuAverage]


class RecentResources(BaseModel):
    resolution: Literal["recent"]
    step_seconds: float
    samples: list[ResourceSample]


class StoredResources(BaseModel):
    resolution: Literal["stored"]
    step_seconds: float
    samples: list[ResourceAverage]


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class Health(BaseModel):
    """`GET /health`; `unhealthy` answers 503."""

    status: HealthStatus
    active_connections: int
    version: str


class ComponentHealth(BaseModel):
    database: HealthStatus
    filesystem: HealthStatus
    gpu: Literal["healthy", "unavailable"]


class SystemLoad(BaseModel):
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None
    gpu_count: int


class HealthDetail(BaseModel):
    """`GET /api/v1/health`: `status` is the worst component's; `unhealthy` answers 503."""

    status: HealthStatus
    timestamp: str
    uptime_seconds: float
    version: str
    system: SystemLoad
    components: ComponentHealth
    active_connections: int
    open_alerts: int
