"""Provides the CPU path of a monitored step: one-pass moments read at once as floats, finished in Python.

On the CPU a small model's monitored step is bound by the number of ops, not by memory: an op costs 3-5 us to
dispatch whatever its size, and the device path (`stats`: two-pass variances, normalised vectors, everything
stacked for one device-to-host copy) issues about 50 per layer, more than a whole training step of a small
MLP. On the CPU nothing is in flight, so reading a 0-dim result (`item()`, a quarter of a microsecond) costs
less than stacking it: each tensor costs a sum and a dot product (no copy, and one pass fewer over large
activations than two-pass variances), and the std, mean, norms and power-iteration scale are finished in floats.

A one-pass variance loses digits when the mean dwarfs the standard deviation (float32 sums of squares carry
about 7 significant digits): where mean^2 > `ILL_CONDITIONED` * variance the tensor is measured again with the
exact two-pass `stats.std_mean`, so every value stays within about 1e-5 of the exact one. Low-precision tensors
(bf16/fp16) keep their one-pass float32 accumulation without a float32 copy, as on the device path.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from shared.sdk import stats
from shared.sdk.stats import is_exact

ILL_CONDITIONED = 100.0
"""mean^2 / variance above which a one-pass variance is measured again with two passes (float32 dot products:
relative error about 1e-7 times this ratio, checked up to 3M elements)."""


def moments(t: Tensor) -> tuple[float, float]:
    """(sum, sum of squares) of a CPU tensor, without copying it."""
    if not is_exact(t):
        return t.sum(dtype=torch.float32).item(), stats.norms([t], 2)[0].item() ** 2  # float32 accumulation
    if t.is_contiguous():
        flat = t.view(-1)
        return flat.sum().item(), torch.dot(flat, flat).item()  # BLAS dot: more accurate than a norm's sum
    return t.sum().item(), torch.linalg.vector_norm(t).item() ** 2


def finish_std_mean(count: int, total: float, squares: float, exact: bool) -> tuple[float, float] | None:
    """(unbiased std, mean) from one-pass moments; None when cancellation would cost digits (measure again)."""
    mean = total / count
    if count < 2:
        return 0.0, mean
    var = (squares - total * mean) / (count - 1)
    if exact and mean * mean > ILL_CONDITIONED * var:  # also catches a variance rounded below zero
        return None
    return math.sqrt(max(var, 0.0)), mean  # max() keeps NaN: a non-finite tensor stays non-finite


def std_mean(t: Tensor, sums: tuple[float, float] | None = None) -> tuple[float, float]:
    """(unbiased std, mean) of a CPU tensor as floats."""
    total, squares = moments(t) if sums is None else sums
    result = finish_std_mean(t.numel(), total, squares, is_exact(t))
    if result is not None:
        return result
    std, mean = stats.std_mean(t)
    return std.item(), mean.item()


def max_abs(t: Tensor) -> float:
    return max(t.amax().item(), -t.amin().item())  # two vectorised passes: a third of aminmax's time


def grad_values(grads: list[Tensor]) -> list[float]:
    """[L2 norm, std, max |g|] over a layer's gradients taken together, from per-tensor moments (no concatenation)."""
    sums = [moments(g) for g in grads]
    total = sum(s for s, _ in sums)
    squares = sum(q for _, q in sums)
    top = max(max_abs(g) for g in grads)
    result = finish_std_mean(sum(g.numel() for g in grads), total, squares, all(is_exact(g) for g in grads))
    if result is None:  # rare: a gradient whose mean dwarfs its spread
        result = std_mean(torch.cat([g.reshape(-1) for g in grads]))
    return [math.sqrt(squares), result[0], top]


def weight_values(weight: Tensor, u: Tensor | None) -> tuple[list[float], Tensor | None]:
    """[std, mean, spectral norm estimate, Frobenius norm] and the power-iteration vector to keep (as `stats`)."""
    w = weight.detach()
    sums = moments(w)
    std, mean = std_mean(w, sums)
    if w.dim() < 2:
        spectral = max_abs(w)  # a diagonal matrix: its largest |w|
    else:
        spectral, u = _power_iteration(w.reshape(w.shape[0], -1), u)
    return [std, mean, spectral, math.sqrt(sums[1])], u


def bias_values(bias: Tensor) -> list[float]:
    """[std, mean |b|]."""
    b = bias.detach()
    return [std_mean(b)[0], stats.norms([b], 1)[0].item() / b.numel()]  # float32 sum for low precision


def _power_iteration(matrix: Tensor, u: Tensor | None) -> tuple[float, Tensor]:
    """`stats.power_iteration` with the normalisations done on floats: sigma = |W W^T u| / |W^T u|, then
    u = W W^T u / |W W^T u|. A zero matrix keeps its vector (it would otherwise stay zero for good)."""
    dtype = stats.vector_dtype(matrix)
    u = stats.left_vector(matrix, u)
    if dtype == matrix.dtype:  # `.to` is no free no-op at this size
        v = torch.mv(matrix.t(), u)
        w = torch.mv(matrix, v)
    else:
        v = torch.mv(matrix.t(), u.to(matrix.dtype)).to(dtype)
        w = torch.mv(matrix, v.to(matrix.dtype)).to(dtype)
    norm_v, norm_w = (n.item() for n in torch._foreach_norm([v, w]))
    if not norm_w > 0 or not math.isfinite(norm_w):
        return (norm_w / norm_v if norm_v > 0 else 0.0), u
    return norm_w / norm_v, w.div_(norm_w)
