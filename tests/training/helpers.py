"""Shared pieces of the training tests: small MLP and CNN architectures, tiny CPU hyperparameters, an SSE reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

MLP = {  # the smallest classifier: one hidden layer
    "input_size": 784,
    "layers": [
        {"type": "linear", "in": 784, "out": 32},
        {"type": "relu"},
        {"type": "linear", "in": 32, "out": 10},
        {"type": "softmax"},
    ],
}

CNN = {  # the demo's CNN, narrower so it trains in a second on two shared cores
    "input_size": 784,
    "input_channels": 1,
    "input_height": 28,
    "input_width": 28,
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 1, "padding": "same"},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 2, "padding": 0},
        {"type": "conv2d", "in_channels": 4, "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": "same"},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 2, "padding": 0},
        {"type": "flatten"},
        {"type": "linear", "in": 392, "out": 32},
        {"type": "relu"},
        {"type": "dropout", "p": 0.5},
        {"type": "linear", "in": 32, "out": 10},
        {"type": "softmax"},
    ],
}


async def cancel(client: httpx.AsyncClient, run_id: str) -> str:
    """Cancel a run and follow it to its end; its final state. A test that leaves its daemon with a run still
    stopping makes that run's worker wait out the SDK's close timeout (5 s: its last flush finds the daemon no longer
    listening), and the daemon's stop wait for the worker."""
    response = await client.post(f"/api/train/{run_id}/cancel")
    assert response.status_code == 202, response.text
    return (await final_state(client, run_id))[0]


def hyperparams(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 32,
        "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.0},
        "loss": "cross_entropy",
        "seed": 42,
        "train_split": 0.8,
        "shuffle": True,
        "max_samples": 400,
        "dataset": "digits",
        "layerwise_every": 5,
        "device": "cpu",  # the default ("auto") would train on CUDA on a GPU machine; tests/training/test_gpu.py does
    }
    base.update(overrides)
    return base


DAEMON_SETTINGS: dict[str, Any] = {"worker_threads": 1, "cancel_grace_s": 5.0}


async def sse(client: httpx.AsyncClient, path: str) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
    """(event, data) pairs of an SSE stream; comments come as (":" + text, None)."""
    async with client.stream("GET", path, timeout=120) as response:
        assert response.status_code == 200, await response.aread()
        event, data = "message", []
        async for line in response.aiter_lines():
            if line.startswith(":"):
                yield line, None
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                yield event, json.loads("\n".join(data))
                event, data = "message", []


async def final_state(client: httpx.AsyncClient, run_id: str) -> tuple[str, list[dict[str, Any]]]:
    """Follow a run's SSE stream to its end: (final state, metric events)."""
    metrics = []
    async for event, data in sse(client, f"/api/runs/{run_id}/events"):
        if event == "metric":
            assert data is not None
            metrics.append(data)
        elif event == "state" and data is not None and data["state"] in ("succeeded", "failed", "cancelled"):
            return data["state"] if data["state"] != "failed" else f"failed: {data.get('error')}", metrics
    raise AssertionError("stream ended without a final state")
