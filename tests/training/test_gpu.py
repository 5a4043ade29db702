"""The CUDA path, where an NVIDIA GPU is present (skipped elsewhere): training and inference on the device."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from tests.daemon import running_daemon
from tests.training.helpers import CNN, final_state, hyperparams

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


async def test_train_and_infer_on_cuda(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", inference_device="cuda") as daemon,
        httpx.AsyncClient(base_url=daemon.url, timeout=60) as http,
    ):
        body = {"architecture": CNN, "hyperparams": hyperparams(device="cuda", max_samples=2000)}
        run_id = (await http.post("/api/train", json=body)).json()["run_id"]
        state, metrics = await final_state(http, run_id)
        assert state == "succeeded" and len(metrics) == 2
        logs = (await http.get(f"/api/v1/runs/{run_id}/logs")).json()["data"]
        assert any("training on cuda" in line["message"] for line in logs)
        answer = await http.post("/api/infer", json={"run_id": run_id, "pixels": [0.5] * 784})
        assert answer.status_code == 200 and len(answer.json()["probabilities"]) == 10
