"""Managed runs: the persisted queue, the supervisor of worker processes and the GPUs they are pinned to."""

from pivotd.jobs.gpus import Gpu, GpuAllocator
from pivotd.jobs.supervisor import Supervisor

__all__ = ["Gpu", "GpuAllocator", "Supervisor"]
