"""Synthetic layer-wise payloads in the contract's exact shape: for the demo, tests and benchmarks."""

from __future__ import annotations

import math
import random
import time
from typing import Any


def layerwise_payload(
    run_id: str,
    step: int,
    *,
    layers: int = 3,
    batch_size: int = 64,
    rng: random.Random | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """A plausible step of an MLP whose loss falls and whose deep layers' gradients shrink."""
    rng = rng or random.Random(step)
    decay = math.exp(-step / 2000)
    stats: list[dict[str, Any]] = []
    previous_std: float | None = None
    previous_grad: float | None = None
    ratios: dict[str, float] = {}
    for depth in range(layers):
        layer_id = f"encoder/linear{depth}" if depth < layers - 1 else "head/linear"
        act_std = 1.0 / (1 + 0.15 * depth) * (0.9 + 0.2 * rng.random())
        grad = 0.5 * decay / (1 + 0.4 * depth) * (0.8 + 0.4 * rng.random()) + 1e-4
        stats.append(
            {
                "layer_id": layer_id,
                "layer_type": "Linear",
                "depth_index": depth,
                "intermediate_features": {
                    "activation_std": act_std,
                    "activation_mean": 0.1 * rng.random(),
                    "activation_shape": [batch_size, 128],
                    "cross_layer_std_ratio": None if previous_std is None else act_std / previous_std,
                },
                "gradient_flow": {
                    "gradient_l2_norm": grad,
                    "gradient_std": grad / 30,
                    "gradient_max_abs": grad / 5,
                },
                "parameter_statistics": {
                    "weight": {
                        "std": 0.05 + 0.01 * rng.random(),
                        "mean": 0.001 * (rng.random() - 0.5),
                        "spectral_norm": 1.2 + 0.1 * rng.random(),
                        "frobenius_norm": 4.0 + rng.random(),
                    },
                    "bias": {"std": 0.01, "mean_abs": 0.005},
                },
            }
        )
        if previous_grad is not None:
            ratios[f"{layer_id}_to_prev"] = grad / previous_grad
        previous_std, previous_grad = act_std, grad
    slope = (
        stats[-1]["intermediate_features"]["activation_std"] - stats[0]["intermediate_features"]["activation_std"]
    ) / max(1, layers - 1)
    groups = {"encoder": [s["layer_id"] for s in stats[:-1]], "head": [stats[-1]["layer_id"]]}
    return {
        "metadata": {
            "run_id": run_id,
            "timestamp": time.time() if timestamp is None else timestamp,
            "global_step": step,
            "batch_size": batch_size,
            "layer_groups": groups,
        },
        "layer_statistics": stats,
        "cross_layer_analysis": {"feature_std_gradient": slope, "gradient_norm_ratio": ratios},
    }


def training_scalars(step: int, rng: random.Random | None = None) -> dict[str, float]:
    rng = rng or random.Random(step)
    loss = 2.3 * math.exp(-step / 800) + 0.05 + 0.03 * rng.random()
    return {"train_loss": loss, "learning_rate": 0.01 * math.exp(-step / 5000)}
