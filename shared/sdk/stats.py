"""Provides the per-layer statistics as 0-dim tensors left on the device (no host sync anywhere here).

Every function returns tensors; the monitor stacks all of a step's results and transfers them at once.
Standard deviations are unbiased (`torch.std`'s default) except for single-element tensors, where they are 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

_EXACT = (torch.float32, torch.float64)
# Up to this many elements a layer's gradients are concatenated (a 4 MiB copy at most) to save ops.
_CONCAT_LIMIT = 1 << 20


def as_float(t: Tensor) -> Tensor:
    """Detached, in float32 unless already float32/64 (bf16/fp16 sums lose too much precision)."""
    t = t.detach()
    return t if t.dtype in _EXACT else t.float()


def var_mean(t: Tensor, correction: int) -> tuple[Tensor, Tensor]:
    if t.device.type != "cpu":
        var, mean = torch.var_mean(t, correction=correction)  # one fused kernel on accelerators
        return var, mean
    # On CPU `torch.var_mean` (Welford) runs about 40x slower than two vectorised passes: 3.4 ms against
    # 0.2 ms for a 64x16x26x26 activation. Two passes (not sum and sum of squares) keep it exact.
    mean = t.mean()
    centred = (t - mean).reshape(-1)
    return torch.dot(centred, centred) / max(t.numel() - correction, 1), mean


def max_abs(t: Tensor) -> Tensor:
    if t.device.type != "cpu":
        return torch.linalg.vector_norm(t, ord=math.inf)
    # On CPU the inf-norm takes a slow path (300 us for 100k elements); aminmax is vectorised (17 us).
    low, high = torch.aminmax(t)
    return torch.maximum(high, -low)


def std_mean(t: Tensor) -> tuple[Tensor, Tensor]:
    var, mean = var_mean(t, correction=1 if t.numel() > 1 else 0)
    return var.sqrt(), mean


def power_iteration(matrix: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
    """One step of power iteration on `matrix` (out x in): (sigma estimate, updated left vector).

    The left vector is kept between calls, so one matrix-vector pair per monitored step converges to the
    largest singular value over steps (and tracks it as training changes the weights).
    """
    if u is None or u.shape[0] != matrix.shape[0] or u.device != matrix.device or u.dtype != matrix.dtype:
        # Seeded, so two runs of the same model report the same estimates.
        start = torch.randn(matrix.shape[0], generator=torch.Generator().manual_seed(0), dtype=matrix.dtype)
        u = F.normalize(start.to(matrix.device), dim=0)
    v = F.normalize(torch.mv(matrix.t(), u), dim=0)
    wv = torch.mv(matrix, v)
    sigma = torch.linalg.vector_norm(wv)
    return sigma, F.normalize(wv, dim=0)


def weight_stats(weight: Tensor, u: Tensor | None) -> tuple[list[Tensor], Tensor | None]:
    """[std, mean, spectral norm estimate, Frobenius norm] and the power-iteration vector to keep.

    Conv kernels are flattened to (out_channels, -1), as spectral normalisation does; a 1-D weight (a norm
    layer's scale) acts as a diagonal matrix, whose spectral norm is exactly its largest absolute value.
    """
    w = as_float(weight)
    std, mean = std_mean(w)
    frobenius = torch.linalg.vector_norm(w)
    if w.dim() < 2:
        return [std, mean, max_abs(w), frobenius], None
    sigma, u = power_iteration(w.reshape(w.shape[0], -1), u)
    return [std, mean, sigma, frobenius], u


def bias_stats(bias: Tensor) -> list[Tensor]:
    """[std, mean of absolute values]."""
    b = as_float(bias)
    std, _ = std_mean(b)
    return [std, b.abs().mean()]


def grad_stats(grads: list[Tensor]) -> list[Tensor]:
    """[L2 norm, std, max |g|] over all of a layer's parameter gradients taken together."""
    gs = [as_float(g).reshape(-1) for g in grads]
    total = sum(g.numel() for g in gs)
    if len(gs) == 1 or total <= _CONCAT_LIMIT:
        # Weight and bias gradients in one tensor: a handful of ops (kernel launches) for the layer.
        g = gs[0] if len(gs) == 1 else torch.cat(gs)
        std, _ = std_mean(g)
        return [torch.linalg.vector_norm(g), std, max_abs(g)]
    # Large layers: pool per-tensor moments rather than copy the gradients into one tensor.
    moments = [var_mean(g, correction=0) for g in gs]
    mean = sum(m * (g.numel() / total) for (_, m), g in zip(moments, gs, strict=True))
    m2 = sum(g.numel() * (v + (m - mean) ** 2) for (v, m), g in zip(moments, gs, strict=True))
    std = torch.sqrt(m2 / max(total - 1, 1))
    l2 = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs]))
    return [l2, std, torch.stack([max_abs(g) for g in gs]).amax()]
