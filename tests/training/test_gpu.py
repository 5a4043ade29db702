"""The CUDA path, where an NVIDIA GPU is present (skipped elsewhere): training, resume, layer-wise statistics
and inference on the device, and their parity with the CPU.

Run them with `pytest -m gpu -n 0 -p no:cacheprovider` (bench/gpu_check.py does).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from bench.gpu_check import numbers_by_path
from pivotd.training.model import Net
from pivotd.training.trainer import _resume
from shared.models.training import Architecture
from shared.sdk import Monitor
from tests.daemon import daemon_client, running_daemon
from tests.sdk.capture import capture_layerwise_bodies
from tests.training.helpers import CNN, final_state, hyperparams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    pytest.mark.usefixtures("fork_server"),
]


async def test_train_and_infer_on_cuda(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", inference_device="cuda") as daemon,
        daemon_client(daemon.url, timeout=60) as http,
    ):
        body = {"architecture": CNN, "hyperparams": hyperparams(device="cuda", max_samples=2000)}
        run_id = (await http.post("/api/train", json=body)).json()["run_id"]
        state, metrics = await final_state(http, run_id)
        assert state == "succeeded" and len(metrics) == 2
        logs = (await http.get(f"/api/v1/runs/{run_id}/logs")).json()["data"]
        assert any("training on cuda" in line["message"] for line in logs)
        answer = await http.post("/api/infer", json={"run_id": run_id, "pixels": [0.5] * 784})
        assert answer.status_code == 200 and len(answer.json()["probabilities"]) == 10


def _cuda_ready() -> None:
    # Parity at relative 1e-4 needs full-precision float32 matmuls and convolutions on the GPU.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _adamw_checkpoint(path: Path, device: str) -> None:
    torch.manual_seed(0)
    model = Net(Architecture.model_validate(CNN)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(8, 784, device=device), torch.arange(8, device=device)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "metrics": {}}, path)


def test_resumed_adamw_keeps_steps_on_cpu_and_never_syncs(tmp_path: Path) -> None:
    """A CUDA checkpoint resumed onto CUDA: `step` on the CPU, and the training steps after it never sync."""
    path = tmp_path / "epoch_0001.pth"
    _adamw_checkpoint(path, "cuda")
    model = Net(Architecture.model_validate(CNN)).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _resume({"path": str(path), "epoch": 1, "best": None}, model, optimizer, None, "val_loss")
    for state in optimizer.state.values():
        assert state["step"].device.type == "cpu"
        assert state["exp_avg"].is_cuda
    x, y = torch.randn(8, 784, device="cuda"), torch.arange(8, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(state["step"].item() == 6.0 for state in optimizer.state.values())


@pytest.fixture
def bodies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Layer-wise bodies as the SDK's sender thread builds them."""
    return capture_layerwise_bodies(monkeypatch)


async def test_layerwise_values_match_between_cpu_and_cuda(tmp_path: Path, bodies: list[dict[str, Any]]) -> None:
    """Same weights, same batch: every statistic of the payload agrees within relative 1e-4 (TF32 off)."""
    _cuda_ready()
    torch.manual_seed(0)
    cpu_model = Net(Architecture.model_validate(CNN)).eval()  # eval: dropout draws differ between devices
    cuda_model = copy.deepcopy(cpu_model).cuda()
    x, y = torch.randn(16, 784), torch.arange(16) % 10
    async with running_daemon(tmp_path / "state") as daemon:
        for model, device in ((cpu_model, "cpu"), (cuda_model, "cuda")):
            mon = Monitor(model, f"parity-{device}", url=daemon.url, every=1)
            F.cross_entropy(model(x.to(device)), y.to(device)).backward()
            mon.step(0)
            assert await asyncio.to_thread(mon.close)
    cpu_layers, cuda_layers = (body["layer_statistics"] for body in bodies)
    assert [layer["layer_id"] for layer in cpu_layers] == [layer["layer_id"] for layer in cuda_layers]
    cpu_values, cuda_values = numbers_by_path(cpu_layers), numbers_by_path(cuda_layers)
    assert len(cpu_values) > 50 and cuda_values.keys() == cpu_values.keys()
    assert cuda_values == pytest.approx(cpu_values, rel=1e-4, abs=1e-6)


async def test_inference_on_cuda_matches_cpu(tmp_path: Path) -> None:
    """One run's weights served by a CPU daemon, then by a CUDA one on the same data: the same probabilities."""
    _cuda_ready()
    pixels = [((i * 37) % 256) / 255 for i in range(784)]
    answers = []
    run_id = None
    for device in ("cpu", "cuda"):
        async with (
            running_daemon(tmp_path / "state", inference_device=device) as daemon,
            daemon_client(daemon.url, timeout=60) as http,
        ):
            if run_id is None:
                body = {"architecture": CNN, "hyperparams": hyperparams(epochs=1, max_samples=400)}
                run_id = (await http.post("/api/train", json=body)).json()["run_id"]
                state, _ = await final_state(http, run_id)
                assert state == "succeeded"
            answer = await http.post("/api/infer", json={"run_id": run_id, "pixels": pixels})
            assert answer.status_code == 200
            answers.append(answer.json()["probabilities"])
    assert answers[1] == pytest.approx(answers[0], rel=1e-4, abs=1e-6)
