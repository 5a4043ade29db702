"""The examples run: the plain PyTorch script, the Lightning and Hugging Face callbacks where installed (imported,
and run as scripts against a real daemon), and the torchrun-ready DDP script as a plain one."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tests.daemon import TEST_TOKEN, RunningDaemon

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pivot_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def steps_of(http: httpx.AsyncClient, run_id: str) -> list[int]:
    return [step["step"] for step in (await http.get(f"/api/v1/runs/{run_id}")).json()["steps"]]


@pytest.mark.slow
async def test_plain_pytorch_script(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    command = [str(EXAMPLES / "train_mlp_cnn.py"), "--steps", "12", "--every", "5", "--eval-interval", "10"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *command, "--url", daemon.url, "--run-id", "example-cnn", stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stdout
    assert await steps_of(http, "example-cnn") == [0, 5, 10]
    series = (await http.get("/api/v1/runs/example-cnn/scalars")).json()["series"]
    assert len(series["train/loss"]["steps"]) == 12
    assert series["val/accuracy"]["steps"] == [0, 10, 11]


# The frameworks warn about their own internals and advice (dataloader workers, deprecations in torch
# they call); those are not the SDK's to fix, so these two tests do not turn warnings into errors.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
async def test_lightning_callback(daemon: RunningDaemon, http: httpx.AsyncClient, tmp_path: Path) -> None:
    L = pytest.importorskip("lightning")
    callback_module = load_example("lightning_callback")

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(32, 8), torch.randint(0, 3, (32,)))
    trainer = L.Trainer(
        max_steps=6,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[callback_module.PivotCallback("lightning", every=2, url=daemon.url)],
    )
    await asyncio.to_thread(trainer.fit, Classifier(), torch.utils.data.DataLoader(data, batch_size=4))
    assert await steps_of(http, "lightning") == [0, 2, 4]
    series = (await http.get("/api/v1/runs/lightning/scalars")).json()["series"]
    assert series["train/loss"]["steps"] == list(range(6))
    step = (await http.get("/api/v1/runs/lightning")).json()["steps"][0]
    assert [layer["layer_id"] for layer in step["layers"]] == ["net/0", "net/1", "net/2"]
    assert step["layers"][0]["gradient_flow"]["gradient_l2_norm"] > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
async def test_hf_trainer_callback(daemon: RunningDaemon, http: httpx.AsyncClient, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    callback_module = load_example("hf_trainer_callback")

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))

        def forward(self, x: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
            logits = self.net(x)
            return {"loss": F.cross_entropy(logits, labels), "logits": logits}

    rows = [{"x": torch.randn(8), "labels": torch.tensor(i % 3)} for i in range(32)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(
        model=Classifier(),
        args=args,
        train_dataset=rows,
        callbacks=[callback_module.PivotTrainerCallback("hf", every=2, url=daemon.url)],
    )
    await asyncio.to_thread(trainer.train)
    assert await steps_of(http, "hf") == [0, 2, 4]
    series = (await http.get("/api/v1/runs/hf/scalars")).json()["series"]
    assert series["train/loss"]["steps"] == [1, 2, 3, 4, 5, 6]
    assert "train/learning_rate" in series


async def run_script(name: str, *args: str, url: str) -> str:
    """Run examples/<name>.py as `python examples/<name>.py ARGS` with PIVOT_URL/PIVOT_TOKEN; its stdout."""
    env = {**os.environ, "PIVOT_URL": url, "PIVOT_TOKEN": TEST_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / f"{name}.py"), *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, stdout.decode()
    return stdout.decode()


SCRIPTS = [("lightning_callback", "lightning"), ("hf_trainer_callback", "transformers"), ("ddp_train", "torch")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "framework"), SCRIPTS, ids=[name for name, _ in SCRIPTS])
async def test_each_example_runs_as_a_script_and_reports(
    daemon: RunningDaemon, http: httpx.AsyncClient, name: str, framework: str
) -> None:
    pytest.importorskip(framework)
    run_id = f"script-{name.replace('_', '-')}"
    said = await run_script(name, "--steps", "6", "--every", "2", "--run-id", run_id, url=daemon.url)
    assert await steps_of(http, run_id) == [0, 2, 4], said
    run = (await http.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "succeeded" and "train/loss" in run["latest"], run
    assert "did not take the data" not in said and f"run {run_id}" in said


@pytest.mark.slow
async def test_an_example_says_so_when_no_daemon_takes_its_data(free_port: int) -> None:
    said = await run_script("ddp_train", "--steps", "2", url=f"http://127.0.0.1:{free_port}")
    assert "did not take the data" in said and "set PIVOT_URL and PIVOT_TOKEN" in said
