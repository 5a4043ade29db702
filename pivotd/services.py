"""The daemon's long-lived services, built by the lifespan and reached by routes through `api.deps`."""

from __future__ import annotations

from dataclasses import dataclass

from pivotd.hub import Hub
from pivotd.inference import Inference
from pivotd.ingest import Ingest
from pivotd.jobs import Supervisor
from pivotd.jobs.service import Training
from pivotd.settings import Settings
from pivotd.store import Store


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    hub: Hub
    ingest: Ingest
    started_at: float
    supervisor: Supervisor
    training: Training
    inference: Inference
