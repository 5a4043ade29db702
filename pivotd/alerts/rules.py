"""Alert rules: their wire shape, validation, and pure incremental evaluation.

Nothing here does I/O or reads the clock: every observation carries its own time, so each condition,
`for_seconds`, deduplication and auto-resolution are testable as plain function calls. A compiled
`Rule` keeps per-subject state (when its condition started to hold, whether it fired, the previous
value) so evaluating a new value costs a predicate call and a dict lookup, never a scan of history.

Subjects: `system`, `gpu:<index>`, `run:<run_id>` (run-wide metrics), `run:<run_id>:<scalar name>` and
`run:<run_id>:<layer_id>`. One open alert exists per (rule, subject).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.models.alerts import AlertCondition, AlertScope, AlertSeverity, RuleAction

Condition = AlertCondition
Severity = AlertSeverity
MetricKind = Literal["system", "gpu", "run", "scalar", "layer"]

SYSTEM_METRICS = {"cpu_percent", "memory_percent", "swap_percent", "disk_percent", "load_1m"}
# gpu_<key>: <key> as the sampler reports it per GPU.
GPU_METRICS = {
    "gpu_utilization": "utilization",
    "gpu_temperature": "temperature",
    "gpu_memory_percent": "memory_percent",
    "gpu_power_watts": "power_watts",
}
# Layer-wise fields by name -> where they live in a layer of the layer-wise payload.
LAYER_FIELDS: dict[str, tuple[str, ...]] = {
    "activation_std": ("intermediate_features", "activation_std"),
    "activation_mean": ("intermediate_features", "activation_mean"),
    "cross_layer_std_ratio": ("intermediate_features", "cross_layer_std_ratio"),
    "gradient_l2_norm": ("gradient_flow", "gradient_l2_norm"),
    "gradient_std": ("gradient_flow", "gradient_std"),
    "gradient_max_abs": ("gradient_flow", "gradient_max_abs"),
    "weight_std": ("parameter_statistics", "weight", "std"),
    "weight_mean": ("parameter_statistics", "weight", "mean"),
    "weight_spectral_norm": ("parameter_statistics", "weight", "spectral_norm"),
    "weight_frobenius_norm": ("parameter_statistics", "weight", "frobenius_norm"),
    "bias_std": ("parameter_statistics", "bias", "std"),
    "bias_mean_abs": ("parameter_statistics", "bias", "mean_abs"),
}
# Any number a run sends (a step, a scalar point, or a refused non-finite payload).
RUN_METRICS = {"any_value"}
SCALAR_PREFIX = "scalar:"
# Scalar names common enough to be written without `scalar:`; anything else needs the prefix, so a
# typo in a system or layer metric is an error rather than a rule that silently never fires.
_BARE_SCALAR = re.compile(r"^((train|val|valid|validation|test|eval)_[A-Za-z0-9_./-]+|loss|accuracy|learning_rate|lr)$")
_SCALAR_NAME = re.compile(r"^[A-Za-z0-9_./*?\[\]-]{1,128}$")
FIRST_LAYER = "@first"
COMPARISONS = {"greater_than", "less_than", "equals", "not_equals"}


def metric_kind(metric: str) -> tuple[MetricKind, str]:
    """(kind, key) of a metric name; raises ValueError naming the accepted forms."""
    if metric in SYSTEM_METRICS:
        return "system", metric
    if metric in GPU_METRICS:
        return "gpu", GPU_METRICS[metric]
    if metric in LAYER_FIELDS:
        return "layer", metric
    if metric in RUN_METRICS:
        return "run", metric
    name = metric.removeprefix(SCALAR_PREFIX)
    if (metric.startswith(SCALAR_PREFIX) or _BARE_SCALAR.match(metric)) and _SCALAR_NAME.match(name):
        return "scalar", name
    system = ", ".join(sorted(SYSTEM_METRICS | set(GPU_METRICS)))
    raise ValueError(
        f"metric: unknown metric {metric!r}; use a system metric ({system}), "
        f"a layer-wise field ({', '.join(LAYER_FIELDS)}), any_value, or a run scalar as scalar:<name> "
        "(train_*, val_*, test_*, eval_*, loss, accuracy may omit the prefix; the name may be a glob)"
    )


Scope = AlertScope


class RuleSpec(BaseModel):
    """An alert rule as clients send and receive it (the alert API's fields plus PIVOT's)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    metric: Annotated[str, Field(min_length=1, max_length=140)]
    condition: Condition
    threshold: Annotated[float, Field(allow_inf_nan=False)] | None = None
    range: tuple[Annotated[float, Field(allow_inf_nan=False)], Annotated[float, Field(allow_inf_nan=False)]] | None = (
        None
    )
    severity: Severity = AlertSeverity.MEDIUM
    enabled: bool = True
    for_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = 0.0
    scope: Scope = Field(default_factory=Scope)
    action: RuleAction | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> RuleSpec:
        kind, _ = metric_kind(self.metric)
        c = self.condition
        if c in COMPARISONS and self.threshold is None:
            raise ValueError(f"threshold: required for condition {c}")
        if c == "no_data_for" and (self.threshold is None or self.threshold <= 0):
            raise ValueError("threshold: no_data_for needs the silence in seconds (> 0) as threshold")
        if c == "grows_by_factor" and (self.threshold is None or self.threshold <= 1):
            raise ValueError("threshold: grows_by_factor needs a factor greater than 1")
        if c == "outside_range":
            if self.range is None:
                raise ValueError("range: outside_range needs range: [low, high]")
            if self.range[0] > self.range[1]:
                raise ValueError("range: low must not exceed high")
        if c == "no_data_for" and kind in ("system", "gpu"):
            raise ValueError("condition: no_data_for applies to run metrics (a run going silent)")
        if c == "not_finite" and kind in ("system", "gpu"):
            raise ValueError("condition: not_finite applies to run metrics (system counters are always finite)")
        if kind == "run" and c not in ("not_finite", "no_data_for"):
            raise ValueError("condition: any_value supports only not_finite and no_data_for")
        if self.scope.gpu is not None and kind != "gpu":
            raise ValueError("scope.gpu: only gpu_* metrics have a GPU")
        if self.scope.layer is not None and kind != "layer":
            raise ValueError("scope.layer: only layer-wise fields have a layer")
        if self.scope.run is not None and kind in ("system", "gpu"):
            raise ValueError("scope.run: system metrics belong to no run")
        if self.action is not None and kind in ("system", "gpu"):
            raise ValueError("action: pause/cancel act on the run an alert fired for; system metrics have none")
        return self


@dataclass(slots=True)
class SubjectState:
    since: float | None = None
    """When the condition started to hold (None: it does not hold)."""
    fired: bool = False
    last_seen: float = 0.0
    value: float | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Literal["triggered", "resolved"]
    rule: Rule
    subject: str
    value: float | None
    at: float
    context: dict[str, Any]


def _predicate(spec: RuleSpec) -> Callable[[float, float | None], bool]:
    """(value, previous value) -> does the condition hold. Values reaching here are finite."""
    t = spec.threshold if spec.threshold is not None else 0.0
    match spec.condition:
        case "greater_than":
            return lambda v, _: v > t
        case "less_than":
            return lambda v, _: v < t
        case "equals":
            return lambda v, _: v == t
        case "not_equals":
            return lambda v, _: v != t
        case "outside_range":
            assert spec.range is not None
            low, high = spec.range
            return lambda v, _: v < low or v > high
        case "grows_by_factor":
            return lambda v, p: p is not None and p > 0 and v >= t * p
        case _:  # not_finite: every accepted value is finite; no_data_for: data arriving clears it
            return lambda v, _: not math.isfinite(v)


def _quiet(spec: RuleSpec) -> Callable[[list[float], list[float | None] | None], bool]:
    """The whole-batch form of `_predicate`: min/max/membership in C instead of a call per value."""
    t = spec.threshold if spec.threshold is not None else 0.0
    match spec.condition:
        case "greater_than":
            return lambda vs, _: not vs or max(vs) <= t
        case "less_than":
            return lambda vs, _: not vs or min(vs) >= t
        case "equals":
            return lambda vs, _: t not in vs
        case "not_equals":
            return lambda vs, _: all(v == t for v in vs)
        case "outside_range":
            assert spec.range is not None
            low, high = spec.range
            return lambda vs, _: not vs or (low <= min(vs) and max(vs) <= high)
        case "grows_by_factor":
            return lambda vs, ps: (
                ps is None
                or not any(
                    v is not None and p is not None and p > 0 and v >= t * p for v, p in zip(vs, ps, strict=False)
                )
            )
        case _:
            return lambda vs, _: True


def _quiet_bounds(spec: RuleSpec) -> tuple[float, float] | None:
    if spec.condition == "greater_than" and spec.threshold is not None:
        return -math.inf, spec.threshold
    if spec.condition == "less_than" and spec.threshold is not None:
        return spec.threshold, math.inf
    if spec.condition == "outside_range" and spec.range is not None:
        return spec.range
    return None


def _glob(pattern: str | None) -> Callable[[str], bool]:
    if pattern is None:
        return lambda _: True
    if any(ch in pattern for ch in "*?["):
        compiled = re.compile(fnmatch.translate(pattern))
        return lambda s: compiled.match(s) is not None
    return lambda s: s == pattern


class Rule:
    """A rule compiled for evaluation, with its per-subject state."""

    def __init__(self, rule_id: str, spec: RuleSpec, builtin: bool = False) -> None:
        self.rule_id = rule_id
        self.spec = spec
        self.builtin = builtin
        self.kind, self.key = metric_kind(spec.metric)
        self.path = LAYER_FIELDS.get(self.key, ())
        self.holds = _predicate(spec)
        self._quiet = _quiet(spec)
        self.tracks_previous = spec.condition == "grows_by_factor"
        self.silence = spec.condition == "no_data_for"
        self.run_scoped = spec.scope.run is not None
        self.run_matches = _glob(spec.scope.run)
        self.quiet_bounds = _quiet_bounds(spec)
        """(low, high): the condition holds for none of a set of values when low <= min and max <= high."""
        self.first_layer_only = spec.scope.layer == FIRST_LAYER
        self.layer_matches = _glob(None if self.first_layer_only else spec.scope.layer)
        self.scalar_matches = _glob(self.key) if self.kind == "scalar" else _glob(None)
        self.states: dict[str, SubjectState] = {}

    def observe(
        self, subject: str, value: float, now: float, context: dict[str, Any], previous: float | None = None
    ) -> Transition | None:
        """Feed one value of one subject (and, for grows_by_factor, its previous value); returns a
        transition when the alert fires or clears."""
        state = self.states.get(subject)
        if self.silence:
            if state is None:
                self.states[subject] = SubjectState(last_seen=now, context=context)
                return None
            state.last_seen = now
            if state.fired:
                state.fired = False
                return Transition("resolved", self, subject, value, now, context)
            return None
        if self.holds(value, previous):
            if state is None:
                state = self.states[subject] = SubjectState()
            if state.since is None:
                state.since = now
            state.value, state.context = value, context
            if not state.fired and now - state.since >= self.spec.for_seconds:
                state.fired = True
                return Transition("triggered", self, subject, value, now, context)
            return None
        if state is None:
            return None
        del self.states[subject]  # only subjects whose condition holds (or fired) keep state
        return Transition("resolved", self, subject, value, now, context) if state.fired else None

    def quiet(self, values: list[float], previous: list[float | None] | None) -> bool:
        """True when the condition holds for none of `values` (one per subject, e.g. per layer), so a rule
        with no subject in state can skip them all at once. `previous` is aligned with `values`."""
        return self._quiet(values, previous)

    def observe_invalid(self, subject: str, now: float, context: dict[str, Any]) -> Transition | None:
        """A refused non-finite value: `not_finite` fires at once (for_seconds aside); others ignore it."""
        if self.spec.condition != "not_finite":
            return None
        state = self.states.setdefault(subject, SubjectState())
        state.since = state.since if state.since is not None else now
        state.context = context
        if not state.fired and now - state.since >= self.spec.for_seconds:
            state.fired = True
            return Transition("triggered", self, subject, None, now, context)
        return None

    def tick(self, now: float) -> list[Transition]:
        """Time passing with no data: silence thresholds and `for_seconds` of conditions still holding."""
        transitions = []
        for subject, state in self.states.items():
            if state.fired:
                continue
            if self.silence:
                assert self.spec.threshold is not None
                if now - state.last_seen >= self.spec.threshold:
                    state.fired = True
                    silent = round(now - state.last_seen, 3)
                    transitions.append(Transition("triggered", self, subject, silent, now, state.context))
            elif state.since is not None and self.spec.for_seconds and now - state.since >= self.spec.for_seconds:
                state.fired = True
                transitions.append(Transition("triggered", self, subject, state.value, now, state.context))
        return transitions

    def forget(self, prefix: str) -> None:
        """Drop state for subjects starting with `prefix` (a deleted or finished run)."""
        for subject in [s for s in self.states if s == prefix or s.startswith(prefix + ":")]:
            del self.states[subject]

    def restore_open(self, subject: str, context: dict[str, Any], now: float) -> None:
        """An alert left open by a previous daemon: keep it deduplicated and let it resolve normally."""
        self.states[subject] = SubjectState(since=now, fired=True, last_seen=now, context=context)
