"""Every statistic the Monitor sends equals the direct torch computation, after the round trip through pivotd."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from shared.models import LayerwisePayload, Step
from shared.sdk import Monitor, cpu_stats, stats
from tests.daemon import RunningDaemon
from tests.sdk.models import CNN, MLP, batch, record_outputs, reference

# Its tests that take the `daemon` fixture read and write only their own run ids: they share the module's one.
pytestmark = pytest.mark.shared_daemon

APPROX = {"rel": 1e-4, "abs": 1e-6}


def train_step(model: nn.Module) -> torch.Tensor:
    x, y = batch(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


@pytest.mark.parametrize("factory", [MLP, CNN], ids=["mlp", "cnn"])
async def test_each_statistic_equals_torch(
    factory: type[nn.Module], daemon: RunningDaemon, http: httpx.AsyncClient, captured: list[dict[str, Any]]
) -> None:
    """Activation, gradient, weight and bias statistics and the cross-layer analysis, layer by layer."""
    torch.manual_seed(0)
    model = factory()
    run_id = f"stats-{factory.__name__.lower()}"
    mon = Monitor(model, run_id, url=daemon.url, every=1)
    names = mon.layer_ids
    outputs = record_outputs(model, names)
    loss = train_step(model)
    expected = reference(model, names, outputs)
    mon.step(0, loss=loss)
    assert await asyncio.to_thread(mon.flush, 10)

    LayerwisePayload.model_validate(captured[0])  # what was sent is a valid contract payload
    response = await http.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200
    step = response.json()["steps"][0]
    Step.model_validate(step)  # what the daemon returns is a valid stored step
    assert [layer["layer_id"] for layer in step["layers"]] == [name.replace(".", "/") for name in names]
    assert step["batch_size"] == 6
    stds = []
    grads: dict[str, float] = {}
    for depth, (layer, want) in enumerate(zip(step["layers"], expected, strict=True)):
        module = dict(model.named_modules())[names[depth]]
        assert layer["layer_type"] == type(module).__name__
        assert layer["depth_index"] == depth
        features = layer["intermediate_features"]
        assert features["activation_std"] == pytest.approx(want["activation_std"], **APPROX)
        assert features["activation_mean"] == pytest.approx(want["activation_mean"], **APPROX)
        assert features["activation_shape"] == want["activation_shape"]
        if depth == 0:
            assert features["cross_layer_std_ratio"] is None
        else:
            assert features["cross_layer_std_ratio"] == pytest.approx(want["activation_std"] / stds[-1], **APPROX)
        stds.append(want["activation_std"])
        flow = layer["gradient_flow"]
        for name in ("gradient_l2_norm", "gradient_std", "gradient_max_abs"):
            assert flow[name] == pytest.approx(want[name], **APPROX)
        if want["gradient_l2_norm"]:
            grads[layer["layer_id"]] = want["gradient_l2_norm"]
        weight = layer["parameter_statistics"]["weight"]
        if "weight" in want:
            for name in ("std", "mean", "frobenius_norm"):
                assert weight[name] == pytest.approx(want["weight"][name], **APPROX)
            # One power iteration so far: a lower bound that is already in the right range.
            assert 0.3 * want["weight"]["spectral_norm"] < weight["spectral_norm"]
            assert weight["spectral_norm"] <= want["weight"]["spectral_norm"] * (1 + 1e-5)
        else:
            assert weight == {"std": 0.0, "mean": 0.0, "spectral_norm": 0.0, "frobenius_norm": 0.0}
        bias = layer["parameter_statistics"].get("bias")
        if "bias" in want:
            assert bias == pytest.approx(want["bias"], **APPROX)
        else:
            assert bias is None

    expected_slope = np.polyfit(np.arange(len(stds)), np.array(stds), 1)[0]
    assert step["cross_layer"]["feature_std_gradient"] == pytest.approx(expected_slope, rel=1e-4, abs=1e-7)
    ids = list(grads)
    want_ratios = {f"{ids[i]}_to_prev": grads[ids[i]] / grads[ids[i - 1]] for i in range(1, len(ids))}
    assert step["cross_layer"]["gradient_norm_ratio"] == pytest.approx(want_ratios, rel=1e-4)
    scalars = (await http.get(f"/api/v1/runs/{run_id}/scalars")).json()["series"]
    assert scalars["loss"]["values"] == [pytest.approx(loss.item())]
    assert await asyncio.to_thread(mon.close)


@pytest.mark.parametrize("factory", [MLP, CNN], ids=["mlp", "cnn"])
async def test_spectral_norm_converges(
    factory: type[nn.Module], daemon: RunningDaemon, captured: list[dict[str, Any]]
) -> None:
    """One power iteration per monitored step, the vector kept between steps: within 1% of the true norm."""
    torch.manual_seed(0)
    model = factory()
    mon = Monitor(model, f"spectral-{factory.__name__.lower()}", url=daemon.url, every=1)
    x, _ = batch(model)
    with torch.no_grad():
        for step in range(60):
            model(x)
            mon.step(step)
    assert await asyncio.to_thread(mon.close)
    modules = dict(model.named_modules())
    last = captured[-1]["layer_statistics"]
    checked = 0
    for layer in last:
        weight = getattr(modules[layer["layer_id"]], "weight", None)
        if weight is None:
            continue
        w = weight.detach()
        true = torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), 2).item() if w.dim() > 1 else w.abs().max().item()
        assert layer["parameter_statistics"]["weight"]["spectral_norm"] == pytest.approx(true, rel=0.01)
        checked += 1
    assert checked >= 3


def test_pooled_gradient_statistics_for_large_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers too large to concatenate pool per-tensor moments; the result is the same."""
    monkeypatch.setattr(stats, "_CONCAT_LIMIT", 0)
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 30, generator=generator) * 0.1 + 0.02
    bias = torch.randn(40, generator=generator) - 0.5
    l2, std, max_abs = (t.item() for t in stats.grad_stats([weight, bias]))
    both = torch.cat([weight.flatten(), bias])
    assert (l2, std, max_abs) == pytest.approx((both.norm().item(), both.std().item(), both.abs().max().item()))


class Float32Outputs(TorchDispatchMode):
    """Records the element count of every float32 tensor an op returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.sizes.append(t.numel())
        return out


async def test_bf16_statistics_match_float32_without_float32_copies(
    daemon: RunningDaemon, captured: list[dict[str, Any]]
) -> None:
    """A bf16 model's statistics equal the float32 computation on the same values, and no op of the monitor
    (hooks included) makes a float32 tensor larger than a vector: no copy of an activation, weight or gradient."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 512)).to(torch.bfloat16)
    x = torch.randn(32, 16, dtype=torch.bfloat16)
    y = torch.randint(0, 512, (32,))
    mon = Monitor(model, "bf16", url=daemon.url, every=1)
    names = mon.layer_ids
    outputs = record_outputs(model, names)
    mode = Float32Outputs()
    with mode:
        logits = model(x)  # the monitor's hooks compute activation statistics here
    F.cross_entropy(logits.float(), y).backward()
    with mode:
        mon.step(0)
    assert await asyncio.to_thread(mon.close)
    assert logits.numel() == 32 * 512 and max(mode.sizes) <= 512  # power-iteration vectors at most

    expected = reference(model.float(), names, {name: out.float() for name, out in outputs.items()})
    bf16 = {"rel": 1e-3, "abs": 1e-5}  # same values, float32 accumulation: far inside bf16's 4e-3
    for layer, want in zip(captured[0]["layer_statistics"], expected, strict=True):
        features, flow = layer["intermediate_features"], layer["gradient_flow"]
        assert features["activation_std"] == pytest.approx(want["activation_std"], **bf16)
        assert features["activation_mean"] == pytest.approx(want["activation_mean"], **bf16)
        for name in ("gradient_l2_norm", "gradient_std", "gradient_max_abs"):
            assert flow[name] == pytest.approx(want[name], **bf16)
        if "weight" in want:
            weight = layer["parameter_statistics"]["weight"]
            for name in ("std", "mean", "frobenius_norm"):
                assert weight[name] == pytest.approx(want["weight"][name], **bf16)
            assert 0.3 * want["weight"]["spectral_norm"] < weight["spectral_norm"]
            assert weight["spectral_norm"] <= want["weight"]["spectral_norm"] * 1.01
            assert layer["parameter_statistics"]["bias"] == pytest.approx(want["bias"], **bf16)


@pytest.mark.parametrize(
    "shift", [0.0, 1.0, 9.0, 1e4], ids=["centred", "relu-like", "one-pass-limit", "ill-conditioned"]
)
def test_cpu_one_pass_moments_stay_exact(shift: float) -> None:
    """The CPU path's one-pass std equals the float64 two-pass one whatever the mean: past `ILL_CONDITIONED` it
    measures again with two passes (a float32 one-pass variance of 1e4 + N(0, 0.01^2) would be noise)."""
    generator = torch.Generator().manual_seed(0)
    t = torch.randn(300_000, generator=generator) * 0.01 + shift * 0.01
    exact = t.double()
    std, mean = cpu_stats.std_mean(t)
    assert (std, mean) == pytest.approx((exact.std().item(), exact.mean().item()), rel=2e-5)
    l2, grad_std, top = cpu_stats.grad_values([t[:1000].reshape(10, 100), t[1000:]])
    assert (l2, grad_std, top) == pytest.approx(
        (exact.norm().item(), exact.std().item(), exact.abs().max().item()), rel=2e-5
    )


def test_cpu_constant_weight_has_zero_std() -> None:
    """A norm layer's initial weight (all ones) has std exactly 0, not the rounding noise of a one-pass variance."""
    values, _ = cpu_stats.weight_values(torch.ones(384), None)
    assert values == [0.0, 1.0, 1.0, pytest.approx(384**0.5)]
