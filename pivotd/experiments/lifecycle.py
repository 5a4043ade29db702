"""The experiment lifecycle: start a sweep through the training queue, pause, resume, cancel, clone; and the
`experiment:<id>` events that follow its runs.

Two classes, because the supervisor's run listeners are the events and the actions go through the supervisor:
`ExperimentEvents` exists before the supervisor is built (it is given the listeners), `ExperimentLifecycle`
after (it is given the training service), so neither needs the other set on it later.

The queue is the `runs` table (see `pivotd.jobs.supervisor`): `start` inserts the sweep's runs as queued, pause
sets `experiments.paused_at`, which the dispatcher's query skips, so a pause holds across restarts and never
blocks other queued runs. Status is derived from the runs in SQL; this service only notices when it changes
(after its own actions and the supervisor's run transitions) and publishes the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import orjson

from pivotd.errors import Conflict, Forbidden, NotFound, PivotError, ValidationFailed, fields_failed, invalid_field
from pivotd.experiments import sweep
from pivotd.hub import Hub
from pivotd.ids import new_id
from pivotd.jobs.service import Training
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.experiments import (
    ControlAction,
    ControlExperiment,
    CreateExperiment,
    ExperimentRow,
    ExperimentsReader,
    LaunchExperiment,
    RunProgress,
    SweepRun,
)
from pivotd.store.training import QueueJob
from pivotd.timefmt import iso
from shared.models.experiments import (
    FINAL_EXPERIMENT_STATUSES,
    ExperimentRunStatus,
    ExperimentStatus,
    experiment_run_status,
)

PROGRESS_INTERVAL_S = 1.0
"""Epoch-driven `experiment_progress` events are throttled to one a second per experiment."""


def experiment_topic(experiment_id: str) -> str:
    return f"experiment:{experiment_id}"


def eta_seconds(row: ExperimentRow, progress: RunProgress, now: float) -> float | None:
    """Time left at the pace so far (epochs when the runs declare them, else runs), paced by the time its runs
    actually trained, not since `start` (pauses and waits in the queue would inflate it); None before any
    progress."""
    if row.status in FINAL_EXPERIMENT_STATUSES:
        return 0.0
    if row.status == ExperimentStatus.PAUSED:  # no pace to extrapolate while nothing new starts
        return None
    fraction = progress.epoch_fraction if progress.epoch_fraction is not None else progress.fraction
    if fraction <= 0:
        return None
    return round(progress.active_seconds(now) * (1 - fraction) / fraction, 3)


class ExperimentLifecycle:
    def __init__(self, settings: Settings, store: Store, training: Training, events: ExperimentEvents) -> None:
        self._settings = settings
        self._store = store
        self._training = training
        self._events = events
        self._starting = asyncio.Lock()
        """One start at a time: two racing starts of one experiment must not both create its model."""

    @property
    def _reader(self) -> ExperimentsReader:
        return self._store.experiments

    # -- actions --------------------------------------------------------------------------------------------

    async def start(self, experiment_id: str, may_run_commands: bool) -> ExperimentRow:
        """Queue the sweep's runs. A command sweep runs commands as the daemon's user: `may_run_commands` says
        whether the caller may (the `jobs` scope, as for `POST /api/v1/jobs`)."""
        async with self._starting:
            await self._launch(experiment_id, may_run_commands)
        # Dispatch first: the one status event then says what the reply says (running once a run has a slot).
        await self._training.supervisor.dispatch()
        await self._events.announce(experiment_id)
        return await self._reader.get(experiment_id)

    async def _launch(self, experiment_id: str, may_run_commands: bool) -> None:
        row = await self._reader.get(experiment_id)
        if row.launched_at is not None:
            raise Conflict(f"experiment {experiment_id!r} was already started; clone it to run it again")
        if row.cancelled_at is not None:
            raise Conflict(f"experiment {experiment_id!r} was cancelled; clone it to run it")
        config = sweep.parse(row.config)
        if config.command is not None:
            if not self._settings.jobs_enabled:
                raise Forbidden(
                    "a command sweep runs jobs, and jobs are disabled on this daemon (jobs_enabled = false)"
                )
            if not may_run_commands:
                raise Forbidden("a command sweep runs commands as the daemon's user: starting one needs the jobs scope")
            jobs = await self._command_runs(row, config)
            await self._store.writer.submit(LaunchExperiment(experiment_id, None, jobs))
            return
        architecture, base, points = await self._plan(config)
        # Every check has passed: only now write anything, so a refused start leaves nothing behind.
        model_id = config.model_id
        if model_id is None:
            values = {"architecture": architecture, "hyperparams": base, "name": row.name}
            model, _ = await self._training.put_model(None, values)
            model_id = model.model_id
        runs = [
            SweepRun(
                new_id("r"),
                {"architecture": architecture, "hyperparams": point.hyperparams.model_dump()},
                point.hyperparams.epochs,
                point.group,
                f"{row.name} [{point.group}] seed={point.seed}",
            )
            for point in points
        ]
        await self._store.writer.submit(LaunchExperiment(experiment_id, model_id, runs))

    async def check(self, config: dict[str, Any], prefix: str) -> None:
        """Refuse a sweep config that `start` would refuse, when it is created or changed: otherwise the
        experiment sits `pending` until someone starts it and learns why. A 422 naming `<prefix>config.<field>`.
        Configs of other types are stored as given (an ensemble's, say): they are records, not runnable."""
        if config.get("type") != "sweep":
            return
        try:
            parsed = sweep.parse(config)
            await (self._command_plan(parsed) if parsed.command is not None else self._plan(parsed))
        except ValidationFailed as exc:
            raise fields_failed([{**field, "field": prefix + field["field"]} for field in exc.details]) from None

    async def _plan(self, config: sweep.SweepConfig) -> tuple[dict[str, Any], dict[str, Any], list[sweep.GridPoint]]:
        """(architecture, base hyperparams, grid) of a runnable config, every part checked; writes nothing."""
        architecture, base = await self._resolve(config)
        return architecture, base, sweep.expand(config, base, self._settings.max_sweep_runs)

    async def _command_plan(self, config: sweep.SweepConfig) -> tuple[int, list[sweep.CommandPoint]]:
        """(GPUs per job, grid) of a command sweep, checked as `POST /api/v1/jobs` checks a job; writes nothing."""
        if not await asyncio.to_thread(Path(config.cwd).is_dir):
            raise invalid_field("config.cwd", f"{config.cwd!r} is not a directory on the daemon's machine")
        visible = len(await asyncio.to_thread(self._training.supervisor.gpus.inventory))
        gpus: int = config.gpus if config.gpus is not None else min(visible, 1)
        if gpus > visible:
            raise invalid_field("config.gpus", f"asks for {gpus} GPU(s); NVML lists {visible} that pivotd may use")
        return gpus, sweep.expand_command(config, self._settings.max_sweep_runs)

    async def _command_runs(self, row: ExperimentRow, config: sweep.SweepConfig) -> list[QueueJob]:
        gpus, points = await self._command_plan(config)
        jobs = []
        for point in points:
            job = {"command": point.command, "cwd": config.cwd, "env": config.env or {}, "gpus": gpus,
                   "nproc_per_node": 1, "rendezvous": None, "max_runtime_s": None, "retries": 0,
                   "hyperparams": point.assignment}  # fmt: skip
            name = f"{row.name} [{point.group}]" + ("" if point.seed is None else f" seed={point.seed}")
            jobs.append(QueueJob(new_id("r"), job, 0, name, [], row.id, point.group))
        return jobs

    async def _resolve(self, config: sweep.SweepConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        """(architecture, base hyperparams) of a stored model or of the config's inline architecture; writes nothing."""
        if config.model_id is None:
            return self._architecture(config.architecture), config.hyperparams
        try:
            model = await self._training.get_model(config.model_id)
        except NotFound:
            raise invalid_field("config.model_id", f"no model {config.model_id!r}") from None
        if model.architecture is None:
            raise invalid_field("config.model_id", f"model {config.model_id!r} has no architecture to train")
        return self._architecture(model.architecture), sweep.merge(model.hyperparams or {}, config.hyperparams)

    def _architecture(self, value: Any) -> dict[str, Any]:
        try:
            return self._training.architecture(value).wire()
        except PivotError as exc:  # the training routes' 400; here it is a field of the experiment's config
            if isinstance(exc.details, list):  # pydantic's, one per field, each named from `architecture`
                raise fields_failed([{**field, "field": f"config.{field['field']}"} for field in exc.details]) from None
            message = exc.message.removeprefix("architecture")
            raise ValidationFailed(
                f"config.architecture{message}", details=[{"field": "config.architecture", "message": exc.message}]
            ) from None

    async def control(self, experiment_id: str, action: ControlAction) -> ExperimentRow:
        to_cancel: list[str] = await self._store.writer.submit(ControlExperiment(experiment_id, action))
        await self._events.announce(experiment_id)
        await self._cancel_runs(to_cancel)
        if action == "resume":
            await self._training.supervisor.dispatch()
        return await self._reader.get(experiment_id)

    async def cancel_stranded(self, experiment_id: str | None = None) -> None:
        """Cancel queued runs of cancelled experiments (at start-up, for all; after an attach, for one)."""
        await self._cancel_runs(await self._reader.stranded_runs(experiment_id))

    async def _cancel_runs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            with contextlib.suppress(Conflict, NotFound):  # finished or deleted meanwhile
                await self._training.supervisor.cancel(run_id)

    async def clone(self, experiment_id: str, name: str | None) -> ExperimentRow:
        source = await self._reader.get(experiment_id)
        clone_id = new_id("exp")
        await self._store.writer.submit(
            CreateExperiment(clone_id, name or f"{source.name} (copy)", source.description, source.config, source.tags)
        )
        return await self._reader.get(clone_id)


class ExperimentEvents:
    """The `experiment:<id>` topic: status changes, each run's end, and progress; the supervisor's and RunEnds'
    listeners for the runs of experiments."""

    def __init__(self, store: Store, hub: Hub) -> None:
        self._store = store
        self._hub = hub
        self._announced: dict[str, str] = {}
        """The last status published per experiment, so a status event goes out once per change."""
        self._lock = asyncio.Lock()
        self._progressed: dict[str, float] = {}
        """When each experiment's progress was last published for an epoch (monotonic seconds)."""
        self._since = time.time()
        self._ended: set[str] = set()
        """Runs (finished since `_since`) whose `experiment_run_completed` went out."""
        self._reported: set[str] = set()
        """Of those, the ones an experiment's final status reported before their own listener call came."""

    @property
    def _reader(self) -> ExperimentsReader:
        return self._store.experiments

    def _publish(self, experiment_id: str, kind: str, body: dict[str, Any]) -> None:
        topic = experiment_topic(experiment_id)
        message = {"type": kind, "topic": topic, "experiment_id": experiment_id, **body}
        self._hub.publish((topic,), orjson.dumps(message).decode())

    async def announce(self, experiment_id: str) -> None:
        """Publish `experiment_status` if the status differs from the last one published."""
        async with self._lock:
            try:
                row = await self._reader.get(experiment_id)
            except NotFound:
                self._announced.pop(experiment_id, None)
                return
            if self._announced.get(experiment_id) == row.status:
                return
            if row.status in FINAL_EXPERIMENT_STATUSES:
                await self._report_unreported(experiment_id)
            self._announced[experiment_id] = row.status
            if row.status in FINAL_EXPERIMENT_STATUSES:
                self._progressed.pop(experiment_id, None)
            finished = row.status in FINAL_EXPERIMENT_STATUSES and row.finished_at is not None
            self._publish(
                experiment_id,
                "experiment_status",
                {
                    "status": row.status,
                    "started_at": None if row.started_at is None else iso(row.started_at),
                    "completed_at": iso(row.finished_at) if finished and row.finished_at is not None else None,
                },
            )

    async def run_started(self, run_id: str) -> None:
        membership = await self._reader.membership(run_id)
        if membership is not None:
            await self.announce(membership[0])

    async def run_finished(self, run_id: str, state: str, error: str | None) -> None:
        """An `on_finished` listener (managed and external runs): error (if it failed or was lost), run_completed,
        progress, then status."""
        membership = await self._reader.membership(run_id)
        if membership is None:
            return
        experiment_id, group = membership
        # Under the lock that a final status's `_report_unreported` holds: between this check and `_ended.add`, a
        # status reporting this run too would send its end twice.
        async with self._lock:
            if run_id in self._reported:  # the experiment's final status went out with this run's end already
                self._reported.discard(run_id)
                return
            found = await self._reader.runs_by_id([run_id])
            self._report(experiment_id, run_id, state, group, found[run_id].latest if run_id in found else {}, error)
            self._ended.add(run_id)
        await self._publish_progress(experiment_id)
        await self.announce(experiment_id)

    def _report(
        self,
        experiment_id: str,
        run_id: str,
        state: str,
        group: str | None,
        metrics: dict[str, float],
        error: str | None,
    ) -> None:
        status = experiment_run_status(state)
        if status == ExperimentRunStatus.FAILED:
            self._publish(
                experiment_id, "experiment_error", {"message": f"run {run_id} failed: {error}", "code": "run_failed"}
            )
        self._publish(
            experiment_id,
            "experiment_run_completed",
            {"run_id": run_id, "status": status, "state": state, "group": group, "metrics": metrics},
        )

    async def _report_unreported(self, experiment_id: str) -> None:
        """Before a final status: the end of every finished run whose listener call has not come yet. Two runs that
        end together both commit before either listener reads the experiment's status, so without this the status
        could go out before the other run's `experiment_run_completed` (a client that stops at the status misses
        it); that run's own call then publishes nothing."""
        reported = False
        for run in await self._reader.all_runs(experiment_id):
            # Runs that ended before this daemon started were reported by the one before it.
            if run.finished_at is None or run.finished_at < self._since or run.run_id in self._ended:
                continue
            self._report(experiment_id, run.run_id, run.state, run.group, run.latest, "see the run's log")
            self._ended.add(run.run_id)
            self._reported.add(run.run_id)
            reported = True
        if reported:
            await self._publish_progress(experiment_id)

    async def run_epoch(self, run_id: str) -> None:
        """A supervisor `on_epoch` listener: progress between runs, at most once a second per experiment."""
        membership = await self._reader.membership(run_id)
        if membership is None:
            return
        experiment_id = membership[0]
        now = time.monotonic()
        if now - self._progressed.get(experiment_id, -PROGRESS_INTERVAL_S) < PROGRESS_INTERVAL_S:
            return
        self._progressed[experiment_id] = now
        await self._publish_progress(experiment_id)

    async def _publish_progress(self, experiment_id: str) -> None:
        try:
            row = await self._reader.get(experiment_id)
        except NotFound:  # deleted meanwhile
            return
        progress = await self._reader.progress(experiment_id)
        epochs = None if progress.epoch_fraction is None else round(progress.epoch_fraction, 4)
        body = {
            "progress": round(progress.fraction, 4),
            "epoch_progress": epochs,
            "eta_seconds": eta_seconds(row, progress, time.time()),
        }
        self._publish(experiment_id, "experiment_progress", body)
