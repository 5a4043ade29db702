"""The daemon's long-lived services, built by the lifespan and reached by routes through `api.deps`."""

from __future__ import annotations

from dataclasses import dataclass

from pivotd.alerts.actions import Actions
from pivotd.alerts.engine import AlertEngine
from pivotd.alerts.notifications import Notifier
from pivotd.alerts.webhooks import Webhooks
from pivotd.experiments.lifecycle import ExperimentLifecycle
from pivotd.hub import Hub
from pivotd.inference import Inference
from pivotd.ingest import Ingest
from pivotd.jobs import Supervisor
from pivotd.jobs.commands import Jobs
from pivotd.jobs.service import Training
from pivotd.monitor.sampler import ResourceMonitor
from pivotd.run_ends import RunEnds
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.telemetry.service import Telemetry


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    hub: Hub
    ingest: Ingest
    started_at: float
    monitor: ResourceMonitor
    alerts: AlertEngine
    notifier: Notifier
    """`notifier.run_ended(run_id, state, error)`: a run's end as a notification and webhooks."""
    webhooks: Webhooks
    actions: Actions
    """The trainer registers `pause`/`cancel` handlers here for rules with an `action`."""
    supervisor: Supervisor
    training: Training
    jobs: Jobs
    """People's own commands as runs: submit, the queue, cancel, what a job's run shows."""
    inference: Inference
    experiments: ExperimentLifecycle
    telemetry: Telemetry
    """Telemetry events: ingest, pivotd's own events (`emit`, `count`) and queries."""
    run_ends: RunEnds
    """External runs' ends: a script's finish, its silence (`lost`), and data that makes it running again."""
