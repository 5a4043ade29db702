"""The layer table's flags follow the daemon's gradient rules, and its numbers are never cut."""

from __future__ import annotations

from typing import Any

import pytest

from pivot_tui.widgets.columns import fit_number
from pivot_tui.widgets.layer_table import LayerFlags
from shared.models.alerts import AlertRulePublic
from shared.models.layerwise import LiteLayer

WHEN = "2024-02-10T12:00:00.000+00:00"


def rule(condition: str, threshold: float, **spec: Any) -> AlertRulePublic:
    return AlertRulePublic.model_validate({
        "rule_id": f"rule_{condition}", "name": condition, "metric": "gradient_l2_norm", "condition": condition,
        "threshold": threshold, "severity": "high", "enabled": True, "for_seconds": 0.0, "scope": {},
        "builtin": False, "created_at": WHEN, "updated_at": WHEN,
    } | spec)  # fmt: skip


def layer(layer_id: str, layer_type: str, norm: float, spectral: float) -> LiteLayer:
    return {"layer_id": layer_id, "layer_type": layer_type, "depth_index": 0, "activation_std": 1.0,
            "cross_layer_std_ratio": None, "gradient_l2_norm": norm, "gradient_max_abs": norm,
            "spectral_norm": spectral}  # fmt: skip


def flags(rules: LayerFlags, *layers: LiteLayer) -> list[str]:
    return [rules.flag(one, index).plain for index, one in enumerate(layers)]


def test_a_parameter_free_layer_is_never_vanishing_whatever_its_type() -> None:
    """A GELU and a Tanh after the same linear layer read the same: the payload's zero weight statistics
    say they have no parameters (the SDK watches about twenty such types; no list of names is kept)."""
    every_layer = LayerFlags.from_rules([rule("less_than", 1e-7)], "run")
    first = layer("fc1", "Linear", 0.2, 1.3)
    for activation in ("GELU", "Tanh", "SiLU", "Mish"):
        assert flags(every_layer, first, layer("act", activation, 0.0, 0.0)) == ["ok", "ok"]
    assert flags(every_layer, first, layer("fc2", "Linear", 0.0, 1.1)) == ["ok", "VANISHING"]


def test_the_defaults_are_the_built_in_rules_first_layer_below_1e_7_any_layer_above_1e3() -> None:
    defaults = LayerFlags()
    assert flags(defaults, layer("fc1", "Linear", 5e-8, 1.0), layer("fc2", "Linear", 5e-8, 1.0)) == ["VANISHING", "ok"]
    assert flags(defaults, layer("fc1", "Linear", 5e-6, 1.0)) == ["ok"]  # the old TUI-only 1e-5 flagged this
    assert flags(defaults, layer("fc1", "Linear", 150.0, 1.0), layer("fc2", "Linear", 1500.0, 1.0)) == [
        "ok",
        "EXPLODING",
    ]


def test_thresholds_scopes_and_switches_come_from_the_rules() -> None:
    rules = [
        rule("less_than", 1e-3, scope={"layer": "encoder/*"}),
        rule("greater_than", 10.0, scope={"run": "other-*"}),  # another run's: not this one's
        rule("greater_than", 50.0),
        rule("less_than", 1.0, enabled=False),
    ]
    mine = LayerFlags.from_rules(rules, "run-1")
    assert flags(mine, layer("head/fc", "Linear", 1e-4, 1.0), layer("encoder/fc", "Linear", 1e-4, 1.0)) == [
        "ok",
        "VANISHING",
    ]
    assert flags(mine, layer("head/fc", "Linear", 20.0, 1.0), layer("x", "Linear", 60.0, 1.0)) == ["ok", "EXPLODING"]
    assert flags(LayerFlags.from_rules(rules, "other-run"), layer("head/fc", "Linear", 20.0, 1.0)) == ["EXPLODING"]
    assert flags(LayerFlags.from_rules([], "run-1"), layer("fc", "Linear", 0.0, 1.0)) == ["ok"]  # no rules, no flags


@pytest.mark.parametrize(
    ("value", "width", "shown"),
    [(9.262e-05, 7, "9.26e-5"), (9.262e-05, 9, "9.262e-5"), (-9.262e-05, 7, "-9.3e-5"), (0.123456, 7, "0.1235"),
     (123456789.0, 7, "1.235e8"), (2.3, 7, "2.3"), (0.0, 7, "0")],
)  # fmt: skip
def test_a_number_is_shortened_to_fit_never_cut(value: float, width: int, shown: str) -> None:
    assert fit_number(value, width) == shown
    assert len(shown) <= width
