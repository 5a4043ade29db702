"""Pure rule evaluation: every condition, for_seconds, scope, deduplication, auto-resolve, silence."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pivotd.alerts.rules import Rule, RuleSpec, metric_kind


def rule(**fields: Any) -> Rule:
    spec = {"name": "r", "metric": "cpu_percent", "condition": "greater_than", "threshold": 10.0} | fields
    return Rule("rule_1", RuleSpec.model_validate(spec))


def feed(r: Rule, values: list[float], subject: str = "system", start: float = 0.0) -> list[str]:
    """Kinds of transitions, one per value ('' when none), values one second apart. Each call checks
    that `quiet` (the batch shortcut) agrees with the per-value predicate."""
    out = []
    previous = None
    for i, value in enumerate(values):
        if not r.states:
            assert r.quiet([value], [previous]) is not r.holds(value, previous), (value, previous)
        t = r.observe(subject, value, start + i, {}, previous)
        out.append(t.kind if t else "")
        previous = value
    return out


@pytest.mark.parametrize(
    ("fields", "values", "expected"),
    [
        ({"condition": "greater_than", "threshold": 10}, [5, 11, 12, 9], ["", "triggered", "", "resolved"]),
        ({"condition": "less_than", "threshold": 10}, [11, 9, 8, 10], ["", "triggered", "", "resolved"]),
        ({"condition": "equals", "threshold": 3}, [2, 3, 3, 4], ["", "triggered", "", "resolved"]),
        ({"condition": "not_equals", "threshold": 3}, [3, 4, 5, 3], ["", "triggered", "", "resolved"]),
        (
            {"condition": "outside_range", "threshold": None, "range": [0, 100]},
            [50, 101, -1, 99],
            ["", "triggered", "", "resolved"],
        ),
    ],
)
def test_comparison_conditions_fire_once_and_resolve(fields: dict, values: list[float], expected: list[str]) -> None:
    assert feed(rule(**fields), values) == expected


def test_grows_by_factor_compares_with_the_previous_value() -> None:
    r = rule(metric="gradient_l2_norm", condition="grows_by_factor", threshold=10)
    assert feed(r, [1.0, 2.0, 30.0, 40.0, 35.0], "run:a:l0") == ["", "", "triggered", "resolved", ""]


def test_for_seconds_needs_the_condition_to_hold_that_long() -> None:
    r = rule(for_seconds=2.5)
    assert feed(r, [11, 11, 11, 11, 5]) == ["", "", "", "triggered", "resolved"]
    assert feed(r, [11, 11, 5, 11, 11], start=10) == ["", "", "", "", ""]  # interrupted: the clock restarts


def test_for_seconds_fires_from_the_tick_when_a_subject_stops_reporting() -> None:
    r = rule(for_seconds=5)
    assert feed(r, [11]) == [""]
    assert r.tick(4.0) == []
    [transition] = r.tick(5.0)
    assert transition.kind == "triggered" and transition.value == 11
    assert r.tick(6.0) == []


def test_one_alert_per_subject_and_subjects_are_independent() -> None:
    r = rule()
    assert feed(r, [11, 12, 13], "gpu:0") == ["triggered", "", ""]
    assert feed(r, [11], "gpu:1") == ["triggered"]
    assert feed(r, [1], "gpu:0") == ["resolved"]


def test_not_finite_fires_on_a_refused_value_and_clears_on_the_next_finite_one() -> None:
    r = rule(metric="any_value", condition="not_finite", threshold=None)
    assert r.observe_invalid("run:a", 0.0, {}).kind == "triggered"  # type: ignore[union-attr]
    assert r.observe_invalid("run:a", 1.0, {}) is None
    assert r.observe("run:a", 0.0, 2.0, {}).kind == "resolved"  # type: ignore[union-attr]


def test_no_data_for_fires_after_silence_and_resolves_when_data_returns() -> None:
    r = rule(metric="any_value", condition="no_data_for", threshold=30)
    assert r.observe("run:a", 0.0, 100.0, {"run_id": "a"}) is None
    assert r.tick(129.0) == []
    [silent] = r.tick(130.0)
    assert silent.kind == "triggered" and silent.value == 30 and silent.context == {"run_id": "a"}
    assert r.tick(200.0) == []
    assert r.observe("run:a", 0.0, 201.0, {}).kind == "resolved"  # type: ignore[union-attr]


def test_scope_matches_run_and_layer_patterns() -> None:
    r = rule(metric="gradient_l2_norm", scope={"run": "exp-*", "layer": "encoder/*"})
    assert r.run_matches("exp-1") and not r.run_matches("other")
    assert r.layer_matches("encoder/linear0") and not r.layer_matches("head/linear")
    first = rule(metric="gradient_l2_norm", scope={"layer": "@first"})
    assert first.first_layer_only and first.layer_matches("anything")
    scalar = rule(metric="scalar:*loss")
    assert scalar.scalar_matches("train_loss") and not scalar.scalar_matches("val_accuracy")


def test_restored_open_alert_is_not_duplicated_and_resolves() -> None:
    r = rule()
    r.restore_open("system", {}, 0.0)
    assert feed(r, [11, 5]) == ["", "resolved"]


@pytest.mark.parametrize(
    ("metric", "kind"),
    [
        ("cpu_percent", "system"),
        ("gpu_temperature", "gpu"),
        ("gradient_l2_norm", "layer"),
        ("any_value", "run"),
        ("train_loss", "scalar"),
        ("scalar:my_metric", "scalar"),
    ],
)
def test_metric_kinds(metric: str, kind: str) -> None:
    assert metric_kind(metric)[0] == kind


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metric": "gpu_tmp"}, "metric"),
        ({"condition": "bigger"}, "condition"),
        ({"for_seconds": -1}, "for_seconds"),
        ({"threshold": None}, "threshold"),
        ({"condition": "outside_range", "range": [5, 1]}, "range"),
        ({"condition": "outside_range"}, "range"),
        ({"condition": "no_data_for"}, "condition"),
        ({"metric": "any_value", "condition": "no_data_for", "threshold": 0}, "threshold"),
        ({"condition": "grows_by_factor", "threshold": 0.5, "metric": "gradient_l2_norm"}, "threshold"),
        ({"scope": {"gpu": 0}}, "scope.gpu"),
        ({"scope": {"layer": "x"}}, "scope.layer"),
        ({"action": "cancel"}, "action"),
        ({"action": "explode", "metric": "train_loss"}, "action"),
        ({"severity": "urgent"}, "severity"),
        ({"threshold": float("nan")}, "threshold"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_rules_name_the_field(fields: dict, field: str) -> None:
    spec = {"name": "r", "metric": "cpu_percent", "condition": "greater_than", "threshold": 10.0} | fields
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate(spec)
    text = str(caught.value)
    assert field.split(".")[0] in text


def test_quiet_skips_absent_fields_and_first_values() -> None:
    growth = rule(metric="gradient_l2_norm", condition="grows_by_factor", threshold=10)
    assert growth.quiet([1.0, None], None)
    assert growth.quiet([1.0, None], [None, 1.0])
    assert not growth.quiet([1.0, 50.0], [None, 1.0])
    assert rule(condition="greater_than", threshold=1).quiet([], None)
    assert not rule(condition="not_equals", threshold=1).quiet([1.0, 2.0], None)
