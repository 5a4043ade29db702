"""Jobs under torchrun: a 2-process DDP job on CPU (gloo) reporting from rank 0, per-rank runs with the job's
run token, and a 2-node job across two daemons on loopback submitted by `pivotctl submit --nodes`.

Real torchrun, real processes and real daemons; each test pays for torch's import in every rank, so each trains
examples/ddp_train.py for a few steps only.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

import pytest

from pivotd.jobs.launch import job_argv
from shared import ctl
from tests.daemon import TEST_TOKEN
from tests.test_jobs import ROOT, daemon_and_client, fifo, logs_of, read_fifo, run_of, submit
from tests.training.helpers import final_state

SCRIPT = str(Path(ROOT) / "examples" / "ddp_train.py")
ENV = {"PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow


async def test_a_two_process_job_reports_from_rank_zero_into_its_run(tmp_path: Path) -> None:
    async with daemon_and_client(tmp_path, training_slots=2) as (_, http):
        # A `.py` first item is torchrun's script; `--ranks all` posts as <run>-rank0 and <run>-rank1.
        zero = await submit(http, [SCRIPT, "--steps", "3", "--every", "1"], tmp_path, nproc_per_node=2, env=ENV)
        each = await submit(
            http, [sys.executable, SCRIPT, "--steps", "2", "--ranks", "all"], tmp_path, nproc_per_node=2, env=ENV
        )
        assert (await final_state(http, zero["run_id"]))[0] == "succeeded"
        assert (await final_state(http, each["run_id"]))[0] == "succeeded"
        run = await run_of(http, zero["run_id"])
        assert run["job"]["nproc_per_node"] == 2 and "train/loss" in run["latest"]
        series = (await http.get(f"/api/v1/runs/{zero['run_id']}/scalars")).json()["series"]
        assert series["train/loss"]["steps"] == [0, 1, 2]
        assert [step["step"] for step in (await http.get(f"/api/v1/runs/{zero['run_id']}")).json()["steps"]] == [
            0,
            1,
            2,
        ]
        assert any(line.startswith("rank 0 of 2: final loss") for line in await logs_of(http, zero["run_id"]))
        for rank in (0, 1):  # the run token of `each` let both ranks write to their own runs
            ranked = await run_of(http, f"{each['run_id']}-rank{rank}")
            assert "train/loss" in ranked["latest"]


async def test_a_run_token_writes_to_its_ranks_and_nowhere_else(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    script = f"echo $PIVOT_TOKEN > {said}; sleep 300"
    async with daemon_and_client(tmp_path) as (_, http):
        job = await submit(http, ["bash", "-c", script], tmp_path)
        token = (await read_fifo(said)).strip()
        auth = {"Authorization": f"Bearer {token}"}
        point = {"points": [{"step": 0, "values": {"train/loss": 1.0}}]}
        run_id = job["run_id"]
        for target, status in [
            (f"{run_id}-rank3", 202),
            (run_id, 202),
            (f"{run_id}-rank", 403),
            (f"{run_id}-rankx", 403),
            (f"{run_id}x-rank1", 403),
            ("r_other-rank1", 403),
        ]:
            response = await http.post(f"/api/v1/runs/{target}/scalars", json=point, headers=auth)
            assert response.status_code == status, (target, response.text)
        await http.post(f"/api/v1/jobs/{run_id}/cancel")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_two_nodes_on_two_daemons_rendezvous_and_share_a_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        daemon_and_client(tmp_path / "a") as (first, http_a),
        daemon_and_client(tmp_path / "b") as (second, http_b),
    ):
        argv = ["--token", TEST_TOKEN, "--json", "submit", "--nodes", "2", "--host", first.url, "--host", second.url,
                "--rdzv-port", str(_free_port()), "--cwd", str(tmp_path), *[f"--env={k}={v}" for k, v in ENV.items()],
                "--", SCRIPT, "--steps", "3"]  # fmt: skip
        code = await asyncio.to_thread(ctl.main, argv)
        assert code == ctl.EXIT_OK
        submitted = json.loads(capsys.readouterr().out)
        runs = submitted["runs"]
        assert len(runs) == 2 and submitted["endpoint"].startswith("127.0.0.1:")
        assert (await final_state(http_a, runs[0]))[0] == "succeeded"
        assert (await final_state(http_b, runs[1]))[0] == "succeeded"
        for http, run_id, rank in ((http_a, runs[0], 0), (http_b, runs[1], 1)):
            run = await run_of(http, run_id)
            assert run["group"] == submitted["group"]
            assert run["job"]["rendezvous"] == {
                "nnodes": 2,
                "node_rank": rank,
                "endpoint": submitted["endpoint"],
                "id": submitted["group"],
            }
        # One world of two ranks: exactly one of the two nodes ran rank 0 and reported.
        finals = [
            line for http, run_id in ((http_a, runs[0]), (http_b, runs[1])) for line in await logs_of(http, run_id)
        ]
        assert [line for line in finals if "final loss" in line][0].startswith("rank 0 of 2:")


def test_the_argv_of_a_job_under_torchrun(tmp_path: Path) -> None:
    fake = tmp_path / "torchrun"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    path = str(tmp_path)
    assert job_argv({"command": ["python", "t.py"]}, path) == ["python", "t.py"]
    standalone = {"command": ["python", "t.py"], "nproc_per_node": 2}
    assert job_argv(standalone, path) == [
        str(fake),
        "--standalone",
        "--nproc-per-node=2",
        "--no-python",
        "python",
        "t.py",
    ]
    script = {"command": ["t.py", "--lr", "1"], "nproc_per_node": 1, "rendezvous": RDZV}
    assert job_argv(script, path) == [
        str(fake), "--nnodes=2", "--node-rank=1", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu-1:29400",
        "--rdzv-id=pivot-ab", "--nproc-per-node=1", "t.py", "--lr", "1",
    ]  # fmt: skip
    # No torchrun on the job's PATH: the daemon's Python runs PyTorch's launcher.
    assert job_argv(standalone, str(tmp_path / "empty"))[:3] == [sys.executable, "-m", "torch.distributed.run"]


RDZV = {"nnodes": 2, "node_rank": 1, "endpoint": "gpu-1:29400", "id": "pivot-ab"}


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--nodes", "2", "--host", "http://127.0.0.1:9", "--", "t.py"],  # one host for two nodes
        ["submit", "--host", "http://127.0.0.1:9", "--host", "http://127.0.0.1:9", "--", "t.py"],  # no --nodes
        ["submit", "--nodes", "1", "--host", "http://127.0.0.1:9", "--", "t.py"],
        ["--host", "http://127.0.0.1:9", "--url", "http://127.0.0.1:9", "queue"],
    ],
)
def test_pivotctl_refuses_a_multi_node_submission_it_cannot_make(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl.main(argv) == ctl.EXIT_USAGE
    assert capsys.readouterr().err.startswith("pivotctl: ")
