"""The monitor in the situations training scripts put it in: eval, AMP, torch.compile, DDP, layer selection."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from shared.sdk import Monitor
from shared.sdk.layers import select_layers
from tests.daemon import RunningDaemon
from tests.sdk.models import CNN, MLP, batch

# Each test writes only its own run ids; the DDP test lists every run and has a daemon of its own.
pytestmark = pytest.mark.shared_daemon


def hooked(model: nn.Module) -> bool:
    return any(module._forward_hooks for module in model.modules())


def test_hooks_exist_only_around_monitored_forwards(free_port: int) -> None:
    """Unmonitored steps run the model with no hook at all: they cost nothing."""
    model = MLP()
    mon = Monitor(model, "hooks", url=f"http://127.0.0.1:{free_port}", every=3)
    assert hooked(model)  # armed for step 0
    mon.step(0)
    assert not hooked(model) and not mon.should_log(1)
    mon.step(1)
    assert not hooked(model)
    mon.step(2)
    assert hooked(model)  # the next forward is step 3's
    assert not mon.watch(4)  # a loop that jumps steps says which forward comes next
    assert not hooked(model)
    mon.close(timeout=0)
    assert not hooked(model)


def test_default_selection_and_globs() -> None:
    cnn = CNN()
    assert [name for name, _ in select_layers(cnn)] == [
        "features.0",
        "features.1",
        "features.3",
        "features.4",
        "features.5",
        "classifier.1",
    ]  # pooling and flatten are left out: no parameters, not activations
    assert [name for name, _ in select_layers(cnn, layers=["features.*"], types=[nn.Conv2d])] == [
        "features.0",
        "features.3",
    ]
    assert [name for name, _ in select_layers(cnn, types=["ReLU", nn.GELU])] == ["features.1", "features.5"]
    assert [name for name, _ in select_layers(cnn, exclude=["features.*"])] == ["classifier.1"]


class Reversed(nn.Module):
    """Registers its head before its body: depth must follow execution, not registration."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


async def test_depth_follows_execution_order_and_groups(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    model = Reversed()
    mon = Monitor(model, "order", url=daemon.url, every=1)
    assert mon.layer_ids == ["head", "body.0", "body.1"]
    model(torch.randn(5, 3))
    mon.step(0)
    assert mon.layer_ids == ["body.0", "body.1", "head"]
    assert mon.layer_groups == {"body": ["body.0", "body.1"], "head": ["head"]}
    assert await asyncio.to_thread(mon.close)
    step = (await http.get("/api/v1/runs/order")).json()["steps"][0]
    assert [(layer["layer_id"], layer["depth_index"]) for layer in step["layers"]] == [
        ("body/0", 0),
        ("body/1", 1),
        ("head", 2),
    ]
    assert step["layer_groups"] == {"body": ["body/0", "body/1"], "head": ["head"]}


async def test_eval_under_no_grad_sends_zero_gradients(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """Without a backward pass the gradient statistics are zeros and no gradient ratio is sent."""
    model = CNN().eval()
    mon = Monitor(model, "eval", url=daemon.url, every=1)
    with torch.no_grad():
        out = model(batch(model)[0])
    mon.step(0)
    assert await asyncio.to_thread(mon.close)
    step = (await http.get("/api/v1/runs/eval")).json()["steps"][0]
    assert all(set(layer["gradient_flow"].values()) == {0.0} for layer in step["layers"])
    assert step["cross_layer"]["gradient_norm_ratio"] == {}
    last = step["layers"][-1]["intermediate_features"]
    assert last["activation_std"] == pytest.approx(out.std().item(), rel=1e-5)


def grad_norm(module: nn.Module, scale: float = 1.0) -> float:
    return torch.cat([p.grad.flatten() for p in module.parameters(recurse=False)]).div(scale).norm().item()


async def test_amp_bfloat16_with_grad_scaler(
    daemon: RunningDaemon, http: httpx.AsyncClient, captured: list[dict[str, Any]]
) -> None:
    """Scaled gradients are reported unscaled, whether or not the scaler has unscaled them yet; a step the
    scaler skipped (inf gradients) is marked, not reported as a divergence."""
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    mon = Monitor(model, "amp", url=daemon.url, every=1, scaler=scaler)
    x, y = batch(model)
    expected = []
    for step in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            loss = F.cross_entropy(out, y)
        assert out.dtype == torch.bfloat16
        scaler.scale(loss).backward()
        if step == 0:  # monitored before the scaler touched the gradients: they are still scaled
            expected.append(grad_norm(model.head, scaler.get_scale()))
            mon.step(step)
            scaler.step(optimizer)
        else:
            if step == 2:
                model.head.weight.grad[0, 0] = float("inf")
            scaler.unscale_(optimizer)  # e.g. for gradient clipping
            expected.append(grad_norm(model.head))
            scaler.step(optimizer)
            mon.step(step)  # after scaler.step, before scaler.update
        scaler.update()
        optimizer.zero_grad()
    assert await asyncio.to_thread(mon.close)
    steps = (await http.get("/api/v1/runs/amp")).json()["steps"]
    head = [next(layer for layer in s["layers"] if layer["layer_id"] == "head") for s in steps]
    assert head[0]["gradient_flow"]["gradient_l2_norm"] == pytest.approx(expected[0], rel=1e-4)
    assert head[1]["gradient_flow"]["gradient_l2_norm"] == pytest.approx(expected[1], rel=1e-4)
    assert head[2]["gradient_flow"]["gradient_l2_norm"] == 0.0
    assert [body["metadata"].get("amp_skipped_step") for body in captured] == [None, None, True]
    assert head[0]["intermediate_features"]["activation_std"] > 0


async def test_compiled_model(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """Hooks stay registered behind a flag (the compiled graph would not see hooks added later)."""
    torch.manual_seed(0)
    model = MLP()
    compiled = torch.compile(model, backend="eager")
    mon = Monitor(compiled, "compiled", url=daemon.url, every=2)
    x, y = batch(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    outputs = []
    for step in range(4):
        out = compiled(x)
        F.cross_entropy(out, y).backward()
        optimizer.step()
        outputs.append(out.detach())
        mon.step(step)
        optimizer.zero_grad()
    assert await asyncio.to_thread(mon.close)
    steps = (await http.get("/api/v1/runs/compiled")).json()["steps"]
    assert [s["step"] for s in steps] == [0, 2]
    assert [layer["layer_id"] for layer in steps[0]["layers"]] == [
        "encoder/0",
        "encoder/1",
        "encoder/2",
        "encoder/3",
        "head",
    ]
    for s, out in zip(steps, (outputs[0], outputs[2]), strict=True):
        assert s["layers"][-1]["intermediate_features"]["activation_std"] == pytest.approx(out.std().item(), rel=1e-5)
        assert s["layers"][-1]["gradient_flow"]["gradient_l2_norm"] > 0


def test_ranks_other_than_zero_stay_silent(monkeypatch: pytest.MonkeyPatch, free_port: int) -> None:
    """Under torchrun (RANK/WORLD_SIZE set) only rank 0 posts, unless each rank is asked to."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    model = MLP()
    quiet = Monitor(model, "ranked", url=f"http://127.0.0.1:{free_port}")
    assert not quiet.active and not hooked(model)
    quiet.step(0, loss=1.0)
    assert quiet.stats.queued == 0 and quiet.close()
    each = Monitor(model, "ranked", url=f"http://127.0.0.1:{free_port}", ranks="all")
    assert each.active and each.run_id == "ranked-rank1"
    each.close(timeout=0)


@pytest.mark.slow
@pytest.mark.own_daemon
async def test_ddp_two_processes(daemon: RunningDaemon, http: httpx.AsyncClient, free_port: int) -> None:
    """gloo on CPU: rank 0 posts the run; with ranks="all" each rank posts its own, with synchronised grads."""
    import torch.multiprocessing as mp

    from tests.sdk.ddp_worker import train

    init_method = f"tcp://127.0.0.1:{free_port}"
    await asyncio.to_thread(mp.spawn, train, args=(2, init_method, daemon.url), nprocs=2, join=True)
    runs = (await http.get("/api/v1/runs")).json()
    assert sorted(runs) == ["ddp", "ddp-rank0", "ddp-rank1"]
    rank0 = (await http.get("/api/v1/runs/ddp-rank0")).json()["steps"]
    rank1 = (await http.get("/api/v1/runs/ddp-rank1")).json()["steps"]
    for a, b in zip(rank0, rank1, strict=True):
        # All-reduced gradients are the same on both ranks; activations come from each rank's own data.
        assert a["layers"][-1]["gradient_flow"] == pytest.approx(b["layers"][-1]["gradient_flow"], rel=1e-5)
        assert a["layers"][0]["intermediate_features"] != b["layers"][0]["intermediate_features"]


async def test_unwatched_forward_and_explicit_watch(
    daemon: RunningDaemon, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop whose steps jump calls watch(step); a monitored step whose forward was not watched still sends
    its gradients and weights, with empty activations, and says so once in the log."""
    model = MLP()
    mon = Monitor(model, "jumps", url=daemon.url, every=5, start_step=100, persistent_hooks=True)
    x, y = batch(model)
    for step in (100, 103, 105):  # 103 is not monitored; 105 is, but the loop jumped there without watch()
        if step != 105:
            mon.watch(step)
        F.cross_entropy(model(x), y).backward()
        mon.step(step)
        model.zero_grad()
    assert await asyncio.to_thread(mon.close)
    steps = (await http.get("/api/v1/runs/jumps")).json()["steps"]
    assert [s["step"] for s in steps] == [100, 105]
    assert steps[0]["layers"][0]["intermediate_features"]["activation_shape"] == [6, 16]
    unwatched = steps[1]["layers"][0]
    assert unwatched["intermediate_features"]["activation_shape"] == [0, 0]
    assert unwatched["gradient_flow"]["gradient_l2_norm"] > 0
    assert "not watched" in caplog.text


def test_invalid_arguments(free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}"
    with pytest.raises(ValueError, match="every"):
        Monitor(MLP(), "bad", url=url, every=0)
    with pytest.raises(ValueError, match="no layer"):
        Monitor(MLP(), "bad", url=url, layers=["nothing.*"])
    with pytest.raises(ValueError, match="run_id"):
        Monitor(MLP(), "bad id", url=url)
    mon = Monitor(MLP(), "groups", url=url, layer_groups={})
    assert mon.layer_groups is None  # {} asks for no grouping
    mon.close(timeout=0)
