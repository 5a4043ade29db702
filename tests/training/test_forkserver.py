"""Training workers are forked from the fork server (pivotd/training/forkserver.py): each one is the process
`python -m pivotd.training.worker` would be (its own session, the run's environment), and a server that dies
takes only its runs with it; the next run starts a new one."""

from __future__ import annotations

import os

import httpx
import psutil
import pytest

from tests.daemon import RunningDaemon
from tests.training.helpers import MLP, final_state, hyperparams
from tests.training.test_robustness import LONG, first_scalars

pytestmark = pytest.mark.slow


async def test_a_forked_worker_has_its_own_session_and_the_runs_environment_and_a_dead_server_fails_its_runs(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": LONG})).json()["run_id"]
    await first_scalars(daemon.ws_url, run_id)
    pid = daemon.services.supervisor.worker_pid(run_id)
    assert pid is not None
    worker = psutil.Process(pid)
    server = worker.parent()
    assert server is not None and "pivotd.training.forkserver" in server.cmdline()
    assert server.pid != os.getpid()  # not the daemon's child: the daemon never imports torch
    assert os.getsid(pid) == pid  # a session of its own, as start_new_session gave a fresh interpreter
    assert worker.environ().get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"  # the run's environment, set by the daemon

    server.kill()  # its workers are orphans now: the daemon stops them and fails their runs
    state, _ = await final_state(http, run_id)
    assert state.startswith("failed: worker killed by SIGKILL"), state
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # The next run starts a new server and trains to the end.
    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": hyperparams(epochs=1)})).json()
    assert (await final_state(http, run_id["run_id"]))[0] == "succeeded"
    assert daemon.services.supervisor.worker_pid(run_id["run_id"]) is None
