"""Provides `build_payload`: one monitored step's flat list of floats -> the layer-wise contract payload.

The monitor stacks every statistic of a step into one tensor with `SLOTS` entries per layer, so a step costs
one device-to-host transfer; this module (plain Python, no torch) gives those numbers their names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Per-layer slot order in the stacked tensor.
ACT_STD, ACT_MEAN, GRAD_L2, GRAD_STD, GRAD_MAX, W_STD, W_MEAN, W_SPECTRAL, W_FROB, B_STD, B_MEAN_ABS = range(11)
SLOTS = 11


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """What the payload needs to know about one monitored layer besides its numbers."""

    layer_id: str
    layer_type: str
    has_params: bool
    has_bias: bool


@dataclass(frozen=True, slots=True)
class StepCapture:
    """Per-step facts known on the training thread: which layers ran forward and which had gradients."""

    shapes: Sequence[list[int] | None]
    """Activation shape per layer; None where the layer's forward was not captured this step."""
    has_grad: Sequence[bool]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x; 0.0 with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def build_payload(
    metadata: dict[str, Any], specs: Sequence[LayerSpec], values: Sequence[float], capture: StepCapture
) -> dict[str, Any]:
    """The contract payload for one step. `values` holds `SLOTS` floats per layer in `specs` order."""
    layers: list[dict[str, Any]] = []
    std_by_depth: list[tuple[float, float]] = []
    ratios: dict[str, float] = {}
    prev_std: float | None = None
    prev_grad: float | None = None
    for depth, spec in enumerate(specs):
        v = values[depth * SLOTS : (depth + 1) * SLOTS]
        shape = capture.shapes[depth]
        if shape is None:
            features: dict[str, Any] = {
                "activation_std": 0.0,
                "activation_mean": 0.0,
                "activation_shape": [0, 0],
                "cross_layer_std_ratio": None,
            }
        else:
            std = v[ACT_STD]
            # A ratio to a zero std is undefined, not infinite: null, as for the first layer.
            ratio = std / prev_std if prev_std else None
            features = {
                "activation_std": std,
                "activation_mean": v[ACT_MEAN],
                "activation_shape": shape,
                "cross_layer_std_ratio": ratio,
            }
            prev_std = std
            std_by_depth.append((float(depth), std))
        if spec.has_params and capture.has_grad[depth]:
            # Ratios chain over layers that have gradients; parameter-free layers report zeros and are skipped.
            grad = v[GRAD_L2]
            if prev_grad:
                ratios[f"{spec.layer_id.replace('.', '/')}_to_prev"] = grad / prev_grad
            prev_grad = grad
        parameters: dict[str, Any] = {
            "weight": {
                "std": v[W_STD],
                "mean": v[W_MEAN],
                "spectral_norm": v[W_SPECTRAL],
                "frobenius_norm": v[W_FROB],
            }
        }
        if spec.has_bias:
            parameters["bias"] = {"std": v[B_STD], "mean_abs": v[B_MEAN_ABS]}
        layers.append(
            {
                "layer_id": spec.layer_id,
                "layer_type": spec.layer_type,
                "depth_index": depth,
                "intermediate_features": features,
                "gradient_flow": {
                    "gradient_l2_norm": v[GRAD_L2],
                    "gradient_std": v[GRAD_STD],
                    "gradient_max_abs": v[GRAD_MAX],
                },
                "parameter_statistics": parameters,
            }
        )
    return {
        "metadata": metadata,
        "layer_statistics": layers,
        "cross_layer_analysis": {"feature_std_gradient": slope(std_by_depth), "gradient_norm_ratio": ratios},
    }
