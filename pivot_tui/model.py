"""What the TUI knows, kept apart from how it is drawn: runs, the followed run's curves and layer
history, resources and alerts. Bounded everywhere: ring buffers per series and per history.

Screens do not redraw per message. Each part of the model has a version number that events bump, and
each bump tells the `on_change` callbacks which parts changed; the screen on top then redraws what changed
at most ten times a second (`pivot_tui.screens.live`), which is how 20 runs streaming 50 steps/s cost at
most ten redraws per second, and how a TUI on which nothing changes runs no code at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from pivot_tui.client import Connection, Event
from shared.models.jobs import JobInfo
from shared.models.layerwise import LiteStep, Step
from shared.models.logs import RunLogLine
from shared.models.monitor import ResourceSample
from shared.models.runs import RunEvent, RunGpu, RunState, RunSummary

MAX_POINTS_PER_SERIES = 20_000
MAX_HISTORY_STEPS = 2_000
MAX_RESOURCE_SAMPLES = 300
_RUNS = TypeAdapter(dict[str, RunSummary])


@dataclass
class Series:
    """One scalar curve: steps and values in step order, bounded; last write wins per step."""

    steps: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_POINTS_PER_SERIES))
    values: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_POINTS_PER_SERIES))

    def add(self, step: int, value: float) -> None:
        if self.steps and step <= self.steps[-1]:
            if step == self.steps[-1]:
                self.values[-1] = value
            return  # out-of-order points only come from a re-sync, which reloads the series
        self.steps.append(step)
        self.values.append(value)

    def downsampled(self, width: int) -> tuple[list[int], list[float]]:
        """At most ~2 points per column, keeping each column's min and max so spikes stay visible."""
        steps, values = list(self.steps), list(self.values)
        if len(steps) <= 2 * width or width <= 0:
            return steps, values
        bucket = len(steps) / width
        out_s: list[int] = []
        out_v: list[float] = []
        for column in range(width):
            lo, hi = int(column * bucket), max(int(column * bucket) + 1, int((column + 1) * bucket))
            window = range(lo, min(hi, len(steps)))
            low = min(window, key=values.__getitem__)
            high = max(window, key=values.__getitem__)
            for index in sorted({low, high}):
                out_s.append(steps[index])
                out_v.append(values[index])
        return out_s, out_v


@dataclass
class FollowedRun:
    run_id: str
    series: dict[str, Series] = field(default_factory=dict)
    steps: deque[LiteStep] = field(default_factory=lambda: deque(maxlen=MAX_HISTORY_STEPS))
    events: deque[RunEvent] = field(default_factory=lambda: deque(maxlen=200))
    logs: deque[RunLogLine] = field(default_factory=lambda: deque(maxlen=500))
    """A managed run's worker output (level, message), newest last."""
    layer_groups: dict[str, list[str]] | None = None
    epoch: int | None = None
    """A managed run's epochs done and declared (the run's detail, then `run_progress` messages)."""
    epochs_total: int | None = None
    job: JobInfo | None = None
    """A job's command, request and timings (its run's detail); None for other runs."""
    gpus: list[RunGpu] | None = None

    def add_step(self, step: LiteStep) -> None:
        if step.layer_groups:
            self.layer_groups = step.layer_groups
        if self.steps and step.step <= self.steps[-1].step:
            if step.step == self.steps[-1].step:
                self.steps[-1] = step
            return
        self.steps.append(step)

    def add_points(self, points: list[dict[str, Any]]) -> None:
        for point in points:
            for name, value in point.get("values", {}).items():
                self.series.setdefault(name, Series()).add(point["step"], value)


def _log_line(message: dict[str, Any]) -> RunLogLine:
    """A live `log` message as the REST history shows its lines (the socket sends Unix seconds)."""
    when = message.get("timestamp")
    if isinstance(when, int | float):
        when = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
    return RunLogLine.model_validate({**message, "timestamp": when})


@dataclass
class TuiModel:
    connection: Connection = Connection.CONNECTING
    connection_detail: str = ""
    away: Connection | None = None
    """OFFLINE or UNAUTHORIZED once the daemon is lost (or cannot be used), until it is reached again: kept through
    each reconnection attempt (CONNECTING), so that what says a box is away does not blink with the retries."""
    runs: dict[str, RunSummary] = field(default_factory=dict)
    followed: FollowedRun | None = None
    resources: ResourceSample | None = None
    resource_history: deque[ResourceSample] = field(default_factory=lambda: deque(maxlen=MAX_RESOURCE_SAMPLES))
    versions: dict[str, int] = field(
        default_factory=lambda: {"runs": 0, "run": 0, "resources": 0, "alerts": 0, "experiments": 0, "connection": 0}
    )
    on_change: list[Callable[[tuple[str, ...]], None]] = field(default_factory=list)
    """Called with the parts bumped, on every bump (the app's: it tells the screen on top)."""
    _replay: list[tuple[str, RunSummary | None]] | None = None
    """Run changes (run id, summary; None when deleted) received while a REST snapshot of the runs is in flight."""

    def begin_sync(self) -> None:
        """A REST snapshot of the runs is about to be read: remember run events from now on."""
        self._replay = []

    def finish_sync(self, runs: dict[str, RunSummary]) -> None:
        """Install the snapshot, then replay what arrived meanwhile: the snapshot may predate it."""
        for run_id, summary in self._replay or []:
            if summary is None:
                runs.pop(run_id, None)
            elif (known := runs.get(run_id)) is None or known.last_update <= summary.last_update:
                runs[run_id] = summary
        self._replay = None
        self.set_runs(runs)

    def bump(self, *parts: str) -> None:
        for part in parts:
            self.versions[part] += 1
        for call in self.on_change:
            call(parts)

    def set_runs(self, runs: dict[str, RunSummary]) -> None:
        self.runs = runs
        self.bump("runs")

    def follow(self, run_id: str | None) -> None:
        self.followed = FollowedRun(run_id) if run_id else None
        self.bump("run")

    def add_resource_sample(self, sample: ResourceSample) -> None:
        self.resources = sample
        self.resource_history.append(sample)
        self.bump("resources")

    def apply(self, event: Event) -> bool:
        """Fold one daemon message in, parsed here into its shared model; True when it asks for a re-sync."""
        message, kind = event.data, event.type
        followed = self.followed
        if kind == "resync":
            return True
        if kind == "initial_runs":
            self.set_runs(_RUNS.validate_python(message.get("data", {})))
        elif kind in ("run_created", "run_updated", "run_deleted"):
            run_id = message["run_id"]
            summary = None if kind == "run_deleted" else RunSummary.model_validate(message["data"])
            if self._replay is not None:
                self._replay.append((run_id, summary))
            previous = self.runs.pop(run_id, None) if summary is None else self.runs.get(run_id)
            if summary is not None:
                self.runs[run_id] = summary
            self.bump("runs")
            if (previous and previous.experiment_id) or (summary and summary.experiment_id):
                self.bump("experiments")  # a member run changed: its experiment's figures may have too
        elif kind == "run_state":  # a managed run changed state: on `runs` and on its own topic
            run = self.runs.get(message["run_id"])
            if run is not None:
                update = {"status": RunState(message["state"]), "error": message.get("error")}
                self.runs[message["run_id"]] = run.model_copy(update=update)
                self.bump("runs", *(("experiments",) if run.experiment_id else ()))
        elif str(message.get("topic", "")).startswith("experiment:"):
            # Before the followed-run branch: experiment_run_completed carries a run_id too.
            self.bump("experiments")
        elif followed is not None and message.get("run_id") == followed.run_id:
            if kind == "new_metrics":
                followed.add_step(LiteStep.of(Step.model_validate(message["data"])))
            elif kind == "scalars":
                followed.add_points(message["points"])
            elif kind == "run_event":
                followed.events.append(RunEvent.model_validate(message["data"]))
            elif kind == "log":
                followed.logs.append(_log_line(message))
            elif kind == "run_progress" and isinstance(message.get("epoch"), int):
                followed.epoch = message["epoch"]
            self.bump("run")
        elif message.get("topic") == "resources":
            self.add_resource_sample(ResourceSample.model_validate(message.get("data", message)))
        elif message.get("topic") in ("alerts", "notifications"):
            self.bump("alerts")
        return False
