"""Provides layer selection for the monitor: unwrapping DDP/compiled models, globs, types, groups and ranks."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Sequence

import torch
from torch import nn

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Tanh,
    nn.Sigmoid,
    nn.LogSigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Softmax,
    nn.LogSoftmax,
    nn.GLU,
)
"""Parameter-free modules selected by default, so the signal is seen after each non-linearity."""


def unwrap(model: nn.Module) -> tuple[nn.Module, bool]:
    """The user's own module under DDP/DataParallel and `torch.compile` wrappers, and whether it was compiled."""
    compiled = False
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
            compiled = True
        else:
            return model, compiled


def _has_direct_params(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def select_layers(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    types: Iterable[type[nn.Module] | str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[tuple[str, nn.Module]]:
    """Modules to monitor, in registration order.

    Without `layers` and `types`: leaf modules with parameters plus the activations in `ACTIVATIONS`.
    `layers` are `fnmatch` globs on dotted module names (`encoder.*`), `types` classes or class names;
    given both, a module must match both. `exclude` globs remove modules from the result.
    """
    wanted_types = list(types) if types is not None else None
    chosen: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        layer_id = name or type(module).__name__
        if layers is None and wanted_types is None:
            is_leaf = next(module.children(), None) is None
            keep = (is_leaf and _has_direct_params(module)) or isinstance(module, ACTIVATIONS)
        else:
            keep = layers is None or any(fnmatch.fnmatchcase(layer_id, pattern) for pattern in layers)
            if keep and wanted_types is not None:
                keep = any(
                    type(module).__name__ == t if isinstance(t, str) else isinstance(module, t) for t in wanted_types
                )
        if keep and exclude and any(fnmatch.fnmatchcase(layer_id, pattern) for pattern in exclude):
            keep = False
        if keep:
            chosen.append((layer_id, module))
    return chosen


def default_groups(model: nn.Module, layer_ids: Sequence[str]) -> dict[str, list[str]] | None:
    """`{top-level child: [layer ids under it]}`; None when that grouping says nothing (all singletons)."""
    groups: dict[str, list[str]] = {}
    for child, _ in model.named_children():
        members = [lid for lid in layer_ids if lid == child or lid.startswith(child + ".")]
        if members:
            groups[child] = members
    if not groups or all(len(members) == 1 for members in groups.values()):
        return None
    return groups


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else from torchrun's environment."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
