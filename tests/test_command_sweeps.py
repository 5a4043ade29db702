"""Command sweeps: an experiment whose config gives `command` with `{placeholders}` runs each combination of its
variations as a job, in its group, with the lifecycle, progress, statistics and exports of built-in sweeps.

A real daemon runs a real Python script per grid point, which posts its final scalar through the SDK.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from scipy import stats

from shared import ctl
from tests.daemon import TEST_TOKEN
from tests.test_jobs import ROOT, daemon_and_client, fifo, read_fifo
from tests.training.helpers import final_state

SCRIPT = """
import sys
from shared.sdk import finish, init, log
lr, seed = float(sys.argv[1]), int(sys.argv[2])
init()  # the job's run
log(0, {"val/accuracy": (0.9 if lr == 0.1 else 0.8) + seed**2 / 100})
finish()
"""


def command_sweep(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    config = {
        "type": "sweep",
        "command": [sys.executable, "train.py", "{optimizer.lr}", "{seed}"],
        "cwd": str(tmp_path),
        "env": {"PYTHONPATH": ROOT},
        "variations": {"optimizer.lr": [0.1, 0.01], "seed": [1, 2, 3]},
        "metric": "val/accuracy",
    }
    return {k: v for k, v in (config | changes).items() if v is not None}


async def create(http: httpx.AsyncClient, config: dict[str, Any]) -> httpx.Response:
    return await http.post("/api/v1/experiments", json={"experiment": {"name": "cmd", "config": config}})


async def started(http: httpx.AsyncClient, config: dict[str, Any]) -> dict[str, Any]:
    created = await create(http, config)
    assert created.status_code == 201, created.text
    response = await http.post(f"/api/v1/experiments/{created.json()['data']['id']}/start")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()["data"]
    return detail


def accuracy(lr: float, seed: int) -> float:
    return (0.9 if lr == 0.1 else 0.8) + seed**2 / 100


async def test_a_command_sweep_runs_each_combination_as_a_job_and_its_groups_get_a_welch_test(
    tmp_path: Path,
) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    async with daemon_and_client(tmp_path, training_slots=2) as (_, http):
        detail = await started(http, command_sweep(tmp_path))
        exp_id = detail["id"]
        assert len(detail["runs"]) == 6 and detail["status"] == "running"
        for run in detail["runs"]:
            assert (await final_state(http, run["id"]))[0] == "succeeded"
        detail = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]
        assert detail["status"] == "completed" and detail["progress"] == 1 and detail["eta_seconds"] == 0
        summary = detail["results_summary"]
        assert summary["runs_by_status"] == {"completed": 6} and summary["metric"] == "val/accuracy"
        assert summary["best_run"]["value"] == pytest.approx(accuracy(0.1, 3))
        runs = (await http.get(f"/api/v1/experiments/{exp_id}/runs")).json()["data"]
        by_group: dict[str, list[float]] = {}
        for run in sorted(runs, key=lambda run: run["hyperparameters"]["seed"]):
            assert run["kind"] == "job"
            values = run["hyperparameters"]
            assert run["metrics"]["val/accuracy"] == pytest.approx(accuracy(values["optimizer.lr"], values["seed"]))
            by_group.setdefault(run["group"], []).append(run["metrics"]["val/accuracy"])
        assert set(by_group) == {"optimizer.lr=0.1", "optimizer.lr=0.01"}
        job = (await http.get(f"/api/v1/runs/{runs[0]['id']}", params={"steps": "none"})).json()["job"]
        assert job["command"][2:] == [
            str(runs[0]["hyperparameters"]["optimizer.lr"]),
            str(runs[0]["hyperparameters"]["seed"]),
        ]

        groups = ["optimizer.lr=0.1", "optimizer.lr=0.01"]
        test = {"test_type": "t_test", "groups": groups, "metric": "val/accuracy"}
        response = await http.post(f"/api/v1/experiments/{exp_id}/statistical-results", json={"test": test})
        assert response.status_code == 201, response.text
        result = response.json()["data"]
        direct = stats.ttest_ind(by_group[groups[0]], by_group[groups[1]], equal_var=False)
        assert result["sample_sizes"] == [3, 3]
        assert result["statistic"] == pytest.approx(direct.statistic, rel=1e-9)
        assert result["p_value"] == pytest.approx(direct.pvalue, rel=1e-9)

        export = await http.post(f"/api/v1/experiments/{exp_id}/export", json={"format": "json"})
        assert export.status_code == 200, export.text
        assert len(export.json()["runs"]) == 6
        body = {"experiment_ids": [exp_id], "format": "latex"}
        report = await http.post("/api/v1/export/comparison", json=body)
        assert report.status_code == 200, report.text
        assert "optimizer.lr=0.1" in report.text.replace("\\_", "_") and "val/accuracy" in report.text


async def test_pause_resume_and_cancel_hold_and_stop_its_jobs(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    config = command_sweep(
        tmp_path, command=["bash", "-c", f"echo {{seed}} > {said}; sleep 300"], variations={"seed": [1, 2, 3]}
    )
    async with daemon_and_client(tmp_path, training_slots=1) as (_, http):
        detail = await started(http, config)
        exp_id = detail["id"]
        assert (await read_fifo(said)).strip() == "1"  # the first job runs; the others wait for the one slot
        paused = await http.post(f"/api/v1/experiments/{exp_id}/pause")
        assert paused.status_code == 200 and paused.json()["data"]["status"] == "paused"
        resumed = await http.post(f"/api/v1/experiments/{exp_id}/resume")
        assert resumed.json()["data"]["status"] == "running"
        cancelled = await http.post(f"/api/v1/experiments/{exp_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        for run in detail["runs"]:
            assert (await final_state(http, run["id"]))[0] == "cancelled"
        detail = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]
        assert detail["status"] == "cancelled" and detail["results_summary"]["runs_by_status"] == {"cancelled": 3}


BAD = [
    ({"command": ["python", "train.py", "--lr", "{lr}"]}, "config.command[3]"),
    ({"command": ["python", 3]}, "config.command[1]"),
    ({"cwd": None}, "config.cwd"),
    ({"cwd": "relative"}, "config.cwd"),
    ({"cwd": "/no/such/dir/here"}, "config.cwd"),
    ({"env": {"PIVOT_TOKEN": "x"}}, "config.env"),
    ({"gpus": 1}, "config.gpus"),  # none on this box
    ({"model_id": "m_1"}, "config.model_id"),
    ({"hyperparams": {"epochs": 1}}, "config.hyperparams"),
    ({"variations": {"seed": [[1]], "optimizer.lr": [0.1]}}, "config.variations.seed[0]"),
    ({"variations": {"seed": [1, 1], "optimizer.lr": [0.1]}}, "config.variations.seed[1]"),
    ({"variations": {"seed": [], "optimizer.lr": [0.1]}}, "config.variations.seed"),
]


@pytest.mark.shared_daemon  # a refused experiment is not created: the cases share one daemon
@pytest.mark.parametrize(("change", "field"), BAD, ids=[field for _, field in BAD])
async def test_a_bad_command_sweep_is_refused_naming_the_field(
    tmp_path: Path, http: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await create(http, command_sweep(tmp_path, **change) | {k: v for k, v in change.items() if v is None})
    assert response.status_code == 422, response.text
    assert f"experiment.{field}" in [detail["field"] for detail in response.json()["error"]["details"]], response.text


async def test_literal_braces_and_a_cwd_without_placeholders_are_kept(tmp_path: Path) -> None:
    config = command_sweep(tmp_path, command=["bash", "-c", "echo ${{HOME}} {seed} {a b}"], variations={"seed": [7]})
    async with daemon_and_client(tmp_path) as (_, http):
        detail = await started(http, config)
        run_id = detail["runs"][0]["id"]
        job = (await http.get(f"/api/v1/runs/{run_id}", params={"steps": "none"})).json()["job"]
        assert job["command"] == ["bash", "-c", "echo ${HOME} 7 {a b}"]
        assert (await final_state(http, run_id))[0] == "succeeded"


async def test_starting_a_command_sweep_needs_the_jobs_scope(tmp_path: Path) -> None:
    async with daemon_and_client(tmp_path) as (_, http):
        created = await create(http, command_sweep(tmp_path, variations={"seed": [1]}, command=["true", "{seed}"]))
        exp_id = created.json()["data"]["id"]
        key = await http.post("/api/v1/api-keys", json={"api_key": {"name": "writer", "scopes": ["write"]}})
        assert key.status_code == 201, key.text
        auth = {"Authorization": f"Bearer {key.json()['data']['key']}"}
        refused = await http.post(f"/api/v1/experiments/{exp_id}/start", headers=auth)
        assert refused.status_code == 403 and "jobs scope" in refused.text
        assert (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["runs"] == []


async def test_pivotctl_runs_a_command_sweep_on_a_host_from_the_hosts_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "train.py").write_text(SCRIPT)
    config_file = tmp_path / "sweep.json"
    config_file.write_text(
        json.dumps(command_sweep(tmp_path, variations={"optimizer.lr": [0.1, 0.01], "seed": [1, 2]}))
    )
    monkeypatch.delenv("CONFIGURATION_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    async with daemon_and_client(tmp_path, training_slots=2) as (daemon, http):
        (tmp_path / "config" / "pivot").mkdir(parents=True)
        (tmp_path / "config" / "pivot" / "hosts.toml").write_text(
            f'[hosts.lab]\nurl = "{daemon.url}"\ntoken = "{TEST_TOKEN}"\n'
        )

        async def pivotctl(*argv: str) -> tuple[int, str]:
            """Exit code and stdout (stderr as well when it failed)."""
            code = await asyncio.to_thread(ctl.main, ["--host", "lab", *argv])
            said = capsys.readouterr()
            return code, said.out.strip() if code == ctl.EXIT_OK else said.err

        code, exp_id = await pivotctl("exp", "create", "lr", str(config_file))
        assert code == ctl.EXIT_OK and exp_id.startswith("exp_")
        code, said = await pivotctl("exp", "start", exp_id)
        assert code == ctl.EXIT_OK and said.endswith("(4 run(s))")
        code, said = await pivotctl("exp", "wait", exp_id, "--timeout", "120")
        assert (code, said) == (ctl.EXIT_OK, f"{exp_id} completed: 4 completed")
        groups = ["optimizer.lr=0.1", "optimizer.lr=0.01"]
        code, said = await pivotctl("exp", "test", exp_id, "--groups", *groups, "--metric", "val/accuracy")
        direct = stats.ttest_ind(
            [accuracy(0.1, 1), accuracy(0.1, 2)], [accuracy(0.01, 1), accuracy(0.01, 2)], equal_var=False
        )
        assert code == ctl.EXIT_OK and said.startswith("optimizer.lr=0.1 (mean") and f"p = {direct.pvalue:.4g}" in said
        code, _ = await pivotctl("exp", "export", exp_id, "--format", "csv", "-o", str(tmp_path / "runs.csv"))
        assert code == ctl.EXIT_OK and len((tmp_path / "runs.csv").read_text().splitlines()) >= 5
        assert (await pivotctl("--json", "queue"))[0] == ctl.EXIT_OK  # --host before any command
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))
        code, said = await pivotctl("queue")
        assert code == ctl.EXIT_USAGE and "no host 'lab'" in said
