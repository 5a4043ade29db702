"""The monitor on CUDA (skipped without an NVIDIA GPU): statistics computed on a non-default stream, or on a
device other than the current one, are read only after their copy to the host has landed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shared.sdk import Monitor
from tests.daemon import RunningDaemon
from tests.sdk.models import MLP, batch, record_outputs, reference

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


async def monitored_step(
    model: nn.Module, device: torch.device, url: str, run_id: str, *, side_stream: bool
) -> list[dict[str, Any]]:
    """One monitored step queued behind long work on `device` (on a side stream, or on that device's current
    stream while the current device stays 0); returns the reference statistics."""
    torch.backends.cuda.matmul.allow_tf32 = False
    mon = Monitor(model, run_id, url=url, every=1)
    names = mon.layer_ids
    outputs = record_outputs(model, names)
    x, y = (t.to(device) for t in batch(model, size=64))
    context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if side_stream:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))  # the weights and batch were made on the default one
        context = torch.cuda.stream(side)
    with context:
        big = torch.randn(4096, 4096, device=device)
        for _ in range(20):  # tens of milliseconds of work ahead of the statistics on this stream
            big = big @ big / 64
        F.cross_entropy(model(x), y).backward()
        mon.step(0)
    torch.cuda.synchronize(device)
    assert await asyncio.to_thread(mon.close)
    return reference(model, names, outputs)


async def test_statistics_from_a_side_stream_are_complete(
    daemon: RunningDaemon, captured: list[dict[str, Any]]
) -> None:
    torch.manual_seed(0)
    model = MLP().cuda()
    expected = await monitored_step(model, torch.device("cuda"), daemon.url, "side-stream", side_stream=True)
    for layer, want in zip(captured[0]["layer_statistics"], expected, strict=True):
        assert layer["gradient_flow"]["gradient_l2_norm"] == pytest.approx(want["gradient_l2_norm"], rel=1e-4)
        assert layer["intermediate_features"]["activation_std"] == pytest.approx(want["activation_std"], rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
async def test_statistics_of_a_model_on_the_second_gpu(daemon: RunningDaemon, captured: list[dict[str, Any]]) -> None:
    """Current device 0, model on cuda:1: the event must be recorded on cuda:1's stream, which made the copy."""
    torch.manual_seed(0)
    torch.cuda.set_device(0)
    model = MLP().to("cuda:1")
    expected = await monitored_step(model, torch.device("cuda:1"), daemon.url, "second-gpu", side_stream=False)
    for layer, want in zip(captured[0]["layer_statistics"], expected, strict=True):
        assert layer["gradient_flow"]["gradient_l2_norm"] == pytest.approx(want["gradient_l2_norm"], rel=1e-4)


async def test_monitor_built_before_cuda_follows_the_model(
    daemon: RunningDaemon, captured: list[dict[str, Any]]
) -> None:
    """Built on the CPU, then `model.cuda()`: statistics are computed on the GPU and `mon.step` never syncs."""
    torch.manual_seed(0)
    model = MLP()
    mon = Monitor(model, "moved", url=daemon.url, every=1)
    model.cuda()
    names = mon.layer_ids
    outputs = record_outputs(model, names)
    x, y = (t.cuda() for t in batch(model, size=64))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mon.step(0, loss=loss)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert await asyncio.to_thread(mon.close)
    expected = reference(model, names, outputs)
    for layer, want in zip(captured[0]["layer_statistics"], expected, strict=True):
        assert layer["gradient_flow"]["gradient_l2_norm"] == pytest.approx(want["gradient_l2_norm"], rel=1e-4)
