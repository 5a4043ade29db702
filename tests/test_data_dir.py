"""One daemon per data directory, state recovered only by the daemon that holds it, and private files."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pivotd.cli import EXIT_REFUSED
from tests.daemon import PLAIN_HTTP, daemon_client, running_daemon, start_daemon_process
from tests.test_jobs import fifo, read_fifo
from tests.training.helpers import MLP, hyperparams

pytestmark = pytest.mark.slow

SESSION = {"config": {"architecture": MLP, "hyperparams": hyperparams()}}


def daemon_command(data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pivotd.cli", "--port", "0", "--data-dir", str(data_dir), *extra]


def state_files(data_dir: Path) -> dict[str, bytes]:
    """What a second daemon must not touch: the holder's announcement, marker, lock and token."""
    names = ("daemon.json", "pivotd.running", "pivotd.lock", "token")
    return {name: (data_dir / name).read_bytes() for name in names}


async def test_a_second_daemon_on_the_same_directory_exits_and_touches_nothing(tmp_path: Path) -> None:
    """The first daemon's running run is a job (a shell waiting on `sleep`): a second daemon that recovered it would
    mark it interrupted as it would a training run (`RecoverJobs`), and it costs no torch import or training."""
    data_dir = tmp_path / "state"
    first = start_daemon_process(data_dir)
    try:
        with httpx.Client(verify=PLAIN_HTTP, base_url=first.url, timeout=30) as http:
            said = fifo(tmp_path)
            job = {"command": ["bash", "-c", f"echo up > {said}; exec sleep 300"], "cwd": str(tmp_path)}
            started = http.post("/api/v1/jobs", json={"job": job})
            assert started.status_code == 202, started.text
            run_id = started.json()["data"]["run_id"]
            assert (await read_fifo(said)).strip() == "up"
            assert http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
            before = state_files(data_dir)

            second = await asyncio.create_subprocess_exec(
                *daemon_command(data_dir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, stderr = await asyncio.wait_for(second.communicate(), 30)

            assert second.returncode == EXIT_REFUSED
            message = stderr.decode()
            assert f"another pivotd (pid {first.proc.pid}, {first.url})" in message and str(data_dir) in message
            assert state_files(data_dir) == before
            # The first daemon's run was not recovered as interrupted: it is still running, and cancellable.
            assert http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
            assert http.post(f"/api/v1/jobs/{run_id}/cancel").status_code == 200
        first.signal(signal.SIGTERM)
        assert first.wait() == 0
        assert not (data_dir / "daemon.json").exists()  # withdrawn by the daemon that wrote it
    finally:
        first.stop()


async def test_two_daemons_racing_for_one_directory_one_wins(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    racers = [
        await asyncio.create_subprocess_exec(
            *daemon_command(data_dir), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    waits = {asyncio.ensure_future(racer.wait()): racer for racer in racers}
    try:
        done, _ = await asyncio.wait(waits, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1, "exactly one daemon gives up"
        loser = waits[done.pop()]
        winner = next(racer for racer in racers if racer is not loser)
        assert loser.returncode == EXIT_REFUSED
        assert loser.stderr is not None
        assert f"another pivotd (pid {winner.pid}" in (await loser.stderr.read()).decode()
        assert winner.returncode is None
        # The winner serves, announced as itself.
        assert winner.stderr is not None
        while b"pivotd listening on" not in (line := await asyncio.wait_for(winner.stderr.readline(), 30)):
            assert line, "the winner exited"
        announced = json.loads((data_dir / "daemon.json").read_text())
        assert announced["pid"] == winner.pid
        winner.send_signal(signal.SIGTERM)
        await winner.stderr.read()
        assert await asyncio.wait_for(winner.wait(), 30) == 0
    finally:
        for racer in racers:
            if racer.returncode is None:
                racer.kill()
                await racer.wait()


def mark_running(db_path: Path, run_id: str) -> None:
    """What a daemon killed mid-training leaves behind: a managed run still `running`."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE runs SET status = 'running', started_at = 1 WHERE run_id = ?", (run_id,))


def run_state(db_path: Path, run_id: str) -> tuple[str, str | None]:
    with sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True) as conn:
        status, error = conn.execute("SELECT status, error FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return status, error


async def test_interrupted_runs_are_recovered_only_once_the_port_is_bound(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    async with running_daemon(data_dir) as daemon, daemon_client(daemon.url) as http:
        created = await http.post("/api/v1/training/sessions", json=SESSION)
        run_id = created.json()["session_id"]
    db_path = data_dir / "pivot.db"
    mark_running(db_path, run_id)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        blocked = await asyncio.create_subprocess_exec(
            *daemon_command(data_dir)[:-4],  # without "--port 0 --data-dir DIR" ...
            "--port", str(taken.getsockname()[1]), "--data-dir", str(data_dir),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(blocked.communicate(), 30)
    assert blocked.returncode == 1 and b"address already in use" in stderr.lower()
    assert run_state(db_path, run_id) == ("running", None)  # a daemon that could not serve recovered nothing

    async with running_daemon(data_dir):
        assert run_state(db_path, run_id) == ("failed", "interrupted")


def modes(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]}


def test_data_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """Also: a data dir made by an older pivotd (0755) is tightened, not refused."""
    data_dir = tmp_path / "state"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "token").write_text("left-by-an-older-pivotd\n")
    (data_dir / "token").chmod(0o644)
    daemon = start_daemon_process(data_dir, shell_setup="umask 022; ulimit -Sn 256")
    try:
        with httpx.Client(verify=PLAIN_HTTP, base_url=daemon.url) as http:
            assert http.post("/api/v1/runs/r1/scalars", json=[{"step": 1, "values": {"loss": 1.0}}]).status_code == 202
            session = http.post("/api/v1/training/sessions", json=SESSION)
            uploaded = http.post(
                "/api/v1/checkpoints",
                data={"session_id": session.json()["session_id"]},
                files={"file": ("weights.pth", checkpoint_bytes())},
                timeout=60,  # checked in a fresh interpreter that imports torch: seconds on a loaded machine
            )
            assert uploaded.status_code == 201, uploaded.text
        found = modes(data_dir)
        for name in ("pivot.db", "pivot.db-wal", "pivot.db-shm", "token", "daemon.json", "pivotd.lock"):
            assert name in found
        assert found.pop(".") == 0o700
        assert {name: mode for name, mode in found.items() if mode not in (0o600, 0o700)} == {}
        assert any(name.endswith(".pth") and mode == 0o600 for name, mode in found.items())
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        soft, hard = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3:5]
        assert soft == hard  # lifted from the 256 the shell gave it
    finally:
        daemon.stop()


def checkpoint_bytes() -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2, 2)}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", [0o777, 0o1777])
def test_a_directory_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    result = start_refused(shared)
    assert "writable by other users" in result
    assert list(shared.iterdir()) == []


def start_refused(data_dir: Path) -> str:
    result = subprocess.run(daemon_command(data_dir), capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_REFUSED, result.stderr
    return result.stderr
