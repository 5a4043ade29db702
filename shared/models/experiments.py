"""Experiments, their runs, statistical results and exports: the status words and the response models.

Three vocabularies describe where a run or an experiment stands, each defined once:

- `RunState` (`shared.models.runs`): a run's own state, as the runs routes, `/ws` and the TUI show it;
- `ExperimentRunStatus`: a run as the experiments routes show it, a closed list with no `lost` and no
  `queued`;
- `ExperimentStatus`: an experiment's status, derived from its runs (`paused` is the one word runs lack).

`EXPERIMENT_RUN_STATUS` is the one mapping from the first to the second (`succeeded` shows as `completed`,
`created` and `queued` as `pending`, `lost` as `failed`), and `RUN_STATES` its inverse, which filters use.
Every run view of the experiments routes carries both words (`status` and `state`), so a client can show a
run by its own state everywhere, as the TUI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from shared.models.runs import RunKind, RunState, states_shown_as
from shared.models.timestamps import Timestamp


class ExperimentStatus(StrEnum):
    """An experiment's status: never stored, derived from its runs and its lifecycle (docs/api.md)."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_EXPERIMENT_STATUSES = frozenset({ExperimentStatus.COMPLETED, ExperimentStatus.FAILED, ExperimentStatus.CANCELLED})
"""Statuses an experiment ends in (a run attached later can still move it)."""


class ExperimentRunStatus(StrEnum):
    """A run as the experiments routes show it: `status` of their run views, `runs_by_status`, their filters."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


EXPERIMENT_RUN_STATUS: MappingProxyType[RunState, ExperimentRunStatus] = MappingProxyType(
    {
        RunState.CREATED: ExperimentRunStatus.PENDING,
        RunState.QUEUED: ExperimentRunStatus.PENDING,
        RunState.RUNNING: ExperimentRunStatus.RUNNING,
        RunState.SUCCEEDED: ExperimentRunStatus.COMPLETED,
        RunState.FAILED: ExperimentRunStatus.FAILED,
        RunState.CANCELLED: ExperimentRunStatus.CANCELLED,
        RunState.LOST: ExperimentRunStatus.FAILED,  # no `lost` in this vocabulary: the run's error says why
    }
)
"""The one mapping from a run's state to the experiments routes' word for it."""

RUN_STATES = states_shown_as(EXPERIMENT_RUN_STATUS, ExperimentRunStatus)
"""The run states each experiment-run word stands for (`failed`: failed and lost), for filters in SQL."""


def experiment_run_status(state: str) -> ExperimentRunStatus:
    """The experiments routes' word for a run in `state` (a `RunState` or its value)."""
    return EXPERIMENT_RUN_STATUS[RunState(state)]


def count_by_status(by_state: Mapping[RunState, int]) -> dict[ExperimentRunStatus, int]:
    """Run counts by state, regrouped under the experiments routes' words (`failed` adds up failed and lost)."""
    counts: dict[ExperimentRunStatus, int] = {}
    for state, count in by_state.items():
        status = experiment_run_status(state)
        counts[status] = counts.get(status, 0) + count
    return counts


ExperimentAction = Literal["start", "pause", "resume", "cancel"]
Aggregate = Literal["last", "best", "mean"]
"""Which value of a run's scalar a summary or a test uses: its last point, its best point (the minimum for a
name containing `loss`, else the maximum) or the mean of its points."""
Alternative = Literal["two_sided", "less", "greater"]
TestType = Literal["t_test", "paired_t_test", "mann_whitney", "anova"]
"""The tests pivotd runs; `test_type` in a request may also use an alias (`two_sample_t_test`, ...)."""
TEST_TYPES: tuple[TestType, ...] = get_args(TestType)
ExportPart = Literal["config", "results", "runs", "telemetry"]
EXPORT_PARTS: tuple[ExportPart, ...] = get_args(ExportPart)


class _Sparse(BaseModel):
    """A model whose optional parts the wire leaves out rather than sending as null: the fields named in
    `_absent_when_none` are dropped from the JSON while None (the schema lists them, not required)."""

    _absent_when_none: ClassVar[tuple[str, ...]] = ()

    def _absent(self) -> list[str]:
        return [name for name in self._absent_when_none if getattr(self, name) is None]

    # No return annotation: pydantic would take it for the serialised schema, and the OpenAPI document would
    # lose the model's.
    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        for name in self._absent():
            data.pop(name, None)
        return data


# ---- experiments --------------------------------------------------------------------------------------------


class ExperimentFacts(BaseModel):
    """An experiment without its config (as an export's `experiment` shows it)."""

    id: str
    name: str
    description: str | None
    status: ExperimentStatus
    tags: list[str]
    total_runs: int = Field(ge=0)
    started_at: Timestamp | None = Field(description="When `start` ran, else its first run's start")
    completed_at: Timestamp | None = Field(description="Its last run's end (or the cancel), once final")
    created_at: Timestamp
    updated_at: Timestamp


class ExperimentPublic(ExperimentFacts):
    """One experiment, as lists and writes answer it."""

    config: dict[str, Any] = Field(description="Stored and returned as given; `type: sweep` makes it startable")


class ExperimentRunRef(BaseModel):
    """One of the runs an experiment's detail lists."""

    id: str
    status: ExperimentRunStatus
    state: RunState = Field(description="The run's own state, as the runs routes show it")
    progress: float | None = Field(ge=0, le=1)
    group: str | None


class BestRun(BaseModel):
    run_id: str
    group: str | None
    value: float


class ResultsSummary(_Sparse):
    """Counts over all the experiment's runs, and (when it is judged by a metric) the best run so far.

    Besides these fields, `best_<metric>` (e.g. `best_val_accuracy`) repeats `best_run.value`. Without a metric,
    `metric` and `best_run` are left out; with one, `best_run` is null until a run has a value.
    """

    model_config = ConfigDict(extra="allow")

    total_runs: int = Field(ge=0)
    runs_by_status: dict[ExperimentRunStatus, int]
    runs_by_state: dict[RunState, int] = Field(description="The same runs counted by their own state")
    metric: str | None = None
    best_run: BestRun | None = None

    def _absent(self) -> list[str]:
        return ["metric", "best_run"] if self.metric is None else []


class ExperimentDetail(ExperimentPublic):
    """`GET /api/v1/experiments/{id}`, and the answer of its actions."""

    runs: list[ExperimentRunRef] = Field(description="The first 100, oldest first")
    results_summary: ResultsSummary
    progress: float = Field(ge=0, le=1, description="Runs finished over all runs; 0 with none")
    epoch_progress: float | None = Field(ge=0, le=1, description="Epochs done over those its managed runs declare")
    eta_seconds: float | None = Field(ge=0, description="Time left at the pace so far; 0 once final")


class ExperimentRun(BaseModel):
    """A run of an experiment, as its runs list and its export show it."""

    id: str
    experiment_id: str
    group: str | None
    kind: RunKind
    status: ExperimentRunStatus
    state: RunState = Field(description="The run's own state, as the runs routes show it")
    progress: float | None = Field(ge=0, le=1)
    hyperparameters: dict[str, Any]
    metadata: dict[str, Any]
    metrics: dict[str, float] = Field(description="Last value of each scalar")
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None


class AttachedMeta(BaseModel):
    attached: int = Field(ge=0)


class RunsAttached(BaseModel):
    """`POST /api/v1/experiments/{id}/runs`: the runs as they now stand, in the order given."""

    data: list[ExperimentRun]
    meta: AttachedMeta


# ---- statistical results ------------------------------------------------------------------------------------


class GroupStats(BaseModel):
    label: str
    n: int
    mean: float
    std: float = Field(description="Sample standard deviation (n - 1)")


class SumOfSquares(BaseModel):
    between: float
    within: float
    total: float


class Interpretation(BaseModel):
    significant: bool
    magnitude: Literal["negligible", "small", "medium", "large"]
    summary: str = Field(description="One plain-language sentence")
    significance: Literal["significant", "not_significant"]
    effect_magnitude: Literal["negligible", "small", "medium", "large"]
    practical_significance: str


class StatisticalResult(_Sparse):
    """A stored statistical test over an experiment's runs (docs/api.md, statistical results)."""

    _absent_when_none = ("sum_of_squares", "pairing")

    id: str
    experiment_id: str
    test_type: str = Field(description="As asked, alias included")
    test: TestType = Field(description="The test that ran")
    metric: str
    aggregate: Aggregate
    groups: list[str]
    values: dict[str, list[float]]
    statistic: float
    p_value: float
    degrees_of_freedom: float | list[float] | None = Field(description="ANOVA: [between, within]")
    effect_size: float
    effect_size_type: str = Field(description="`hedges_g`, or `eta_squared` for ANOVA")
    effect_sizes: dict[str, float]
    confidence_interval: list[float | None] | None = Field(
        description="Of the difference of means, first minus second; a one-sided test's open end is null"
    )
    confidence_level: float
    alpha: float
    alternative: Alternative
    sample_sizes: list[int]
    means: list[float]
    std_devs: list[float]
    group_stats: list[GroupStats]
    sum_of_squares: SumOfSquares | None = Field(default=None, description="ANOVA only")
    interpretation: Interpretation
    runs: dict[str, list[str]] = Field(description="The runs whose values entered, by group")
    note: str | None = Field(default=None, description="Why runs were left out, when some were")
    excluded_runs: dict[str, list[str]] = Field(default_factory=dict, description="Runs left out, by group")
    pairing: Literal["seed", "order"] | None = Field(default=None, description="Paired tests only")
    created_at: Timestamp


# ---- exports ------------------------------------------------------------------------------------------------


class GroupSummaryPublic(BaseModel):
    """One group's figures for one metric, over its runs that count (completed, or external still running)."""

    experiment_id: str
    experiment_name: str
    group: str
    metric: str
    n: int = Field(ge=0)
    mean: float | None
    std: float | None
    ci95: list[float] | None = Field(description="95% t interval of the mean; null below 2 values")
    best: float | None
    run_ids: list[str]


class ExportResults(BaseModel):
    results_summary: ResultsSummary
    progress: float = Field(ge=0, le=1)
    groups: list[GroupSummaryPublic]
    statistical_results: list[StatisticalResult] = Field(description="The newest 100")


class ExperimentExport(_Sparse):
    """`POST /api/v1/experiments/{id}/export` as JSON: the parts asked for in `include`, the others absent."""

    _absent_when_none = ("config", "results", "runs", "telemetry", "telemetry_truncated")

    experiment: ExperimentFacts
    include: list[ExportPart]
    exported_at: Timestamp
    config: dict[str, Any] | None = None
    results: ExportResults | None = None
    runs: list[ExperimentRun] | None = None
    telemetry: list[dict[str, Any]] | None = Field(default=None, description="The experiment's telemetry events")
    telemetry_truncated: bool | None = Field(default=None, description="Present (true) when events were left out")


class WelchTest(_Sparse):
    """Welch's test between the two rows of one metric; `error` instead of figures when the data cannot support
    it."""

    _absent_when_none = (
        "error", "statistic", "degrees_of_freedom", "p_value", "effect_size", "effect_size_type",
        "confidence_interval", "significant",
    )  # fmt: skip

    test: Literal["welch_t_test"] = "welch_t_test"
    metric: str
    groups: list[str]
    error: str | None = None
    statistic: float | None = None
    degrees_of_freedom: float | None = None
    p_value: float | None = None
    effect_size: float | None = None
    effect_size_type: str | None = None
    confidence_interval: list[float | None] | None = None
    significant: bool | None = None


class ComparisonReport(BaseModel):
    """`POST /api/v1/export/comparison` as JSON."""

    template: Literal["publication"]
    generated_at: Timestamp
    metrics: list[str]
    rows: list[GroupSummaryPublic]
    welch_tests: dict[str, WelchTest] = Field(description="Per metric that exactly two rows report")
