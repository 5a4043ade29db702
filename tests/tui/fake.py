"""A FakeDaemonClient with fixed data, for snapshot tests that must render the same every time: DaemonClient's
typed methods, answering with the same shared models the real ones parse."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

from pivot_tui.client import Connection, DaemonClient, Event, EventSink, StateSink
from shared.client import PivotAPIError
from shared.models import RunSummary, ScalarSeries, ScalarsResponse
from shared.models.alerts import (
    AlertPublic,
    AlertRulePublic,
    AlertStatus,
    NotificationPublic,
    NotificationRead,
)
from shared.models.experiments import (
    ExperimentAction,
    ExperimentDetail,
    ExperimentExport,
    ExperimentPublic,
    ExperimentRun,
    ExperimentStatus,
    count_by_status,
    experiment_run_status,
)
from shared.models.jobs import JobAccepted, JobQueue
from shared.models.layerwise import LiteStep
from shared.models.logs import RunLogLine
from shared.models.monitor import ResourceSample
from shared.models.registry import CancelRequested, TrainQueued
from shared.models.runs import FINAL_STATES, LiteRunDetail, RunState

OLD = "2024-02-10T12:34:56.789+00:00"  # far enough in the past to render as a date, not "Ns ago"


def summary(status: str, step: int | None, loss: float | None, kind: str = "external") -> dict[str, Any]:
    return {
        "created_at": OLD, "last_update": OLD, "step_count": 0 if step is None else step // 10 + 1,
        "latest_step": step, "kind": kind, "status": status, "experiment_id": None, "group": None, "tags": [],
        "latest": {} if loss is None else {"train_loss": loss},
    }  # fmt: skip


RUNS = {
    "mnist_cnn_lr0.1": summary("running", 1500, 0.3121, "managed"),
    "mnist_mlp_baseline": summary("succeeded", 4690, 0.0841, "managed"),
    "resnet18_ablation_no_bn": summary("running", 820, 2.2871),
    "exploding_rnn": summary("failed", 130, None),
}


def lite_step(step: int, explode: bool = False) -> LiteStep:
    """A first layer whose gradient vanishes (below the built-in rule's 1e-7), a parameter-free GELU (zero
    gradient and weight statistics, as the SDK reports it) and, with `explode`, a last layer past 1e3."""
    layers = []
    names = (("features/conv1", "Conv2d"), ("features/gelu", "GELU"), ("features/conv2", "Conv2d"),
             ("classifier/fc1", "Linear"), ("classifier/fc2", "Linear"))  # fmt: skip
    for depth, (name, layer_type) in enumerate(names):
        norm = 0.5 / (1 + depth) * math.exp(-step / 3000) * (1e5 if explode and depth == 4 else 1)
        weighted = layer_type != "GELU"
        layers.append({
            "layer_id": name, "layer_type": layer_type,
            "depth_index": depth, "activation_std": 1 / (1 + 0.2 * depth),
            "cross_layer_std_ratio": None if depth == 0 else 0.9,
            "gradient_l2_norm": (norm if depth else norm * 1e-7) if weighted else 0.0,
            "gradient_max_abs": norm / 5 if weighted else 0.0, "spectral_norm": 1.5 + depth / 10 if weighted else 0.0,
        })  # fmt: skip
    return LiteStep.model_validate({"step": step, "timestamp": 0.0, "layers": layers})


def experiment(
    experiment_id: str, name: str, status: str, metric: str, runs: int, by_state: dict[str, int], **extra: Any
) -> ExperimentDetail:
    """An experiment as `GET /api/v1/experiments/{id}` shows it; `by_state` counts its runs by state."""
    finished = sum(by_state.get(state, 0) for state in FINAL_STATES)
    counts = {RunState(state): count for state, count in by_state.items()}
    return ExperimentDetail.model_validate({
        "id": experiment_id, "name": name, "description": None, "status": status,
        "config": {"type": "sweep", "metric": metric}, "tags": [], "total_runs": runs,
        "started_at": OLD, "completed_at": None, "created_at": OLD, "updated_at": OLD, "runs": [],
        "results_summary": {"total_runs": runs, "runs_by_status": count_by_status(counts), "runs_by_state": counts,
                            "metric": metric, "best_run": extra.pop("best_run", None)},
        "progress": finished / runs if runs else 0, "epoch_progress": None, "eta_seconds": None, **extra,
    })  # fmt: skip


EXPERIMENTS = {
    "exp_lr": experiment(
        "exp_lr",
        "lr sweep (mnist cnn)",
        "running",
        "val_accuracy",
        6,
        {"succeeded": 3, "running": 2, "queued": 1},
        best_run={"run_id": "exp_lr_r1", "group": "optimizer.lr=0.1", "value": 0.9312},
        epoch_progress=0.6167,
        eta_seconds=754,
    ),
    "exp_opt": experiment(
        "exp_opt",
        "optimizer ablation",
        "completed",
        "val_loss",
        8,
        {"succeeded": 7, "failed": 1},
        best_run={"run_id": "exp_opt_r3", "group": "optimizer.type=adam", "value": 0.07118},
    ),
    "exp_seed": experiment("exp_seed", "seed study", "paused", "val_accuracy", 4, {"succeeded": 1, "queued": 3}),
    "exp_new": experiment("exp_new", "dropout sweep", "pending", "train_loss", 0, {}),
}


def member(run_id: str, group: str, state: RunState, accuracy: float | None, progress: float) -> ExperimentRun:
    metrics = {} if accuracy is None else {"val_accuracy": accuracy, "train_loss": 1 - accuracy}
    seed = int(run_id[-1]) % 2 + 1  # two seeds per learning rate
    return ExperimentRun(
        id=run_id, experiment_id="exp_lr", group=group, kind="managed", status=experiment_run_status(state),
        state=state, progress=progress, hyperparameters={"seed": seed, "epochs": 3}, metadata={}, metrics=metrics,
        created_at=OLD, started_at=None, finished_at=None,
    )  # fmt: skip


EXPERIMENT_RESULTS = ExperimentExport.model_validate({
    "experiment": EXPERIMENTS["exp_lr"].model_dump(),
    "include": ["results", "runs"],
    "exported_at": OLD,
    "results": {
        "results_summary": EXPERIMENTS["exp_lr"].results_summary.model_dump(),
        "progress": 0.5,
        "statistical_results": [],
        "groups": [
            {"experiment_id": "exp_lr", "experiment_name": "lr sweep (mnist cnn)", "group": "optimizer.lr=0.1",
             "metric": "val_accuracy", "n": 2, "mean": 0.9256, "std": 0.00792, "ci95": [0.8545, 0.9967],
             "best": 0.9312, "run_ids": ["exp_lr_r1", "exp_lr_r2"]},
            {"experiment_id": "exp_lr", "experiment_name": "lr sweep (mnist cnn)", "group": "optimizer.lr=0.01",
             "metric": "val_accuracy", "n": 1, "mean": 0.8874, "std": None, "ci95": None, "best": 0.8874,
             "run_ids": ["exp_lr_r3"]},
        ],
    },
    "runs": [
        member("exp_lr_r1", "optimizer.lr=0.1", RunState.SUCCEEDED, 0.9312, 1.0).model_dump(),
        member("exp_lr_r2", "optimizer.lr=0.1", RunState.SUCCEEDED, 0.9200, 1.0).model_dump(),
        member("exp_lr_r3", "optimizer.lr=0.01", RunState.SUCCEEDED, 0.8874, 1.0).model_dump(),
        member("exp_lr_r4", "optimizer.lr=0.01", RunState.RUNNING, 0.8011, 0.6).model_dump(),
        member("exp_lr_r5", "optimizer.lr=0.001", RunState.RUNNING, 0.5123, 0.3).model_dump(),
        member("exp_lr_r6", "optimizer.lr=0.001", RunState.QUEUED, None, 0.0).model_dump(),
    ],
})  # fmt: skip
ACTION_STATUS = {"start": "running", "pause": "paused", "resume": "running", "cancel": "cancelled"}
"""What each action leaves an experiment in, as far as this fake is concerned."""


ALERT: dict[str, Any] = {
    "rule_id": "rule_1", "rule_name": "GPU too hot", "threshold": 85.0, "metric": "gpu_temperature",
    "condition": "greater_than", "context": {},
}  # fmt: skip
"""What every alert carries besides what a test gives it."""


NOTIFICATIONS = [
    {"id": "notif_2", "type": "training", "priority": "high", "read": False, "data": {},
     "message": "Training run exploding_rnn failed", "created_at": "2024-02-10T12:31:00.000+00:00"},
    {"id": "notif_1", "type": "alert", "priority": "high", "read": True, "data": {},
     "message": "Alert: gpu_temperature on gpu:0 is 86", "created_at": "2024-02-10T12:30:00.000+00:00"},
]  # fmt: skip
RULE = {"rule_id": "rule_1", "name": "GPU too hot", "metric": "gpu_temperature", "condition": "greater_than",
        "threshold": 85.0, "severity": "critical", "enabled": True, "for_seconds": 0.0, "scope": {}, "builtin": False,
        "created_at": "2024-02-10T12:00:00.000+00:00", "updated_at": "2024-02-10T12:00:00.000+00:00"}  # fmt: skip


H100 = "NVIDIA H100 80GB HBM3"
QUEUE = {
    "data": [
        {"run_id": "r_sweep_lr3e-4", "kind": "job", "status": "running", "name": "lr 3e-4", "command": ["python",
         "train.py", "--lr", "3e-4"], "position": None, "priority": 0, "gpus_requested": 2,
         "gpus": [{"index": 0, "uuid": "GPU-0", "name": H100}, {"index": 1, "uuid": "GPU-1", "name": H100}],
         "queued_at": OLD, "started_at": OLD},
        {"run_id": "mnist_cnn_lr0.1", "kind": "managed", "status": "running", "name": None, "command": None,
         "position": None, "priority": 0, "gpus_requested": None, "gpus": [{"index": 2, "uuid": "GPU-2", "name": H100}],
         "queued_at": OLD, "started_at": OLD},
        {"run_id": "r_eval_big", "kind": "job", "status": "queued", "name": None, "command": ["bash", "-c",
         "python eval.py --ckpt runs/best.pt && python report.py"], "position": 1, "priority": 5,
         "gpus_requested": 4, "gpus": [], "queued_at": OLD, "started_at": None},
    ],
    "meta": {"running": 2, "queued": 1, "slots": 3},
}  # fmt: skip


JOB_RUN = "r_sweep_lr3e-4"
JOB_SUMMARY = summary("running", None, None, "job")
JOB_INFO = {"command": ["python", "train.py", "--lr", "3e-4"], "cwd": "/home/me/project", "env": [],
            "gpus_requested": 2, "nproc_per_node": 1, "priority": 0, "max_runtime_s": None, "retries": 0, "attempts": 1,
            "queued_at": OLD, "started_at": OLD, "finished_at": None}  # fmt: skip
JOB_LOG = [
    {"timestamp": OLD, "level": "info", "message": f"epoch {epoch} loss {2.3 / (epoch + 1):.3f}"} for epoch in range(12)
] + [{"timestamp": OLD, "level": "error", "message": "UserWarning: dataloader worker count is above the CPU count"}]


def missing(feature: str) -> PivotAPIError:
    """What a daemon without `feature` answers."""
    return PivotAPIError(404, "not_found", f"this daemon has no {feature}")


class FakeDaemonClient(DaemonClient):
    def __init__(
        self,
        *,
        resources: dict[str, Any] | None = None,
        alerts: list[dict[str, Any]] | None = None,
        refuse: dict[str, PivotAPIError] | None = None,
        refuse_actions: dict[tuple[str, str], PivotAPIError] | None = None,
    ) -> None:
        super().__init__("http://gpu-box:8000", None)
        self._resources = None if resources is None else ResourceSample.model_validate(resources)
        self._alerts = None if alerts is None else [AlertPublic.model_validate(ALERT | a) for a in alerts]
        self._refuse = refuse or {}
        """Methods (by name) answered with an error (a launch the daemon refuses)."""
        self._refuse_actions = refuse_actions or {}
        """(experiment id, action) answered with an error (a 409 for a transition the experiment does not allow)."""
        self.posted: list[tuple[str, dict[str, Any]]] = []
        """(method, its arguments) of every call that asks the daemon to change something, in order."""
        self.actions: list[tuple[str, str]] = []
        """(experiment id, action) of every experiment action asked for, in order."""
        self.watched_experiments: list[str | None] = []

    def _post(self, method: str, **arguments: Any) -> None:
        self.posted.append((method, arguments))
        if method in self._refuse:
            raise self._refuse[method]

    async def run_forever(self, on_event: EventSink, on_state: StateSink) -> None:
        on_state(Connection.ONLINE, self.url)
        on_event(Event("initial_runs", {"type": "initial_runs", "data": RUNS}))
        on_event(Event("resync", {"reason": "connected"}))  # as the real client does once subscribed
        if self._resources is not None:
            sample = self._resources.model_dump(mode="json", by_alias=True, exclude_unset=True)
            on_event(Event("resources", {"type": "resources", "topic": "resources", "data": sample}))
        await asyncio.Event().wait()

    async def runs(self) -> dict[str, RunSummary]:
        return {run_id: RunSummary.model_validate(run) for run_id, run in RUNS.items()}

    async def get_run(self, run_id: str) -> LiteRunDetail:
        if run_id == JOB_RUN:  # a command that reports nothing to pivotd: no steps, no scalars, only its output
            return LiteRunDetail.model_validate({**JOB_SUMMARY, "run_id": run_id, "steps": [], "events": [],
                                                 "job": JOB_INFO, "gpus": QUEUE["data"][0]["gpus"]})  # fmt: skip
        steps = [lite_step(step, explode=step >= 1400) for step in range(0, 1510, 10)]
        run: Mapping[str, Any] = RUNS.get(run_id) or summary("running", None, None)
        epochs = {"epoch": 2, "epochs_total": 3} if run["kind"] == "managed" else {}  # what a managed run adds
        return LiteRunDetail.model_validate({**run, "run_id": run_id, "steps": steps, "events": [], **epochs})

    async def scalars(self, run_id: str, names: Any = None, max_points: int = 400) -> ScalarsResponse:
        if run_id == JOB_RUN:
            return ScalarsResponse(run_id=run_id, series={})
        steps = list(range(0, 1501, 10))
        series = {
            "train_loss": ScalarSeries(steps=steps, values=[2.3 * math.exp(-s / 500) + 0.3 for s in steps],
                                       timestamps=[None] * len(steps)),
            "val_loss": ScalarSeries(steps=steps[::10], values=[2.4 * math.exp(-s / 500) + 0.35 for s in steps[::10]],
                                     timestamps=[None] * len(steps[::10])),
        }  # fmt: skip
        return ScalarsResponse(run_id=run_id, series=series)

    async def run_logs(self, run_id: str, tail: int = 200) -> list[RunLogLine]:
        if run_id == JOB_RUN:
            return [RunLogLine.model_validate(line) for line in JOB_LOG]
        raise missing("run logs")

    async def resources(self) -> ResourceSample:
        if self._resources is None:
            raise missing("resource monitor")
        return self._resources

    async def alerts(self, status: AlertStatus | None = None) -> list[AlertPublic]:
        if self._alerts is None:
            raise missing("alerts")
        return [alert for alert in self._alerts if status is None or alert.status is status]

    async def alert_rules(self) -> list[AlertRulePublic]:
        if self._alerts is None:
            raise missing("alerts")
        return [AlertRulePublic.model_validate(RULE)]

    async def notifications(self, limit: int = 50) -> list[NotificationPublic]:
        if self._alerts is None:
            raise missing("notifications")
        return [NotificationPublic.model_validate(notice) for notice in NOTIFICATIONS[:limit]]

    async def mark_notification_read(self, notification_id: str) -> NotificationRead:
        self._post("mark_notification_read", notification_id=notification_id)
        return NotificationRead.model_validate({"id": notification_id, "read": True})

    async def train(self, architecture: Mapping[str, Any], hyperparams: Mapping[str, Any]) -> TrainQueued:
        self._post("train", architecture=architecture, hyperparams=hyperparams)
        return TrainQueued(run_id="launched", model_id="model_1", status=RunState.QUEUED)

    async def submit_job(self, command: Any, cwd: str, **fields: Any) -> JobAccepted:
        self._post("submit_job", command=list(command), cwd=cwd, **fields)
        return JobAccepted(run_id="submitted", status="queued", position=1, gpus_requested=fields.get("gpus", 1))

    async def job_queue(self) -> JobQueue:
        if "job_queue" in self._refuse:
            raise self._refuse["job_queue"]
        return JobQueue.model_validate(QUEUE)

    async def cancel(self, run_id: str) -> CancelRequested:
        self._post("cancel", run_id=run_id)
        return CancelRequested(run_id=run_id, state=RunState.RUNNING, cancel_requested=True)

    async def cancel_job(self, run_id: str) -> JobAccepted:
        self._post("cancel_job", run_id=run_id)
        return JobAccepted(run_id=run_id, status="cancelled", position=None, gpus_requested=1)

    async def experiments(self) -> list[ExperimentPublic]:
        return [ExperimentPublic.model_validate(detail.model_dump()) for detail in EXPERIMENTS.values()]

    async def experiment(self, experiment_id: str) -> ExperimentDetail:
        if experiment_id not in EXPERIMENTS:
            raise PivotAPIError(404, "not_found", f"experiment {experiment_id!r} not found")
        return EXPERIMENTS[experiment_id]

    async def experiment_results(self, experiment_id: str) -> ExperimentExport:
        return EXPERIMENT_RESULTS

    async def experiment_action(self, experiment_id: str, action: ExperimentAction) -> ExperimentDetail:
        self.actions.append((experiment_id, action))
        if (experiment_id, action) in self._refuse_actions:
            raise self._refuse_actions[experiment_id, action]
        detail = await self.experiment(experiment_id)
        return detail.model_copy(update={"status": ExperimentStatus(ACTION_STATUS[action])})

    async def watch_experiment(self, experiment_id: str | None) -> None:
        self.watched_experiments.append(experiment_id)

    async def watch_run(self, run_id: str | None) -> None:
        return None
