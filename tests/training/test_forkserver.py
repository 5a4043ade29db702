"""Training workers are forked from the fork server (pivotd/training/forkserver.py): each one is the process
`python -m pivotd.training.worker` would be (its own session, the run's environment), and a server that dies
takes only its runs with it; the next run starts a new one."""

from __future__ import annotations

import asyncio
import os

import httpx
import psutil
import pytest

from pivotd.jobs import forkserver
from tests.daemon import RunningDaemon
from tests.training.helpers import MLP, final_state, hyperparams
from tests.training.test_robustness import LONG, first_scalars, wait_gone

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fork_server")]  # runs forked from a ready server


async def test_a_forked_worker_has_its_own_session_and_the_runs_environment_and_a_dead_server_fails_its_runs(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    # A run asked for while this process's server is still importing torch starts in a fresh interpreter (last
    # part): one short run makes sure there is a server, then the test waits until it is past its imports.
    short = {"architecture": MLP, "hyperparams": hyperparams(epochs=1)}
    warm_up = (await http.post("/api/train", json=short)).json()["run_id"]
    assert (await final_state(http, warm_up))[0] == "succeeded"
    assert forkserver._server is not None and await asyncio.to_thread(forkserver._server.ready.wait, 60)

    run_id = (await http.post("/api/train", json={"architecture": MLP, "hyperparams": LONG})).json()["run_id"]
    await first_scalars(daemon.ws_url, run_id)
    pid = daemon.services.supervisor.worker_pid(run_id)
    assert pid is not None
    worker = psutil.Process(pid)
    server = worker.parent()
    assert server is not None and "pivotd.training.forkserver" in server.cmdline()
    assert server.pid != os.getpid()  # not the daemon's child: the daemon never imports torch
    assert os.getsid(pid) == pid  # a session of its own, as start_new_session gave a fresh interpreter
    # A forked child's /proc/PID/environ is the block its server was started with, not the os.environ the child
    # set before the worker's main ran (that never reaches /proc). That block is the same whether a run or, in an
    # earlier test of this process, a checkpoint check started the server: it has what every run's has.
    assert worker.environ() == server.environ()
    assert worker.environ().get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"
    assert "CUDA_VISIBLE_DEVICES" not in server.environ()  # each run's own, never the server's

    server.kill()  # its workers are orphans now: the daemon stops them and fails their runs
    state, _ = await final_state(http, run_id)
    assert state.startswith("failed: worker killed by SIGKILL"), state
    assert wait_gone([pid], 30) == []  # killed by the daemon: a SIGKILL takes effect when the process next runs
    # The next run starts a new server, and is not kept waiting while that imports torch: the answer comes with
    # the run started in a fresh interpreter, the daemon's own child, which trains to the end.
    run_id = (await http.post("/api/train", json=short)).json()["run_id"]
    pid = daemon.services.supervisor.worker_pid(run_id)
    assert pid is not None and psutil.Process(pid).ppid() == os.getpid()
    assert (await final_state(http, run_id))[0] == "succeeded"
    assert daemon.services.supervisor.worker_pid(run_id) is None
    assert forkserver._server is not None and forkserver._server.alive  # the new one, for the runs after it
