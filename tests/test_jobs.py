"""Jobs: people's own commands run by a real pivotd as real processes (only NVML is a stand-in, for the GPU test).

A job tells the test what it needs to know (its pids, its credential) through a FIFO the test reads: the read
returns when the job has written, so nothing here waits by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from pivotd.monitor.nvml import Nvml
from shared import ctl
from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.test_monitor import fake_pynvml
from tests.training.helpers import final_state

ROOT = str(Path(__file__).resolve().parent.parent)
FAST = {"cancel_grace_s": 0.3}  # the SIGKILL after SIGTERM: only a job that ignores SIGTERM waits it out


@asynccontextmanager
async def daemon_and_client(tmp_path: Path, nvml: Nvml | None = None, **settings: Any) -> AsyncIterator[
    tuple[RunningDaemon, httpx.AsyncClient]
]:  # fmt: skip
    async with (
        running_daemon(tmp_path / "state", nvml or Nvml(None), **{**FAST, **settings}) as daemon,
        daemon_client(daemon.url, timeout=30) as http,
    ):
        yield daemon, http


async def submit(http: httpx.AsyncClient, command: list[str], cwd: Path, **fields: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/jobs", json={"job": {"command": command, "cwd": str(cwd), **fields}})
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def read_fifo(path: Path) -> str:
    """What a job writes into the FIFO: returns once it has written and closed it."""
    return await asyncio.to_thread(path.read_text)


def fifo(tmp_path: Path, name: str = "said") -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


async def run_of(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/runs/{run_id}", params={"steps": "none"})
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def logs_of(http: httpx.AsyncClient, run_id: str) -> list[str]:
    return [line["message"] for line in (await http.get(f"/api/v1/runs/{run_id}/logs")).json()["data"]]


async def exited(pid: int, timeout: float = 10.0) -> bool:
    """Whether `pid` has ended (or ends within `timeout`): its pidfd turns readable when it does. A process SIGKILLed
    a moment ago may still be closing its files (the pipe's EOF comes from that) before it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, ended.set)
    try:
        async with asyncio.timeout(timeout):
            await ended.wait()
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


SDK_SCRIPT = """
from shared.sdk import finish, init, log
run = init()  # no run id: the job's
for step in range(3):
    log(step, {"train/loss": 1.0 / (step + 1)})
print("sent to", run.run_id)
finish()
"""


async def test_a_script_using_the_sdk_without_a_run_id_reports_into_its_job(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SDK_SCRIPT)
    async with daemon_and_client(tmp_path) as (_, http):
        job = await submit(http, [sys.executable, "train.py"], tmp_path, env={"PYTHONPATH": ROOT}, name="sdk")
        assert job["status"] in ("queued", "running") and job["gpus_requested"] == 0  # no GPU here: 0 by default
        state, _ = await final_state(http, job["run_id"])
        assert state == "succeeded"
        run = await run_of(http, job["run_id"])
        assert run["kind"] == "job" and run["status"] == "succeeded" and run["exit_code"] == 0
        assert run["latest"] == {"train/loss": pytest.approx(1 / 3)}
        assert run["job"]["command"] == [sys.executable, "train.py"] and run["job"]["env"] == ["PYTHONPATH"]
        assert run["job"]["attempts"] == 1 and run["job"]["started_at"] and run["job"]["finished_at"]
        assert f"sent to {job['run_id']}" in await logs_of(http, job["run_id"])


async def test_exit_codes_and_signals_become_states(tmp_path: Path) -> None:
    async with daemon_and_client(tmp_path) as (_, http):
        failing = await submit(http, ["bash", "-c", "echo working; echo 'ValueError: bad lr' >&2; exit 3"], tmp_path)
        killed = await submit(http, ["bash", "-c", "kill -KILL $$"], tmp_path)
        fine = await submit(http, ["true"], tmp_path)
        assert (await final_state(http, failing["run_id"]))[0] == "failed: exit code 3: ValueError: bad lr"
        assert (await final_state(http, killed["run_id"]))[0] == "failed: killed by SIGKILL"
        assert (await final_state(http, fine["run_id"]))[0] == "succeeded"
        assert (await run_of(http, failing["run_id"]))["exit_code"] == 3
        assert (await run_of(http, killed["run_id"]))["exit_code"] == -9
        assert await logs_of(http, failing["run_id"]) == ["working", "ValueError: bad lr"]
        missing = await submit(http, ["no-such-program-here"], tmp_path)
        state, _ = await final_state(http, missing["run_id"])
        assert state.startswith("failed: could not start the command: ") and "no-such-program-here" in state


async def test_cancel_leaves_no_process_of_the_job_alive(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    # It ignores SIGTERM (and so do its children, which inherit that): only the SIGKILL after the grace stops it.
    script = f"trap '' TERM; sleep 300 & sleep 300 & echo $$ $(jobs -p) > {said}; wait"
    async with daemon_and_client(tmp_path) as (_, http):
        job = await submit(http, ["bash", "-c", script], tmp_path)
        pids = [int(pid) for pid in (await read_fifo(said)).split()]
        assert len(pids) == 3 and not any(gone(pid) for pid in pids)
        cancelled = await http.post(f"/api/v1/jobs/{job['run_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["data"]["status"] == "cancelled"
        assert all([await exited(pid) for pid in pids])
        again = await http.post(f"/api/v1/jobs/{job['run_id']}/cancel")
        assert again.status_code == 409


async def test_the_queue_orders_by_priority_and_lists_positions(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    async with daemon_and_client(tmp_path, training_slots=1) as (_, http):
        blocker = await submit(http, ["bash", "-c", f"echo up > {said}; sleep 300"], tmp_path)
        await read_fifo(said)
        low = await submit(http, ["true"], tmp_path, name="low")
        high = await submit(http, ["true"], tmp_path, name="high", priority=5)
        assert (low["status"], low["position"]) == ("queued", 1)
        assert (high["status"], high["position"]) == ("queued", 1)  # ahead of the older, lower one
        queue = (await http.get("/api/v1/jobs")).json()
        assert [(e["run_id"], e["status"], e["position"]) for e in queue["data"]] == [
            (blocker["run_id"], "running", None),
            (high["run_id"], "queued", 1),
            (low["run_id"], "queued", 2),
        ]
        assert queue["meta"] == {"running": 1, "queued": 2, "slots": 1}
        await http.post(f"/api/v1/jobs/{blocker['run_id']}/cancel")
        assert (await final_state(http, low["run_id"]))[0] == "succeeded"
        high_run, low_run = await run_of(http, high["run_id"]), await run_of(http, low["run_id"])
        assert high_run["job"]["started_at"] <= low_run["job"]["started_at"]


async def test_jobs_get_whole_gpus_by_uuid_and_the_queue_backfills(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    nvml = Nvml(fake_pynvml(devices=2, pids=()))
    async with daemon_and_client(tmp_path, nvml, training_slots=3) as (_, http):
        holder = await submit(http, ["bash", "-c", f'echo "$CUDA_VISIBLE_DEVICES" > {said}; sleep 300'], tmp_path)
        assert holder["gpus_requested"] == 1  # the default where GPUs exist
        assert (await read_fifo(said)).strip() == "GPU-00000000-test"
        both = await submit(http, ["true"], tmp_path, gpus=2)  # waits: one of the two is held
        small = await submit(http, ["bash", "-c", 'echo "[$CUDA_VISIBLE_DEVICES]"'], tmp_path, gpus=1)
        # The two-GPU job cannot start, and the one-GPU job behind it does not wait for it.
        assert (await final_state(http, small["run_id"]))[0] == "succeeded"
        assert await logs_of(http, small["run_id"]) == ["[GPU-00000001-test]"]
        assert (await run_of(http, both["run_id"]))["status"] == "queued"
        await http.post(f"/api/v1/jobs/{holder['run_id']}/cancel")
        assert (await final_state(http, both["run_id"]))[0] == "succeeded"
        assert [gpu["uuid"] for gpu in (await run_of(http, both["run_id"]))["gpus"]] == [
            "GPU-00000000-test",
            "GPU-00000001-test",
        ]
        # Under torchrun, one GPU per process by default (none is held now).
        ranks = await submit(http, ["true"], tmp_path, nproc_per_node=2)
        assert ranks["gpus_requested"] == 2
        assert (await final_state(http, ranks["run_id"]))[0] == "succeeded"
        too_many = await http.post("/api/v1/jobs", json={"job": {"command": ["true"], "cwd": "/", "gpus": 3}})
        assert too_many.status_code == 422 and "job.gpus" in too_many.text


RDZV = {"nnodes": 2, "node_rank": 0, "endpoint": "10.0.0.1:29400", "id": "pivot-1"}
BAD_FIELDS = [
    ({"command": ["true"], "cwd": "relative/dir"}, "job.cwd"),
    ({"command": ["true"], "cwd": "/no/such/dir/here"}, "job.cwd"),
    ({"command": ["python", 3], "cwd": "/"}, "job.command[1]"),
    ({"command": ["echo", "a\x00b"], "cwd": "/"}, "job.command[1]"),
    ({"command": [], "cwd": "/"}, "job.command"),
    ({"command": ["x"] * 5000, "cwd": "/"}, "job.command"),
    ({"command": ["true"], "cwd": "/", "env": {"PIVOT_TOKEN": "mine"}}, "job.env"),
    ({"command": ["true"], "cwd": "/", "env": {"A": 1}}, "job.env.A"),
    ({"command": ["true"], "cwd": "/", "gpus": -1}, "job.gpus"),
    ({"command": ["true"], "cwd": "/", "gpus": 1}, "job.gpus"),  # none on this box
    ({"command": ["true"], "cwd": "/", "retries": 1000}, "job.retries"),
    ({"command": ["true"], "cwd": "/", "shell": True}, "job.shell"),
    ({"cwd": "/"}, "job.command"),
    ({"command": ["true"], "cwd": "/", "rendezvous": {**RDZV, "node_rank": 2}}, "job.rendezvous.node_rank"),
    ({"command": ["true"], "cwd": "/", "rendezvous": {**RDZV, "endpoint": "no port"}}, "job.rendezvous.endpoint"),
    ({"command": ["true"], "cwd": "/", "rendezvous": {**RDZV, "nnodes": 1}}, "job.rendezvous.nnodes"),
]


async def test_refusals_name_each_bad_field(tmp_path: Path) -> None:
    async with daemon_and_client(tmp_path) as (daemon, http):
        for job, field in BAD_FIELDS:
            response = await http.post("/api/v1/jobs", json={"job": job})
            assert response.status_code == 422, (job, response.text)
            assert field in [problem["field"] for problem in response.json()["error"]["details"]], response.text
        assert (await http.get("/api/v1/jobs")).json()["data"] == []  # nothing was queued
        assert await daemon.services.jobs.reader.count_jobs() == 0


async def test_only_the_owner_or_a_jobs_key_may_submit(tmp_path: Path) -> None:
    async with daemon_and_client(tmp_path, trust_loopback=False, token="owner-token") as (_, http):
        owner = {"Authorization": "Bearer owner-token"}
        keys = {}
        for name, scopes in (("admin", ["admin"]), ("jobs", ["jobs"])):
            created = await http.post(
                "/api/v1/api-keys", json={"api_key": {"name": name, "scopes": scopes}}, headers=owner
            )
            assert created.status_code == 201, created.text
            keys[name] = {"Authorization": f"Bearer {created.json()['data']['key']}"}
        body = {"job": {"command": ["true"], "cwd": str(tmp_path)}}
        refused = await http.post("/api/v1/jobs", json=body, headers=keys["admin"])
        assert refused.status_code == 403 and "'jobs' scope" in refused.text  # admin does not imply jobs
        accepted = await http.post("/api/v1/jobs", json=body, headers=keys["jobs"])
        assert accepted.status_code == 202, accepted.text
        assert (await http.get("/api/v1/jobs", headers=keys["jobs"])).status_code == 200  # jobs implies read
        assert (await http.post("/api/v1/webhooks", json={}, headers=keys["jobs"])).status_code == 403


async def test_a_daemon_with_jobs_disabled_refuses_them_even_to_the_owner(tmp_path: Path) -> None:
    async with daemon_and_client(tmp_path, jobs_enabled=False) as (_, http):
        response = await http.post("/api/v1/jobs", json={"job": {"command": ["true"], "cwd": str(tmp_path)}})
        assert response.status_code == 403 and "jobs_enabled" in response.text


async def test_a_jobs_token_writes_to_its_own_run_only(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    async with daemon_and_client(tmp_path, trust_loopback=False, token="owner-token") as (_, http):
        owner = {"Authorization": "Bearer owner-token"}
        script = f'echo "$PIVOT_RUN_ID $PIVOT_TOKEN $PIVOT_URL" > {said}; sleep 300'
        job = (
            await http.post(
                "/api/v1/jobs", json={"job": {"command": ["bash", "-c", script], "cwd": str(tmp_path)}}, headers=owner
            )
        ).json()["data"]
        run_id, token, url = (await read_fifo(said)).split()
        assert run_id == job["run_id"] and url == str(http.base_url).rstrip("/") and token != "owner-token"
        as_job = {"Authorization": f"Bearer {token}"}
        point = {"points": [{"step": 1, "values": {"loss": 0.5}}]}
        assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=point, headers=as_job)).status_code == 202
        other = await http.post("/api/v1/runs/someone-else/scalars", json=point, headers=as_job)
        assert other.status_code == 403
        assert (await http.get("/api/v1/runs", headers=as_job)).status_code == 403
        assert (
            await http.post("/api/v1/jobs", json={"job": {"command": ["true"], "cwd": "/"}}, headers=as_job)
        ).status_code == 403
        layerwise = {"metadata": {"run_id": "someone-else", "step": 1, "timestamp": 1.0, "batch_size": 1}}
        assert (await http.post("/api/v1/metrics/layerwise", json=layerwise, headers=as_job)).status_code == 403
        await http.post(f"/api/v1/jobs/{run_id}/cancel", headers=owner)
        # The token ended with its job.
        assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=point, headers=as_job)).status_code == 401


async def test_a_job_with_retries_left_is_queued_again_when_pivotd_stops(tmp_path: Path) -> None:
    said = fifo(tmp_path)
    async with daemon_and_client(tmp_path) as (_, http):
        script = f"echo $$ > {said}; sleep 300"
        retried = await submit(http, ["bash", "-c", script], tmp_path, retries=1)
        pid = int(await read_fifo(said))
    assert gone(pid)  # it ended with the daemon
    async with daemon_and_client(tmp_path) as (_, http):
        pid = int(await read_fifo(said))  # started again
        run = await run_of(http, retried["run_id"])
        assert run["job"]["attempts"] == 2 and run["status"] == "running"
        await http.post(f"/api/v1/jobs/{retried['run_id']}/cancel")
        assert gone(pid)


async def test_pivotctl_submits_follows_and_lists_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pivotctl's commands in this process (its run as a program of its own: tests/training/test_client_and_ctl.py)."""
    async with daemon_and_client(tmp_path) as (daemon, _):

        async def pivotctl(*argv: str) -> tuple[int, str, str]:
            code = await asyncio.to_thread(ctl.main, ["--url", daemon.url, *argv])
            said = capsys.readouterr()
            return code, said.out, said.err

        code, out, err = await pivotctl(
            "submit", "--cwd", str(tmp_path), "--env", "WHO=job", "--follow", "--", "bash", "-c", "echo hi $WHO"
        )
        assert code == 0, err
        assert "hi job" in out and "succeeded" in out
        code, out, err = await pivotctl("submit", "--json", "--", "bash", "-c", "exit 4")
        run_id = json.loads(out)["run_id"]
        code, out, _ = await pivotctl("queue", "--json")
        assert code == 0 and json.loads(out)["meta"]["slots"] == 1
        code, out, _ = await pivotctl("logs", run_id, "-f")
        assert code == 1  # the job failed
        code, _, err = await pivotctl("cancel", "r_missing")
        assert code == 3 and daemon.url in err  # errors name the URL tried


async def test_a_run_that_just_ended_is_not_evicted_to_make_room_for_the_queue(tmp_path: Path) -> None:
    """With more queued and running runs than `max_runs` (which retention never evicts), the count check's only
    candidate was the run whose end was just written: cancelling a queued job answered 404 and lost its record."""
    async with daemon_and_client(tmp_path, max_runs=2, training_slots=1) as (_, http):
        said = fifo(tmp_path)
        running = await submit(http, ["bash", "-c", f"echo up > {said}; exec sleep 60"], tmp_path)
        await read_fifo(said)
        queued = [await submit(http, ["true"], tmp_path) for _ in range(2)]
        cancelled = await http.post(f"/api/v1/jobs/{queued[1]['run_id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert (await run_of(http, queued[1]["run_id"]))["status"] == "cancelled"
        assert (await http.post(f"/api/v1/jobs/{running['run_id']}/cancel")).status_code == 200
