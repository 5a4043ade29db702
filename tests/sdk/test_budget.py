"""`max_overhead`: the monitor lengthens its stride when statistics would cost more than their share of training."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import torch
from torch import nn

import shared.sdk.monitor as monitor_module
from shared.sdk import Monitor
from tests.daemon import RunningDaemon
from tests.sdk.models import MLP, batch


def forward_only_loop(mon: Monitor, model: nn.Module, steps: int) -> None:
    """Steps far cheaper than their statistics: a forward of a 3-sample batch and a backward, no optimizer."""
    x, y = batch(model, size=3)
    for step in range(steps):
        nn.functional.cross_entropy(model(x), y).backward()
        mon.step(step)
        model.zero_grad(set_to_none=True)


async def posted_steps(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = (await http.get(f"/api/v1/runs/{run_id}")).json()["steps"]
    return steps


async def test_budget_lengthens_the_stride(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """Statistics that cost many times the step: far fewer snapshots than `every` alone, each of a watched
    forward, on multiples of `every`, starting with the first step."""
    torch.manual_seed(0)
    model = MLP()
    mon = Monitor(model, "budget", url=daemon.url, every=2, max_overhead=0.001)
    forward_only_loop(mon, model, 200)
    assert await asyncio.to_thread(mon.close)
    steps = await posted_steps(http, "budget")
    numbers = [s["step"] for s in steps]
    # For all 100 multiples of 2 to be posted, each gap would need 999 times a monitored step's cost.
    assert numbers[0] == 0 and len(numbers) < 100 and len(numbers) == mon.monitored_steps
    assert all(n % 2 == 0 for n in numbers)
    for s in steps:  # the forward of every posted step was watched: the monitor armed for exactly those
        assert all(layer["intermediate_features"]["activation_std"] > 0 for layer in s["layers"])


async def test_the_longest_gap_wins_over_the_budget(
    daemon: RunningDaemon, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `MAX_GAP_S` the next multiple of `every` is monitored whatever it costs (here: at once)."""
    monkeypatch.setattr(monitor_module, "MAX_GAP_S", 0.0)
    model = MLP()
    mon = Monitor(model, "gap", url=daemon.url, every=3, max_overhead=0.001)
    forward_only_loop(mon, model, 30)
    assert await asyncio.to_thread(mon.close)
    assert [s["step"] for s in await posted_steps(http, "gap")] == list(range(0, 30, 3))


async def test_without_a_budget_exactly_every_n(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    model = MLP()
    mon = Monitor(model, "exact", url=daemon.url, every=4)
    assert mon.max_overhead is None  # scripts get what they ask for unless they set a budget
    forward_only_loop(mon, model, 40)
    assert await asyncio.to_thread(mon.close)
    assert [s["step"] for s in await posted_steps(http, "exact")] == list(range(0, 40, 4))


@pytest.mark.parametrize("budget", [0.0, 1.0, -0.1, 1.5])
def test_budget_outside_zero_one_is_refused(free_port: int, budget: float) -> None:
    with pytest.raises(ValueError, match="max_overhead"):
        Monitor(MLP(), "bad", url=f"http://127.0.0.1:{free_port}", max_overhead=budget)
