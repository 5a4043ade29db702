"""The alert engine: rules in memory, evaluated incrementally on each ingested step, scalar batch,
refused payload and resource sample; alerts persisted, published, notified and sent to webhooks.

Evaluation runs inline on the event loop because it is cheap: per step, each watched layer field is
read once and, in the common case where nothing holds, one comparison clears a whole group of rules
(see `FieldPlan`); otherwise it is a predicate and a dict lookup per (rule, subject). Only a
transition (an alert firing or clearing, which is rare) does I/O, and the ingest route awaits it so
the alert is stored before the step's 202. Time-based conditions (`no_data_for`, and `for_seconds`
on a subject that stopped reporting) are checked every `alert_check_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pivotd.alerts.actions import Actions
from pivotd.alerts.notifications import Notifier, Priority
from pivotd.alerts.rules import LAYER_FIELDS, Rule, RuleSpec, Transition
from pivotd.errors import Conflict, InsufficientStorage, NotFound
from pivotd.hub import Hub
from pivotd.layerwise_decoder import StepPayload
from pivotd.settings import Settings
from pivotd.store import SeriesPoints, Store
from pivotd.store.monitoring import DeleteRule, PutAlert, PutRule
from pivotd.tasks import TaskSet
from pivotd.timefmt import iso

log = logging.getLogger(__name__)
ALERTS_TOPIC = "alerts"
_SYSTEM_PATHS = {
    "cpu_percent": ("cpu", "percent"),
    "memory_percent": ("memory", "percent"),
    "swap_percent": ("swap", "percent"),
    "disk_percent": ("disk", "percent"),
    "load_1m": ("load", "1m"),
}
_PRIORITY: dict[str, Priority] = {"low": "low", "medium": "medium", "high": "high", "critical": "high"}
_STATES = operator.attrgetter("states")
_LAYER_INDEX = re.compile(r"^layer_statistics\[(\d+)\]\.")


FieldReader = Callable[[Sequence[Any]], list[float | None]]


@dataclass(slots=True)
class FieldPlan:
    """The enabled rules on one layer-wise field, grouped so that one comparison per step can clear a
    whole group: `plain` threshold rules (cleared when min/max stay inside the tightest bounds),
    `growing` rules (cleared when no layer grew by the smallest factor) and `equal` rules (cleared when no
    value is one of their thresholds). `rest` is checked rule by rule."""

    name: str
    read: FieldReader
    plain: list[Rule]
    plain_low: float
    plain_high: float
    growing: list[Rule]
    growing_min: float
    equal: list[Rule]
    equal_values: frozenset[float]
    rest: list[Rule]
    tracks_growth: bool
    grouped: list[Rule]

    @classmethod
    def build(cls, name: str, rules: list[Rule]) -> FieldPlan:
        def groupable(rule: Rule) -> bool:
            return not rule.first_layer_only and not rule.run_scoped

        plain = [r for r in rules if groupable(r) and r.quiet_bounds is not None]
        growing = [r for r in rules if groupable(r) and r.tracks_previous]
        equal = [r for r in rules if groupable(r) and r.spec.condition == "equals" and r not in plain]
        bounds = [r.quiet_bounds for r in plain if r.quiet_bounds is not None]
        return cls(
            name,
            _field_reader(name),
            plain,
            max((b[0] for b in bounds), default=-math.inf),
            min((b[1] for b in bounds), default=math.inf),
            growing,
            min((r.spec.threshold or math.inf for r in growing), default=math.inf),
            equal,
            frozenset(r.spec.threshold for r in equal if r.spec.threshold is not None),
            [r for r in rules if r not in plain and r not in growing and r not in equal],
            any(r.tracks_previous for r in rules),
            plain + growing + equal,
        )


def _field_reader(name: str) -> FieldReader:
    """A reader of one field of every layer. Required fields are indexed directly (the payload was
    validated); optional ones give None where absent (no bias, no std ratio)."""
    section, key, *rest = LAYER_FIELDS[name]
    if name == "cross_layer_std_ratio":
        return lambda layers: [layer[section].get(key) for layer in layers]
    if key == "bias":
        inner = rest[0]
        return lambda layers: [(b.get(inner) if (b := layer[section].get(key)) else None) for layer in layers]
    if rest:
        inner = rest[0]
        return lambda layers: [layer[section][key][inner] for layer in layers]
    return lambda layers: [layer[section][key] for layer in layers]


Sieve = Callable[[Sequence[Any], dict[str, list[float | None]] | None, dict[str, list[float | None]]], list[FieldPlan]]
"""(a step's layers, the previous step's values by field or None, this step's to fill) -> the fields whose rules
must look at the step (usually none)."""

_READS = {
    "optional": "l[{section!r}].get({key!r})",
    "bias": "(b.get({inner!r}) if (b := l[{section!r}].get({key!r})) else None)",
    "nested": "l[{section!r}][{key!r}][{inner!r}]",
    "plain": "l[{section!r}][{key!r}]",
}


def compile_sieve(plan: list[FieldPlan]) -> Sieve:
    """One function for a whole layer plan that does, with its thresholds written in as constants, what
    `evaluate_steps` does first for each field: read its values (noting them for growth rules), then the
    whole-group tests that may clear the field for the step (`FieldPlan`). It returns the fields that were not
    cleared, which `evaluate_steps` then takes through the same tests group by group and on to the rules: a field
    passed on that the tests would have cleared costs time, never a transition.

    Cheaper than those tests as a loop over `FieldPlan` objects: no attribute look-ups or branches for empty groups;
    one test of whether any grouped rule of any field has a subject in state (usually none has); a field's min
    and max computed once for its threshold and growth groups; and growth cleared without a division per layer
    when the largest value is below the smallest previous one times the factor (all previous values positive).
    The 50-rule mix of `bench/rules_overhead.py`: docs/performance.md."""
    lines = ["def sieve(layers, prev, cur):", "    out = []"]
    names: dict[str, Any] = {"_growth": _growth}
    # The rules' subject dicts themselves: a rule mutates its `states` and never rebinds it, and a changed rule set
    # compiles a new sieve, so `any()` over them is the test `any(rule.states ...)` without an attribute read each.
    names["S"] = tuple(rule.states for field in plan for rule in field.grouped)
    lines.append("    busy = any(S)" if names["S"] else "    busy = False")
    reads, kinds = [], []
    for field in plan:
        section, key, *rest = LAYER_FIELDS[field.name]
        kind = "nested" if rest else "plain"
        if field.name == "cross_layer_std_ratio" or key == "bias":
            kind = "optional" if field.name == "cross_layer_std_ratio" else "bias"
        kinds.append(kind)
        reads.append(_READS[kind].format(section=section, key=key, inner=rest[0] if rest else None))
    if plan:  # every field in one pass over the layers, then a tuple of values per field
        lines.append(f"    columns = tuple(zip(*[({', '.join(reads)},) for l in layers]))")
    for i, field in enumerate(plan):
        optional = kinds[i] in ("optional", "bias")
        names |= {f"F{i}": field, f"S{i}": tuple(rule.states for rule in field.grouped), f"E{i}": field.equal_values}
        bound = field.growing_min * (1 - 1e-9)
        # Below this, max(v) / min(previous) rounds below `bound` whatever the rounding on the way.
        names |= {f"L{i}": field.plain_low, f"H{i}": field.plain_high, f"B{i}": bound, f"C{i}": bound * (1 - 1e-12)}
        lines.append(f"    v = columns[{i}]")
        lines.append("    p = v if None not in v else [x for x in v if x is not None]" if optional else "    p = v")
        if field.tracks_growth:
            lines.append(f"    cur[{field.name!r}] = v")
        if field.plain:
            lines.append("    lo, hi = (min(p), max(p)) if p else (0.0, 0.0)")
        elif field.growing:
            lines.append("    hi = max(p) if p else 0.0")
        tests = []
        if field.grouped:
            tests.append(f"(busy and any(S{i}))")
        if field.plain:
            tests.append(f"(p and not (L{i} <= lo and hi <= H{i}))")
        if field.growing:  # the division-free test first, where neither side has a None
            cleared = f"(p is v and None not in pv and (m := min(pv)) > 0 and hi < C{i} * m)"
            if not optional:
                cleared = f"((m := min(pv)) > 0 and hi < C{i} * m)"
            tests.append(
                f"(prev is not None and (pv := prev.get({field.name!r})) is not None and not {cleared} "
                f"and _growth(v, pv) >= B{i})"
            )
        if field.equal:
            tests.append(f"not E{i}.isdisjoint(p)")
        if field.rest:
            tests.append(_rest_test(field.rest, i, names))
        if tests:
            lines.append(f"    if {' or '.join(tests)}:")
            lines.append(f"        out.append(F{i})")
    lines.append("    return out")
    exec("\n".join(lines), names)  # text written above from the rules' own numbers and names
    sieve: Sieve = names["sieve"]
    return sieve


def _rest_test(rules: list[Rule], index: int, names: dict[str, Any]) -> str:
    """The sieve's test of a field's `rest` rules: whether they must look at the step. Where every one of them is a
    threshold or range on the first layer alone (the built-in `vanishing_gradient`), as `AlertEngine._check` clears
    such a rule with no subject in state: that rule's bounds, tightened over all of them, against the first value;
    otherwise always (they are checked rule by rule)."""
    if not all(r.first_layer_only and not r.run_scoped and not r.tracks_previous and r.quiet_bounds for r in rules):
        return "True"
    bounds = [r.quiet_bounds for r in rules if r.quiet_bounds is not None]
    low, high = max(b[0] for b in bounds), min(b[1] for b in bounds)
    names |= {f"R{index}": tuple(rule.states for rule in rules), f"RL{index}": low, f"RH{index}": high}
    return f"(any(R{index}) or ((f := v[0]) is not None and not (RL{index} <= f <= RH{index})))"


def _growth(values: list[float | None], previous: list[float | None]) -> float:
    """The largest value / previous value over the layers (division by zero or a missing side skipped)."""
    try:
        return max(map(operator.truediv, values, previous))  # type: ignore[arg-type]
    except (TypeError, ZeroDivisionError):
        return max((v / p for v, p in zip(values, previous, strict=True) if v is not None and p), default=0.0)


def rule_view(rule: Rule, created_at: float, updated_at: float) -> dict[str, Any]:
    spec = rule.spec.model_dump(mode="json", exclude_none=True)
    spec["scope"] = rule.spec.scope.model_dump(exclude_none=True)
    times = {"created_at": iso(created_at), "updated_at": iso(updated_at)}
    return {"rule_id": rule.rule_id, **spec, "builtin": rule.builtin, **times}


def _describe(t: Transition) -> str:
    spec = t.rule.spec
    where = t.subject
    if spec.condition == "no_data_for":
        return f"{where}: no data for {t.value:g} s (rule {spec.name})"
    if t.value is None:
        return f"{spec.metric} on {where} is not finite (rule {spec.name})"
    bound = f"{spec.range[0]:g}..{spec.range[1]:g}" if spec.range else f"{spec.threshold:g}"
    return f"{spec.metric} on {where} is {t.value:g} ({spec.condition.replace('_', ' ')} {bound}; rule {spec.name})"


class AlertEngine:
    def __init__(self, settings: Settings, store: Store, hub: Hub, notifier: Notifier, actions: Actions) -> None:
        self._settings = settings
        self._store = store
        self._hub = hub
        self._notifier = notifier
        self._actions = actions
        self.rules: dict[str, Rule] = {}
        self._times: dict[str, tuple[float, float]] = {}
        self._open: dict[tuple[str, str], dict[str, Any]] = {}
        self._by_kind: dict[str, list[Rule]] = {}
        self._layer_plan: list[FieldPlan] = []
        self._sieve: Sieve = compile_sieve([])
        # Last values, for grows_by_factor: per run, the last step's layer ids and the values of each
        # field a growth rule watches; per scalar subject, its last value.
        self._previous: dict[str, tuple[list[str], dict[str, list[float | None]]]] = {}
        self._growth_fields = False
        self._previous_scalar: dict[str, float] = {}
        self._tick: asyncio.Task[None] | None = None
        self._background = TaskSet()

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> AlertEngine:
        for rule_id, spec, builtin, created, updated in await self._store.monitoring.rules():
            try:
                self.rules[rule_id] = Rule(rule_id, RuleSpec.model_validate(spec), builtin)
                self._times[rule_id] = (created, updated)
            except ValueError as exc:
                log.error("alert rule %s is invalid and ignored: %s", rule_id, exc)
        now = time.time()
        for alert in await self._store.monitoring.open_alerts():
            rule = self.rules.get(alert["rule_id"])
            if rule is not None and rule.spec.enabled:
                self._open[(alert["rule_id"], alert["subject"])] = alert
                rule.restore_open(alert["subject"], alert.get("context", {}), now)
            else:  # its rule went away while the daemon was down (or in a crash mid-change)
                alert |= {"status": "resolved", "resolved_at": iso(now), "resolution": "rule no longer active"}
                await self._store.writer.submit(PutAlert(alert, 0.0))
        self._reindex()
        self._tick = asyncio.create_task(self._tick_loop(), name="pivotd-alert-tick")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        await self._background.wait()

    def _reindex(self) -> None:
        self._by_kind = {}
        for rule in self.rules.values():
            if rule.spec.enabled:
                self._by_kind.setdefault(rule.kind, []).append(rule)
        by_field: dict[str, list[Rule]] = {}
        for rule in self._by_kind.get("layer", ()):
            by_field.setdefault(rule.key, []).append(rule)
        self._layer_plan = [FieldPlan.build(name, rules) for name, rules in by_field.items()]
        self._growth_fields = any(plan.tracks_growth for plan in self._layer_plan)
        self._sieve = compile_sieve(self._layer_plan)

    # --- evaluation (synchronous, cheap) ----------------------------------------------------------

    def evaluate_steps(self, payloads: Sequence[StepPayload]) -> list[Transition]:
        """Layer-wise rules, field by field: a field's values are read once per step, and a rule with no
        subject in state skips the whole step with one min/max/membership test (`Rule.quiet`)."""
        plan = self._layer_plan
        run_rules = self._by_kind.get("run")
        if not plan and not run_rules:
            return []
        now = time.time()
        out: list[Transition] = []
        for payload in payloads:
            run_id = payload.metadata.run_id
            step = payload.metadata.global_step
            if run_rules:
                self._observe_run(run_rules, run_id, step, now, out)
            layers = payload.layer_statistics
            last = self._previous.get(run_id) if self._growth_fields else None
            current: dict[str, list[float | None]] = {}
            if self._growth_fields:
                ids = [layer["layer_id"] for layer in layers]
                if last is not None and last[0] != ids:
                    last = None  # different layers than the previous step: nothing to compare with
                self._previous[run_id] = (ids, current)
            for field in self._sieve(layers, last[1] if last is not None else None, current):
                values = field.read(layers)
                present = values if None not in values else [v for v in values if v is not None]
                previous: list[float | None] | None = None
                if field.tracks_growth:
                    previous = last[1].get(field.name) if last is not None else None
                    current[field.name] = values
                factor = _growth(values, previous) if previous is not None else 0.0
                # A group is cleared by one comparison for the whole step, unless a rule of the field has a
                # subject in state (a holding or fired condition must see every value): then every group is.
                busy = any(map(_STATES, field.grouped))
                if field.plain and (
                    busy or (present and not (field.plain_low <= min(present) and max(present) <= field.plain_high))
                ):
                    self._check(field.plain, run_id, step, layers, values, present, previous, 0.0, now, out)
                if field.growing and (busy or (previous is not None and factor >= field.growing_min * (1 - 1e-9))):
                    self._check(field.growing, run_id, step, layers, values, present, previous, factor, now, out)
                if field.equal and (busy or not field.equal_values.isdisjoint(present)):
                    self._check(field.equal, run_id, step, layers, values, present, previous, factor, now, out)
                if field.rest:
                    self._check(field.rest, run_id, step, layers, values, present, previous, factor, now, out)
        return out

    def _check(
        self,
        rules: list[Rule],
        run_id: str,
        step: int,
        layers: Sequence[Any],
        values: list[float | None],
        present: list[float],
        previous: list[float | None] | None,
        factor: float,
        now: float,
        out: list[Transition],
    ) -> None:
        """Rules one by one: a rule with no subject in state still skips the step with one test."""
        ids: list[str] | None = None
        for rule in rules:
            if rule.run_scoped and not rule.run_matches(run_id):
                continue
            if not rule.states:
                if rule.first_layer_only:
                    head = values[:1]
                    # No previous step (a run's first): nothing to grow from, which `quiet` reads from None.
                    before = previous[:1] if previous is not None else None
                    quiet = rule.quiet(head, before) if rule.tracks_previous else None
                    quiet = rule.quiet([v for v in head if v is not None], None) if quiet is None else quiet
                elif rule.quiet_bounds is not None:
                    bounds = rule.quiet_bounds
                    quiet = not present or (bounds[0] <= min(present) and max(present) <= bounds[1])
                elif rule.tracks_previous:
                    assert rule.spec.threshold is not None
                    quiet = previous is None or factor < rule.spec.threshold * (1 - 1e-9)
                elif rule.spec.condition == "equals":
                    quiet = rule.spec.threshold not in present
                else:
                    quiet = rule.quiet(present, None)
                if quiet:
                    continue
            ids = ids or [layer["layer_id"] for layer in layers]
            self._observe_layers(rule, run_id, step, ids, values, previous, now, out)

    def _observe_layers(
        self,
        rule: Rule,
        run_id: str,
        step: int,
        ids: list[str],
        values: list[float | None],
        previous: list[float | None] | None,
        now: float,
        out: list[Transition],
    ) -> None:
        prefix = f"run:{run_id}:"
        for index in range(1 if rule.first_layer_only else len(values)):
            value, layer_id = values[index], ids[index]
            if value is None or not rule.layer_matches(layer_id):
                continue
            context = {"run_id": run_id, "step": step, "layer_id": layer_id}
            before = previous[index] if previous is not None else None
            transition = rule.observe(prefix + layer_id, value, now, context, before)
            if transition is not None:
                out.append(transition)

    def evaluate_scalars(self, run_id: str, series: Mapping[str, SeriesPoints], last_step: int) -> list[Transition]:
        """Each series' values in the order sent, as if observed one by one; a rule with no state for the series
        skips it at once when its condition holds for none of them (one test in C, not a call per value)."""
        scalar_rules = self._by_kind.get("scalar")
        run_rules = self._by_kind.get("run")
        if not scalar_rules and not run_rules:
            return []
        now = time.time()
        out: list[Transition] = []
        if run_rules:
            self._observe_run(run_rules, run_id, last_step, now, out)
        growth = any(rule.tracks_previous for rule in scalar_rules or ())
        for name, points in series.items():
            subject = f"run:{run_id}:{name}"
            values = points.values.tolist()
            previous = [self._previous_scalar.get(subject), *values[:-1]] if growth else None
            for rule in scalar_rules or ():
                if not (rule.scalar_matches(name) and rule.run_matches(run_id)):
                    continue
                if not rule.silence and subject not in rule.states and rule.quiet(values, previous):
                    continue
                steps = points.steps.tolist()
                for index, value in enumerate(values):
                    context = {"run_id": run_id, "step": steps[index], "scalar": name}
                    transition = rule.observe(subject, value, now, context, previous[index] if previous else None)
                    if transition is not None:
                        out.append(transition)
            if growth:
                self._previous_scalar[subject] = values[-1]
        return out

    def _observe_run(self, rules: list[Rule], run_id: str, step: int | None, now: float, out: list[Transition]) -> None:
        subject = f"run:{run_id}"
        for rule in rules:
            if not rule.run_scoped or rule.run_matches(run_id):
                if rule.silence:  # on every step of every run: a run already seen and not silent is one write
                    state = rule.states.get(subject)
                    if state is not None and not state.fired:
                        state.last_seen = now
                        continue
                transition = rule.observe(subject, 0.0, now, {"run_id": run_id, "step": step})
                if transition is not None:
                    out.append(transition)

    def evaluate_rejection(self, run_id: str, step: int | None, field: str, layer_id: str | None) -> list[Transition]:
        """A payload refused for a non-finite number at `field` (`layer_statistics[2].gradient_flow.x`,
        `points[0].values.train_loss`): `not_finite` rules on that metric, and on any_value, fire."""
        now = time.time()
        name = field.rsplit(".", 1)[-1]
        index_match = _LAYER_INDEX.match(field)
        context = {"run_id": run_id, "step": step, "field": field}
        found: list[Transition | None] = [
            rule.observe_invalid(f"run:{run_id}", now, context)
            for rule in self._by_kind.get("run", ())
            if rule.run_matches(run_id)
        ]
        if index_match is not None:
            index = int(index_match.group(1))
            layer = layer_id or f"layer_statistics[{index}]"
            found += [
                rule.observe_invalid(f"run:{run_id}:{layer}", now, context | {"layer_id": layer})
                for rule in self._by_kind.get("layer", ())
                if rule.key == name
                and rule.run_matches(run_id)
                and rule.layer_matches(layer)
                and not (rule.first_layer_only and index)
            ]
        else:
            found += [
                rule.observe_invalid(f"run:{run_id}:{name}", now, context | {"scalar": name})
                for rule in self._by_kind.get("scalar", ())
                if rule.scalar_matches(name) and rule.run_matches(run_id)
            ]
        return [t for t in found if t is not None]

    def evaluate_sample(self, sample: dict[str, Any]) -> list[Transition]:
        now = sample["time"]
        out: list[Transition] = []
        for rule in self._by_kind.get("system", ()):
            section, key = _SYSTEM_PATHS[rule.key]
            value = sample.get(section, {}).get(key)
            if value is not None:
                transition = rule.observe("system", value, now, {})
                if transition is not None:
                    out.append(transition)
        for rule in self._by_kind.get("gpu", ()):
            for gpu in sample.get("gpu", ()):
                value = gpu.get(rule.key)
                if value is None or (rule.spec.scope.gpu is not None and gpu["id"] != rule.spec.scope.gpu):
                    continue
                transition = rule.observe(f"gpu:{gpu['id']}", value, now, {"gpu": gpu["id"]})
                if transition is not None:
                    out.append(transition)
        return out

    def on_sample(self, sample: dict[str, Any]) -> None:
        """Sampler listener: evaluation inline, any resulting I/O in the background."""
        transitions = self.evaluate_sample(sample)
        if transitions:
            self._background.spawn(self.apply(transitions))

    async def close_run(self, run_id: str, reason: str) -> None:
        """A run is gone or finished: stop watching it and resolve its open alerts with `reason`.
        The trainer calls this when a managed run ends (it is silent on purpose from then on)."""
        self.forget_run(run_id)
        for key in [k for k, a in self._open.items() if a.get("run_id") == run_id]:
            await self._resolve(self._open.pop(key), reason)

    def forget_run(self, run_id: str) -> None:
        """Drop every piece of evaluation state about a run."""
        for rule in self.rules.values():
            rule.forget(f"run:{run_id}")
        self._previous.pop(run_id, None)
        prefix = f"run:{run_id}:"
        for subject in [k for k in self._previous_scalar if k.startswith(prefix)]:
            del self._previous_scalar[subject]

    # --- transitions (I/O) ----------------------------------------------------------------------

    async def apply(self, transitions: list[Transition]) -> None:
        """Persist, publish, notify and deliver each transition; one open alert per (rule, subject)."""
        for transition in transitions:
            try:
                if transition.kind == "triggered":
                    await self._trigger(transition)
                else:
                    await self._resolve(self._open.pop((transition.rule.rule_id, transition.subject), None), None)
            except InsufficientStorage:  # the disk_full rule fires exactly then; the writer already said so
                log.warning("alert %s for %s kept in memory only: no disk space", transition.kind, transition.subject)
            except Exception:
                log.exception("could not record alert transition for %s", transition.subject)

    async def _trigger(self, t: Transition) -> None:
        key = (t.rule.rule_id, t.subject)
        if key in self._open:
            return
        spec = t.rule.spec
        alert: dict[str, Any] = {
            "alert_id": f"alert_{secrets.token_hex(6)}",
            "rule_id": t.rule.rule_id,
            "rule_name": spec.name,
            "severity": spec.severity,
            "message": _describe(t),
            "value": t.value,
            "threshold": spec.threshold,
            "triggered_at": iso(t.at),
            "status": "active",
            "metric": spec.metric,
            "condition": spec.condition,
            "subject": t.subject,
            "context": t.context,
        }
        for name in ("run_id", "step", "layer_id", "gpu", "scalar"):
            if name in t.context:
                alert[name] = t.context[name]
        self._open[key] = alert
        await asyncio.gather(
            self._store.writer.submit(PutAlert(alert, t.at)),
            self._notifier.notify("alert", _PRIORITY[spec.severity], alert["message"], alert, "alert_triggered"),
        )
        self._publish("alert_triggered", alert)
        if spec.action is not None and "run_id" in alert:
            self._background.spawn(self._act(spec.action, alert))

    async def _act(self, action: str, alert: dict[str, Any]) -> None:
        outcome = await self._actions.run(action, alert["run_id"], alert)
        alert["action"] = {"name": action, "outcome": outcome}
        await self._store.writer.submit(PutAlert(alert, 0.0))
        self._publish("alert_updated", alert)

    async def _resolve(self, alert: dict[str, Any] | None, reason: str | None) -> None:
        if alert is None:
            return
        alert["status"] = "resolved"
        alert["resolved_at"] = iso(time.time())
        if reason:
            alert["resolution"] = reason
        await asyncio.gather(
            self._store.writer.submit(PutAlert(alert, 0.0)),
            self._notifier.notify("alert", "low", f"Resolved: {alert['message']}", alert, "alert_resolved"),
        )
        self._publish("alert_resolved", alert)

    def _publish(self, kind: str, alert: dict[str, Any]) -> None:
        if self._hub.has_subscribers(ALERTS_TOPIC):
            message = {"type": kind, "topic": ALERTS_TOPIC, "data": alert}
            self._hub.publish((ALERTS_TOPIC,), orjson.dumps(message).decode())

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.alert_check_interval_s)
            now = time.time()
            transitions = [t for rule in self.rules.values() if rule.spec.enabled for t in rule.tick(now)]
            if transitions:
                await self.apply(transitions)

    # --- alerts API -----------------------------------------------------------------------------

    def open_alerts(self) -> list[dict[str, Any]]:
        return list(self._open.values())

    async def acknowledge(self, alert_id: str, by: str | None, notes: str | None) -> dict[str, Any]:
        alert = next((a for a in self._open.values() if a["alert_id"] == alert_id), None)
        if alert is None:
            stored = await self._store.monitoring.alert(alert_id)
            if stored is None:
                raise NotFound(f"alert {alert_id!r} not found")
            raise Conflict(f"alert {alert_id!r} is {stored['status']}; only open alerts can be acknowledged")
        if alert["status"] == "acknowledged":
            raise Conflict(f"alert {alert_id!r} is already acknowledged")
        alert |= {"status": "acknowledged", "acknowledged_at": iso(time.time())}
        alert |= {"acknowledged_by": by, "notes": notes}
        await self._store.writer.submit(PutAlert(alert, 0.0))
        self._publish("alert_acknowledged", alert)
        return alert

    # --- rules API ------------------------------------------------------------------------------

    def view(self, rule_id: str) -> dict[str, Any]:
        rule = self.rules.get(rule_id)
        if rule is None:
            raise NotFound(f"alert rule {rule_id!r} not found")
        return rule_view(rule, *self._times[rule_id])

    def list_rules(self) -> list[dict[str, Any]]:
        return [self.view(rule_id) for rule_id in self.rules]

    async def put_rule(self, spec: RuleSpec, rule_id: str | None = None) -> dict[str, Any]:
        """Create (no id) or replace a rule. Its open alerts are resolved if it is now disabled."""
        creating = rule_id is None
        rule_id = rule_id or f"rule_{secrets.token_hex(6)}"
        old = self.rules.get(rule_id)
        if not creating and old is None:
            raise NotFound(f"alert rule {rule_id!r} not found")
        await self._store.writer.submit(PutRule(rule_id, orjson.dumps(spec.model_dump(mode="json")), not creating))
        now = time.time()
        rule = Rule(rule_id, spec, old.builtin if old else False)
        self.rules[rule_id] = rule
        self._times[rule_id] = (self._times[rule_id][0] if old else now, now)
        # A changed rule starts over; its open alerts either clear (disabled) or carry on deduplicated.
        for (owner, subject), alert in list(self._open.items()):
            if owner != rule_id:
                continue
            if spec.enabled:
                rule.restore_open(subject, alert.get("context", {}), now)
            else:
                await self._resolve(self._open.pop((owner, subject)), "rule disabled")
        self._reindex()
        return self.view(rule_id)

    async def delete_rule(self, rule_id: str) -> None:
        await self._store.writer.submit(DeleteRule(rule_id))
        self.rules.pop(rule_id, None)
        self._times.pop(rule_id, None)
        for key in [k for k in self._open if k[0] == rule_id]:
            await self._resolve(self._open.pop(key), "rule deleted")
        self._reindex()
