"""`pivot-tui` refuses clearly when it cannot use the daemon, before drawing anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_boxes_from_flags_and_the_hosts_file() -> None:
    from pivot_tui.config import resolve_hosts
    from shared.hosts import HostsError, hosts_path

    hosts_path().parent.mkdir(parents=True, exist_ok=True)
    hosts_path().write_text('[hosts.gpu-1]\nssh = "gpu-1"\n[hosts.lab]\nurl = "http://10.0.0.5:8000"\ntoken = "t"\n')
    boxes = resolve_hosts(["http://127.0.0.1:8001/"], ["lab"], False, ["me@gpu-2"], None)
    assert [(b.name, b.url, b.ssh) for b in boxes] == [
        ("127.0.0.1:8001", "http://127.0.0.1:8001", None),
        ("lab", "http://10.0.0.5:8000", None),
        ("me@gpu-2", None, "me@gpu-2"),
    ]
    assert [b.name for b in resolve_hosts([], [], True, [], None)] == ["gpu-1", "lab"]
    assert resolve_hosts([], [], False, [], None) == ()
    with pytest.raises(HostsError, match="named twice"):
        resolve_hosts([], ["lab"], True, [], None)
    result = run_tui("--host", "nope")  # before anything connects: exit 2 with the file and the names known
    assert result.returncode == 2 and "no host 'nope'" in result.stderr and "gpu-1, lab" in result.stderr
