"""`pivot-tui` refuses clearly when it cannot use the daemon, before drawing anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from pivot_tui.cli import EXIT_UNAUTHORIZED, EXIT_UNREACHABLE
from pivot_tui.config import resolve
from shared.locations import state_dir
from tests.daemon import running_daemon


def run_tui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pivot_tui.cli", *args], capture_output=True, text=True, timeout=60)


def test_unreachable_daemon_says_how_to_start_one() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = run_tui("--url", f"http://127.0.0.1:{port}")
    assert result.returncode == EXIT_UNREACHABLE
    assert "cannot reach pivotd" in result.stderr and "pivotd" in result.stderr


async def test_a_daemon_that_wants_a_token_says_so(tmp_path: Path) -> None:
    import asyncio

    async with running_daemon(tmp_path, trust_loopback=False) as daemon:
        result = await asyncio.to_thread(run_tui, "--url", daemon.url)
    assert result.returncode == EXIT_UNAUTHORIZED and "--token" in result.stderr


def test_version() -> None:
    assert run_tui("--version").stdout.startswith("pivot-tui ")


def test_the_local_token_is_used_only_for_the_local_daemon() -> None:
    state = state_dir()  # the isolated environment's (tests/conftest.py)
    state.mkdir(parents=True)
    (state / "token").write_text("local-token")
    (state / "daemon.json").write_text('{"url": "http://127.0.0.1:8000"}')
    assert resolve().token == resolve(url="http://localhost:8000/").token == "local-token"
    assert resolve(url="http://127.0.0.1:8010").token is None  # another daemon: no token beats a wrong one
    assert resolve(url="http://gpu-box:8000", token="t").token == "t"
