"""The examples run as a user runs them: each as a script in a process of its own, against a real daemon (the
Lightning and Hugging Face callbacks where those frameworks are installed, the torchrun-ready DDP script as a
plain one), and one says so when no daemon takes its data.

The frameworks are imported only by the scripts: the test process never pays for importing them."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon import TEST_TOKEN, RunningDaemon

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Not `shared_daemon`: a daemon in this process starts in under 0.1 s, while a shared one would put these
# tests, each seconds of scripts, on one xdist worker together.
pytestmark = pytest.mark.slow


async def steps_of(http: httpx.AsyncClient, run_id: str) -> list[int]:
    return [step["step"] for step in (await http.get(f"/api/v1/runs/{run_id}")).json()["steps"]]


def needs(framework: str) -> None:
    """Skip unless `framework` is installed, without importing it here (seconds for Lightning or transformers)."""
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed")


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


async def reported(http: httpx.AsyncClient, url: str, name: str, run_id: str) -> dict[str, Any]:
    """Run examples/<name>.py for 6 steps, layer statistics every 2: its run, checked to have ended well, with its
    scalar series under "series"."""
    said = await run_script(name, "--steps", "6", "--every", "2", "--run-id", run_id, url=url)
    assert await steps_of(http, run_id) == [0, 2, 4], said
    run: dict[str, Any] = (await http.get(f"/api/v1/runs/{run_id}")).json()
    assert run["status"] == "succeeded" and "train/loss" in run["latest"], run
    assert "did not take the data" not in said and f"run {run_id}" in said
    run["series"] = (await http.get(f"/api/v1/runs/{run_id}/scalars")).json()["series"]
    return run


async def test_the_lightning_callback_reports_from_a_script(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    needs("lightning")
    run = await reported(http, daemon.url, "lightning_callback", "lightning")
    assert run["series"]["train/loss"]["steps"] == list(range(6))  # the step each loss was computed at
    step = run["steps"][0]
    assert [layer["layer_id"] for layer in step["layers"]] == ["net/0", "net/1", "net/2"]
    assert step["layers"][0]["gradient_flow"]["gradient_l2_norm"] > 0  # read before the optimizer step


async def test_the_hf_trainer_callback_reports_from_a_script(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    needs("transformers")
    run = await reported(http, daemon.url, "hf_trainer_callback", "hf")
    assert run["series"]["train/loss"]["steps"] == [1, 2, 3, 4, 5, 6]  # the Trainer's own step count
    assert "train/learning_rate" in run["series"]


async def test_the_ddp_script_reports_and_says_so_when_no_daemon_takes_its_data(
    daemon: RunningDaemon, http: httpx.AsyncClient, free_port: int
) -> None:
    """Two runs of the script at once: the one with no daemon spends most of its time retrying until its close
    gives up, which the other's run overlaps."""
    nowhere = run_script("ddp_train", "--steps", "2", url=f"http://127.0.0.1:{free_port}")
    _, said = await asyncio.gather(reported(http, daemon.url, "ddp_train", "script-ddp-train"), nowhere)
    assert "did not take the data" in said and "set PIVOT_URL and PIVOT_TOKEN" in said
