"""Managed runs: the persisted queue and the supervisor of worker processes."""

from pivotd.jobs.supervisor import Supervisor, visible_gpus

__all__ = ["Supervisor", "visible_gpus"]
