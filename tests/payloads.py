"""The exact examples of seed 000 and the layer-wise contract, and ways to break them."""

from __future__ import annotations

import copy
from typing import Any

from shared.samples import layerwise_payload


def contract_payload(run_id: str = "experiment_2024_0210_v2", step: int = 1500) -> dict[str, Any]:
    """A payload as an existing training script sends it (two Linear layers and a ReLU)."""
    return {
        "metadata": {
            "run_id": run_id,
            "timestamp": 1707589200.123,
            "global_step": step,
            "batch_size": 64,
            "layer_groups": {"encoder": ["encoder.linear1", "encoder.relu"], "head": ["head.linear"]},
        },
        "layer_statistics": [
            _layer("encoder.linear1", "Linear", 0, ratio=None, bias=True),
            _layer("encoder.relu", "ReLU", 1, ratio=0.71, bias=False, params=False),
            _layer("head.linear", "Linear", 2, ratio=1.12, bias=True),
        ],
        "cross_layer_analysis": {
            "feature_std_gradient": -0.021,
            "gradient_norm_ratio": {"encoder/relu_to_prev": 1.0, "head/linear_to_prev": 0.42},
        },
    }


def _layer(layer_id: str, kind: str, depth: int, *, ratio: float | None, bias: bool, params: bool = True) -> dict:
    stats: dict[str, Any] = {
        "layer_id": layer_id,
        "layer_type": kind,
        "depth_index": depth,
        "intermediate_features": {
            "activation_std": 0.82,
            "activation_mean": 0.05,
            "activation_shape": [64, 128],
            "cross_layer_std_ratio": ratio,
        },
        "gradient_flow": {"gradient_l2_norm": 0.31, "gradient_std": 0.002, "gradient_max_abs": 0.04},
        "parameter_statistics": {
            "weight": (
                {"std": 0.05, "mean": 0.0001, "spectral_norm": 1.9, "frobenius_norm": 5.2}
                if params
                else {"std": 0.0, "mean": 0.0, "spectral_norm": 0.0, "frobenius_norm": 0.0}
            )
        },
    }
    if bias:
        stats["parameter_statistics"]["bias"] = {"std": 0.01, "mean_abs": 0.004}
    return stats


def mutated(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the contract payload with `a.b[0].c` set to value (or deleted if value is DELETE)."""
    document = copy.deepcopy(base or contract_payload())
    parts = path.replace("]", "").replace("[", ".").split(".")
    target: Any = document
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    key: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value
    return document


DELETE = object()

__all__ = ["DELETE", "contract_payload", "layerwise_payload", "mutated"]


# Seed 004's "Create Experiment" body as written: an ensemble config naming no metric.
SEED_004_CREATE_EXPERIMENT = {
    "experiment": {
        "name": "New Ensemble Test",
        "description": "Testing majority voting",
        "config": {
            "type": "ensemble",
            "models": ["gpt-4", "claude-3"],
            "voting_strategy": "majority",
            "dataset": "mmlu",
            "sample_size": 1000,
        },
        "tags": ["ensemble", "comparison"],
    }
}
