"""The alert engine's generated sieve clears exactly the steps that the per-field tests it replaces would clear.

`compile_sieve` writes the whole-group tests of a layer plan (`FieldPlan`) into one function. Each case runs two
engines with the same rules over the same steps, one with the sieve and one that takes every field through the
group-by-group tests, and compares every transition.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pivotd.alerts.engine import AlertEngine, FieldPlan
from pivotd.alerts.rules import LAYER_FIELDS, Rule, RuleSpec
from shared.models.layerwise import LayerwisePayload
from shared.samples import layerwise_payload

CONDITIONS = ("greater_than", "less_than", "outside_range", "equals", "not_equals", "grows_by_factor", "not_finite")


def _engine(specs: list[dict[str, Any]], *, sieve: bool) -> AlertEngine:
    engine = AlertEngine(None, None, None, None, None)  # type: ignore[arg-type]  # evaluation uses none of them
    for index, spec in enumerate(specs):
        engine.rules[f"r{index}"] = Rule(f"r{index}", RuleSpec.model_validate(spec))
    engine._reindex()
    if not sieve:
        plan: list[FieldPlan] = engine._layer_plan
        engine._sieve = lambda layers, previous, current: plan
    return engine


def _spec(rng: random.Random, index: int) -> dict[str, Any]:
    condition = rng.choice(CONDITIONS)
    spec: dict[str, Any] = {"name": f"rule{index}", "metric": rng.choice(list(LAYER_FIELDS)), "condition": condition}
    threshold = rng.choice([0.0, 0.01, 0.05, 0.2, 0.5, 1.0])
    if condition == "grows_by_factor":
        spec["threshold"] = rng.choice([1.01, 1.5, 3.0])
    elif condition == "outside_range":
        spec["range"] = sorted([threshold, rng.choice([0.1, 0.3, 0.9])])
    elif condition != "not_finite":
        spec["threshold"] = threshold
    if rng.random() < 0.3:  # the first layer alone, a layer name that matches none, or some runs
        spec["scope"] = rng.choice([{"layer": "@first"}, {"layer": "first"}, {"run": "run-a*"}])
    return spec


def _step(rng: random.Random, run_id: str, step: int) -> LayerwisePayload:
    document = layerwise_payload(run_id, step, layers=rng.choice([1, 3, 4]), rng=rng)
    for layer in document["layer_statistics"]:
        if rng.random() < 0.3:
            layer["parameter_statistics"].pop("bias")
        if rng.random() < 0.2:
            layer["gradient_flow"]["gradient_l2_norm"] = rng.choice([0.0, 0.2, 0.5, 5.0])
        if rng.random() < 0.1:
            layer["intermediate_features"]["activation_std"] = 0.05
    return LayerwisePayload.model_validate(document)


def _seen(engine: AlertEngine, payload: LayerwisePayload) -> list[tuple[str, str, str, float | None]]:
    return [(t.kind, t.rule.rule_id, t.subject, t.value) for t in engine.evaluate_steps([payload])]


@pytest.mark.parametrize("seed", range(40))
def test_the_sieve_changes_no_transition(seed: int) -> None:
    rng = random.Random(seed)
    specs = [_spec(rng, index) for index in range(rng.randint(1, 12))]
    fast, slow = _engine(specs, sieve=True), _engine(specs, sieve=False)
    fired = 0
    for step in range(40):
        payload = _step(rng, rng.choice(["run-a1", "run-b"]), step)
        seen = _seen(fast, payload)
        assert seen == _seen(slow, payload), (specs, step)
        fired += len(seen)
    if seed == 0:
        assert fired  # the thresholds are within reach: transitions are compared, not only silence
