"""Small models and a reference implementation of every statistic, computed the direct (slow) way."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh())
        self.head = nn.Linear(12, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


class CNN(nn.Module):
    """Two convolutions (one without bias, followed by BatchNorm: a 1-D weight), pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, bias=False),
            nn.BatchNorm2d(8),
            nn.GELU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def batch(model: nn.Module, size: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if isinstance(model, CNN):
        return torch.randn(size, 1, 8, 8, generator=generator), torch.randint(0, 10, (size,), generator=generator)
    return torch.randn(size, 8, generator=generator), torch.randint(0, 3, (size,), generator=generator)


def record_outputs(model: nn.Module, names: list[str]) -> dict[str, Tensor]:
    """Forward hooks that keep each named module's last output, for the reference computation."""
    outputs: dict[str, Tensor] = {}
    modules = dict(model.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out.detach()))
    return outputs


def reference(model: nn.Module, names: list[str], outputs: dict[str, Tensor]) -> list[dict[str, Any]]:
    """Each layer's statistics computed directly with torch, in the contract's shape (layer order = names)."""
    modules = dict(model.named_modules())
    layers = []
    for name in names:
        module = modules[name]
        out = outputs[name]
        params = list(module.parameters(recurse=False))
        grads = [p.grad.flatten() for p in params if p.grad is not None]
        g = torch.cat(grads) if grads else None
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        layer: dict[str, Any] = {
            "activation_std": out.std().item(),
            "activation_mean": out.mean().item(),
            "activation_shape": list(out.shape),
            "gradient_l2_norm": g.norm().item() if g is not None else 0.0,
            "gradient_std": g.std().item() if g is not None else 0.0,
            "gradient_max_abs": g.abs().max().item() if g is not None else 0.0,
        }
        if weight is not None:
            w = weight.detach()
            matrix = w.reshape(w.shape[0], -1)
            layer["weight"] = {
                "std": w.std().item(),
                "mean": w.mean().item(),
                "frobenius_norm": torch.linalg.matrix_norm(matrix).item(),
                "spectral_norm": torch.linalg.matrix_norm(matrix, 2).item() if w.dim() > 1 else w.abs().max().item(),
            }
        if bias is not None:
            b = bias.detach()
            layer["bias"] = {"std": b.std().item(), "mean_abs": b.abs().mean().item()}
        layers.append(layer)
    return layers
