"""The scalar-only path: `init`/`log`/`finish`, importable and usable without torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import shared.sdk as sdk
from shared.client import AsyncPivotClient
from tests.daemon import TEST_TOKEN, RunningDaemon, running_daemon

# Its tests that take the `daemon` fixture read and write only their own run ids: they share the module's one.
pytestmark = pytest.mark.shared_daemon

ROOT = Path(__file__).resolve().parents[2]


async def test_init_log_finish(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/experiments", json={"experiment": {"name": "sdk"}})
    exp_id = created.json()["data"]["id"]
    run = sdk.init("scalars-only", url=daemon.url, experiment_id=exp_id, tags=["baseline"])
    for step in range(5):
        sdk.log(step, {"train/loss": 1.0 / (step + 1)}, lr=0.1, epoch=step // 2)
    assert await asyncio.to_thread(sdk.finish)
    assert run.stats.sent_points == 5
    series = (await http.get("/api/v1/runs/scalars-only/scalars")).json()["series"]
    assert series["train/loss"]["steps"] == [0, 1, 2, 3, 4]
    assert series["train/loss"]["values"][-1] == pytest.approx(0.2)
    assert series["lr"]["values"] == [0.1] * 5
    summary = (await http.get("/api/v1/runs/scalars-only", params={"steps": "none"})).json()
    assert (summary["experiment_id"], summary["tags"]) == (exp_id, ["baseline"])


def test_log_needs_init_and_valid_names(free_port: int) -> None:
    with pytest.raises(RuntimeError, match="init"):
        sdk.log(0, loss=1.0)
    with pytest.raises(ValueError, match="run_id"):
        sdk.Run("not a run id")
    with sdk.Run("names", url=f"http://127.0.0.1:{free_port}") as run:
        with pytest.raises(ValueError, match="scalar name"):
            run.log(0, {"bad name": 1.0})
        run.finish(timeout=0)


async def test_works_without_torch_and_flushes_at_exit(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """A script with torch unavailable logs scalars and exits without finish(): atexit delivers them and ends the
    run."""
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any import of torch now raises ImportError\n"
        "from shared.sdk import init, log\n"
        "init('no-torch', url=sys.argv[1])\n"
        "for step in range(3):\n"
        "    log(step, loss=0.5 + step)\n"
        "try:\n"
        "    from shared.sdk import Monitor\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit('Monitor imported without torch')\n"
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, daemon.url, cwd=ROOT)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    series = (await http.get("/api/v1/runs/no-torch/scalars")).json()["series"]
    assert series["loss"]["steps"] == [0, 1, 2]
    assert (await http.get("/api/v1/runs/no-torch")).json()["status"] == "succeeded"  # a normal exit ends it so


def test_import_pulls_in_neither_torch_nor_the_daemon() -> None:
    code = "import sys, shared.sdk; from shared.sdk import Run, init, log, finish; print(' '.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert not loaded & {"torch", "numpy", "pivotd", "pivot_tui", "fastapi", "uvicorn", "aiosqlite", "textual"}


async def test_url_and_token_from_the_local_daemon_files(tmp_path: Path) -> None:
    """No arguments, no PIVOT_*: the daemon's daemon.json and token file in the state dir are enough, even
    when it trusts no peer without a token."""
    state = tmp_path / "xdg-state" / "pivot"  # where the isolated environment's state_dir() points
    state.mkdir(parents=True)
    (state / "token").write_text(TEST_TOKEN)  # as `pivotd` writes it (running_daemon does not)
    async with running_daemon(state, trust_loopback=False) as daemon:
        run = sdk.Run("local-files")
        assert run.url == daemon.url
        run.log(0, loss=1.0)
        assert await asyncio.to_thread(run.finish)  # delivered: before, a 401 passed for success here
        assert (run.stats.rejected, run.stats.sent_points) == (0, 1)
        denied = sdk.Run("no-token", token="wrong-token")
        denied.log(0, loss=1.0)
        assert not await asyncio.to_thread(denied.finish)  # refused, not retried: nothing arrived
        assert (denied.stats.rejected, denied.stats.sent_points) == (1, 0)


async def test_the_local_token_goes_only_to_the_local_daemon(tmp_path: Path) -> None:
    """A second daemon (its own data dir, trusting loopback) gets no token rather than the local daemon's,
    which it would refuse with a 401 even from loopback."""
    state = tmp_path / "xdg-state" / "pivot"
    state.mkdir(parents=True)
    (state / "token").write_text(TEST_TOKEN)  # as `pivotd` writes it
    async with running_daemon(state, trust_loopback=False), running_daemon(tmp_path / "second") as second:
        run = sdk.Run("on-the-second", url=second.url)
        run.log(0, loss=1.0)
        assert await asyncio.to_thread(run.finish)
        assert (run.stats.rejected, run.stats.sent_points) == (0, 1)
        async with AsyncPivotClient(second.url.replace("127.0.0.1", "localhost")) as client:
            assert client.token is None and "on-the-second" in await client.list_runs()
        async with AsyncPivotClient() as client:  # the local daemon, from its own files
            assert client.token == TEST_TOKEN and await client.list_runs() == {}


async def test_url_and_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_daemon(tmp_path / "daemon", trust_loopback=False, token="env-token-0123456789") as daemon:
        monkeypatch.setenv("PIVOT_URL", daemon.url)
        monkeypatch.setenv("PIVOT_TOKEN", "env-token-0123456789")
        run = sdk.Run("from-env")
        run.log(0, loss=1.0)
        assert await asyncio.to_thread(run.finish)
        assert run.stats.sent_points == 1
