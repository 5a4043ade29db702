"""`PIVOTClient`'s training methods (seed 002's example, as written there) and `pivotctl`'s output and exit codes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import yaml

from shared.client import PIVOTClient
from shared.models.experiments import ExperimentDetail, ExperimentRun, StatisticalResult
from tests.daemon import RunningDaemon
from tests.training.helpers import MLP, hyperparams

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server


def seed_002_example(url: str) -> tuple[list[dict[str, object]], dict[str, object]]:
    client = PIVOTClient(base_url=url)
    session = client.create_session(config_path="configs/train.yaml", session_name="my_experiment")
    client.start_training(session["session_id"])
    seen = list(client.stream_metrics(session["session_id"]))
    final = client.wait_for_completion(session["session_id"])
    client.close()
    return seen, final


async def test_seed_002_python_client(daemon: RunningDaemon) -> None:
    configs = daemon.settings.config_dir / "configs"
    configs.mkdir(parents=True)
    (configs / "train.yaml").write_text(yaml.safe_dump({"architecture": MLP, "hyperparams": hyperparams()}))
    seen, final = await asyncio.to_thread(seed_002_example, daemon.url)
    assert [m["epoch"] for m in seen] == [1, 2] and all("val_loss" in m for m in seen)
    assert final["status"] == "completed" and final["latest_metrics"]["val_loss"] == seen[-1]["val_loss"]


async def pivotctl(daemon: RunningDaemon, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.ctl", "--url", daemon.url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    code = await proc.wait()  # the exit status as an int (communicate() has already waited for it)
    return code, out.decode(), err.decode()


async def test_pivotctl(daemon: RunningDaemon, tmp_path: Path) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(MLP))
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps(hyperparams(epochs=1)))
    code, out, err = await pivotctl(daemon, "--json", "train", str(arch), "--hyperparams", str(hp), "--wait")
    assert code == 0, err
    run = json.loads(out)
    assert run["state"] == "succeeded"

    code, out, _ = await pivotctl(daemon, "runs")
    assert code == 0 and run["run_id"] in out and "succeeded" in out
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps([[0.0] * 784, [1.0] * 784]))
    code, out, _ = await pivotctl(daemon, "infer", "--run", run["run_id"], str(inputs))
    assert code == 0 and len(out.split()) == 2 and all(label.isdigit() for label in out.split())
    code, out, _ = await pivotctl(daemon, "params", run["param_id"])
    assert code == 0 and json.loads(out)["parameters"]["layout"] == "row_major"

    # Exit codes: refused (finished run), failed run, bad input file, unreachable daemon.
    code, _, err = await pivotctl(daemon, "cancel", run["run_id"])
    assert code == 3 and "409" in err
    hp.write_text(json.dumps(hyperparams(epochs=1, dataset="mnist")))
    code, out, _ = await pivotctl(daemon, "train", str(arch), "--hyperparams", str(hp), "--wait")
    assert code == 1 and "failed: DatasetError" in out
    code, _, err = await pivotctl(daemon, "train", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.ctl", "--url", "http://127.0.0.1:9", "runs", stderr=asyncio.subprocess.PIPE
    )
    await proc.communicate()
    assert proc.returncode == 4


async def test_pivotctl_into_a_closed_pipe_is_quiet(daemon: RunningDaemon) -> None:
    """`pivotctl runs | head`: a reader that went away is neither an error nor "cannot reach the daemon"."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write fails with EPIPE
    try:
        command = [sys.executable, "-m", "shared.ctl", "--url", daemon.url, "--json", "runs"]
        result = await asyncio.to_thread(
            subprocess.run, command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write)
    assert result.returncode == 0 and result.stderr == ""


def sweep_with_the_client(url: str) -> tuple[ExperimentDetail, list[ExperimentRun], StatisticalResult, bytes]:
    """The README's experiment workflow, through `PivotClient`: sweep, wait, test, export."""
    with PIVOTClient(base_url=url) as client:
        config = {
            "type": "sweep",
            "architecture": MLP,
            "hyperparams": hyperparams(epochs=1, max_samples=200, layerwise_every=0),
            "variations": {"seed": [1, 2], "optimizer.lr": [0.1, 0.001]},
            "metric": "val_accuracy",
        }
        experiment = client.create_experiment("lr", config, tags=["client"])
        client.start_experiment(experiment.id)
        final = client.wait_experiment(experiment.id, poll_s=0.2, timeout=120)
        runs = client.experiment_runs(experiment.id)
        result = client.compare(experiment.id, ["optimizer.lr=0.1", "optimizer.lr=0.001"], "val_accuracy")
        latex = client.export_comparison([experiment.id], "latex")
        return final, runs, result, latex


async def test_client_runs_an_experiment_end_to_end(daemon: RunningDaemon) -> None:
    final, runs, result, latex = await asyncio.to_thread(sweep_with_the_client, daemon.url)
    assert final.status == "completed" and final.results_summary.total_runs == 4
    assert final.results_summary.runs_by_state == {"succeeded": 4}
    assert sorted(run.group or "" for run in runs) == ["optimizer.lr=0.001"] * 2 + ["optimizer.lr=0.1"] * 2
    assert {(run.status, run.state) for run in runs} == {("completed", "succeeded")}
    assert result.test_type == "two_sample_t_test" and result.test == "t_test" and result.sample_sizes == [2, 2]
    assert b"\\begin{tabular}" in latex and b"optimizer.lr=0.1" in latex
