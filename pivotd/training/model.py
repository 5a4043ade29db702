"""Architecture JSON -> `nn.Module`, and weights <-> the JSON parameter layout (`{"layers": [{W, b}]}`).

Layer `i` of the architecture is `layers.i` of the module, so safetensors keys (`layers.3.weight`) name the
architecture's layer directly. A final softmax is kept out of the module: training applies cross-entropy to the
logits (numerically stable) and inference applies the softmax itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from shared.models.training import Architecture, Conv2d, Dropout, Linear, MaxPool2d


class Net(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.input_shape = arch.input_shape
        modules: list[nn.Module] = []
        last = len(arch.layers) - 1
        for index, layer in enumerate(arch.layers):
            modules.append(_module(layer, is_last=index == last))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inputs arrive flat (784) or as images; the architecture says which shape its first layer wants.
        return self.layers(x.reshape(x.shape[0], *self.input_shape))


def _module(layer: Any, is_last: bool) -> nn.Module:
    if isinstance(layer, Linear):
        return nn.Linear(layer.in_features, layer.out_features)
    if isinstance(layer, Conv2d):
        return nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride, padding=layer.padding
        )
    if isinstance(layer, MaxPool2d):
        return nn.MaxPool2d(layer.kernel_size, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    simple: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "flatten": nn.Flatten,
    }
    if layer.type == "softmax":
        return nn.Identity() if is_last else nn.Softmax(dim=1)
    return simple[layer.type]()


def load_weights(net: Net, tensors: dict[str, torch.Tensor]) -> None:
    """Load `layers.i.weight/bias` tensors; a missing or misshapen tensor names its layer."""
    expected = net.state_dict()
    for key, tensor in expected.items():
        given = tensors.get(key)
        if given is None:
            raise ValueError(f"parameters: {key} is missing")
        if tuple(given.shape) != tuple(tensor.shape):
            raise ValueError(f"parameters: {key} has shape {list(given.shape)}, expected {list(tensor.shape)}")
    net.load_state_dict({key: tensors[key] for key in expected})


def layout_to_tensors(parameters: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The JSON parameter layout `{"layers": [{"type", "W", "b"}, ...]}` -> state-dict tensors (float32)."""
    layers = parameters.get("layers")
    if not isinstance(layers, list):
        raise ValueError("parameters.layers: must be a list with one entry per architecture layer")
    tensors: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise ValueError(f"parameters.layers[{index}]: must be an object")
        for field, suffix in (("W", "weight"), ("b", "bias")):
            if field in layer:
                try:
                    tensors[f"layers.{index}.{suffix}"] = torch.tensor(layer[field], dtype=torch.float32)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"parameters.layers[{index}].{field}: not a numeric array ({exc})") from None
    return tensors
