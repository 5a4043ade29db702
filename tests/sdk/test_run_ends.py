"""A script's run ends as the script did, against a real daemon: finished, raised, Ctrl-C, killed with SIGKILL; and
the SDK says early, on stderr, when its data is not arriving."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

import shared.sdk as sdk
from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.training.helpers import MLP, hyperparams

# Its tests that take the `daemon` fixture read and write only their own run ids: they share the module's one.
pytestmark = pytest.mark.shared_daemon

ROOT = Path(__file__).resolve().parents[2]


async def script(source: str, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `source` as a training script (`python -c`); its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", source, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_of(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await http.get(f"/api/v1/runs/{run_id}", params={"steps": "none"})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_script_that_finishes_succeeds(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    code, out, err = await script(
        "import sys\n"
        "from shared.sdk import init, log, finish\n"
        "init('finishes', url=sys.argv[1])\n"
        "for step in range(3):\n"
        "    log(step, loss=1.0 / (step + 1))\n"
        "print(finish())\n",
        daemon.url,
    )
    assert (code, out.strip(), err) == (0, "True", "")  # nothing to warn about
    run = await run_of(http, "finishes")
    assert (run["status"], run["error"], run["latest"]) == ("succeeded", None, {"loss": pytest.approx(1 / 3)})


async def test_a_script_that_raises_fails_with_the_exceptions_line(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    """A Monitor the script never closes: at exit its data is delivered, then the run fails with the exception."""
    code, _, err = await script(
        "import sys\n"
        "from torch import nn\n"
        "from shared.sdk import Monitor\n"
        "model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())\n"
        "mon = Monitor(model, 'raises', url=sys.argv[1], every=1)\n"
        "import torch\n"
        "model(torch.ones(2, 4)).sum().backward()\n"
        "mon.step(0, loss=2.5)\n"
        "raise ValueError('loss is nan at step 0')\n",
        daemon.url,
    )
    assert code == 1 and "ValueError: loss is nan at step 0" in err  # the traceback is still printed
    run = await run_of(http, "raises")
    assert (run["status"], run["error"]) == ("failed", "ValueError: loss is nan at step 0")
    assert (run["step_count"], run["latest"]) == (1, {"loss": 2.5})  # its data arrived first


async def test_ctrl_c_cancels_the_run(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    code, _, _ = await script(
        "import os, signal, sys, time\n"
        "from shared.sdk import init, log\n"
        "init('interrupted', url=sys.argv[1])\n"
        "log(0, loss=1.0)\n"
        "os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in the terminal sends\n"
        "time.sleep(30)\n",
        daemon.url,
    )
    assert code != 0
    run = await run_of(http, "interrupted")
    assert (run["status"], run["error"]) == ("cancelled", "KeyboardInterrupt")


async def test_a_script_killed_with_sigkill_is_lost(tmp_path: Path) -> None:
    async with (
        running_daemon(tmp_path / "state", alert_check_interval_s=0.05, run_lost_after_s=1) as daemon,
        connect(daemon.ws_url) as ws,
        daemon_client(daemon.url) as http,
    ):
        await ws.send(json.dumps({"action": "subscribe", "topics": ["runs", "run:killed"]}))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys, time\n"
            "from shared.sdk import init, log\n"
            "run = init('killed', url=sys.argv[1])\n"
            "for step in range(100000):\n"
            "    log(step, loss=1.0)\n"
            "    time.sleep(0.05)\n",
            daemon.url,
            cwd=ROOT,
        )
        states = []
        async with asyncio.timeout(30):
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "scalars" and proc.returncode is None:
                    proc.kill()  # SIGKILL: no atexit, no finish, not a word
                    await proc.wait()
                elif message["type"] == "run_state":
                    states.append((message["state"], message["error"]))
                    break
        assert states == [("lost", "no data for 1 s")]
        assert (await run_of(http, "killed"))["status"] == "lost"


async def test_finish_and_with_blocks_say_how_the_run_ended(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    def block() -> None:  # in a thread: leaving the block waits for the in-process daemon to answer
        with sdk.Run("in-a-block", url=daemon.url) as run:
            run.log(0, loss=1.0)
            raise RuntimeError("diverged")

    with pytest.raises(RuntimeError):
        await asyncio.to_thread(block)
    assert (await run_of(http, "in-a-block"))["error"] == "RuntimeError: diverged"
    diverged = sdk.Run("said-failed", url=daemon.url)
    assert await asyncio.to_thread(diverged.finish, error="loss is nan")
    assert ((await run_of(http, "said-failed"))["status"], (await run_of(http, "said-failed"))["error"]) == (
        "failed", "loss is nan",
    )  # fmt: skip
    stopped = sdk.Run("said-cancelled", url=daemon.url)
    assert await asyncio.to_thread(stopped.finish, status="cancelled")
    assert (await run_of(http, "said-cancelled"))["status"] == "cancelled"
    contradiction = sdk.Run("contradiction", url=daemon.url)
    with pytest.raises(ValueError, match="no error"):
        contradiction.finish(status="succeeded", error="but it failed")
    assert await asyncio.to_thread(contradiction.finish)  # the refused call changed nothing


async def test_a_managed_run_is_left_to_its_trainer_without_a_warning(
    daemon: RunningDaemon, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """pivotd's own trainer reports through the SDK: its finish is refused (409) and that is nothing to report."""
    created = await http.post(
        "/api/v1/training/sessions", json={"config": {"architecture": MLP, "hyperparams": hyperparams(epochs=1)}}
    )
    session_id = created.json()["session_id"]
    run = sdk.Run(session_id, url=daemon.url)
    run.log(0, loss=1.0)
    with caplog.at_level(logging.WARNING, logger="pivot.sdk"):
        assert await asyncio.to_thread(run.finish)
    assert caplog.records == []
    assert (await run_of(http, session_id))["status"] == "created"


async def test_a_wrong_token_is_said_at_once_and_finish_says_false(tmp_path: Path) -> None:
    """On stderr with no logging configured, before the script goes on; the summary at finish says how many."""
    async with running_daemon(tmp_path / "state", trust_loopback=False) as daemon:
        code, out, err = await script(
            "import sys\n"
            "from shared.sdk import Run\n"
            "run = Run('denied', url=sys.argv[1], token='wrong-token')\n"
            "run.log(0, loss=1.0)\n"
            "run.log(1, loss=0.5)\n"
            "run.flush(10)\n"
            "print('training goes on', file=sys.stderr, flush=True)\n"
            "print(run.finish(), run.stats.rejected)\n",
            daemon.url,
        )
    assert (code, out.split()) == (0, ["False", "2"])
    lines = err.splitlines()
    warning = f"pivot sdk: cannot deliver run denied to {daemon.url}: 401 Unauthorized: "
    assert [line.startswith(warning) and line.endswith("(entries refused)") for line in lines] == [True, False, False]
    assert lines[1] == "training goes on"
    assert lines[2].startswith(
        f"pivot sdk: run denied at {daemon.url}: 2 entries refused, its end (succeeded) not recorded: 401 Unauthorized"
    )
    assert "; last error: 401 Unauthorized: " in lines[2]


async def test_a_wrong_url_is_said_while_the_script_trains(free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}"
    code, out, err = await script(
        "import sys\n"
        "from shared.sdk import Run\n"
        "run = Run('nowhere', url=sys.argv[1])\n"
        "run.log(0, loss=1.0)\n"
        "run.flush(0.8)  # two attempts (the second after the 0.5 s backoff), each refused\n"
        "print('training goes on', file=sys.stderr, flush=True)\n"
        "print(run.finish(timeout=0.5), run.stats.dropped)\n",
        url,
    )
    assert (code, out.split()) == (0, ["False", "1"])
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert lines[0].startswith(f"pivot sdk: cannot deliver run nowhere to {url}: ConnectError: ")
    assert lines[0].endswith("(will retry)")
    assert lines[1] == "training goes on"
    assert lines[2].startswith(f"pivot sdk: run nowhere at {url}: 1 entry dropped, its end (succeeded) not recorded")
    assert "last error: ConnectError: " in lines[2]
