"""pivot-tui in a real terminal (tmux) against real daemons: keys in, screen text out. The daemons run in the
test's process (tests/daemon.py: uvicorn, the SQLite file) and serve while the test reads the terminal from a
thread; tests/test_tui_install.py runs the installed TUI against a `pivotd` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.payloads import layerwise_payload

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"),
]


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)


def screen_text(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def wait_for(session: str, *texts: str, timeout: float = 20, online: int | None = None) -> str:
    """Read the terminal until every one of `texts` shows up on one screen (and, given `online`, that many rows
    read "● online").

    The TUI renders asynchronously and its parts (table, header, status bar) catch up independently, so a test
    that needs two things on screen waits for both rather than asserting the second once the first appears.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = screen_text(session)
        if all(text in screen for text in texts) and online in (None, online_rows(screen)):
            return screen
        time.sleep(0.1)  # polling a terminal: there is no event to await from outside tmux
    raise AssertionError(f"{texts!r} never all appeared; screen was:\n{screen_text(session)}")


def online_rows(screen: str) -> int:
    return sum("● online" in line for line in screen.splitlines())


async def seen(session: str, *texts: str, timeout: float = 20, online: int | None = None) -> str:
    """`wait_for` from a thread, so that the daemons on this event loop keep serving the TUI meanwhile."""
    return await asyncio.to_thread(wait_for, session, *texts, timeout=timeout, online=online)


async def test_browse_a_live_run(daemon: RunningDaemon) -> None:
    async with daemon_client(daemon.url) as http:
        for step in range(3):
            await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("tmux_run", step * 10, layers=3))
        await http.post("/api/v1/runs/tmux_run/scalars", json=[{"step": 20, "values": {"train_loss": 0.75}}])
    session = f"pivot-tui-test-{os.getpid()}"
    command = f"{sys.executable} -m pivot_tui.cli --url {daemon.url}"
    env = {"TERM": "xterm-256color", "COLORTERM": ""}  # no truecolor: the palette must still read
    assert tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", *[f"-e{k}={v}" for k, v in env.items()],
                command).returncode == 0  # fmt: skip
    try:
        screen = await seen(session, "tmux_run", "online", "0.75")
        row = next(line for line in screen.splitlines() if "tmux_run" in line)
        assert row.split()[:3] == ["tmux_run", "script", "running"]  # columns line up in a real terminal
        tmux("send-keys", "-t", session, "Enter")
        # A layer's row: the run's history has loaded (the heatmap's frame names its metric before that).
        await seen(session, "encoder/linear0", "gradient_l2_norm · steps 0..20", "LIVE")
        tmux("send-keys", "-t", session, "Left")
        await seen(session, "PAUSED")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while tmux("has-session", "-t", session).returncode == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the session ends with its one program: nothing to await from outside tmux
        assert tmux("has-session", "-t", session).returncode != 0, "pivot-tui did not quit on q"
    finally:
        tmux("kill-session", "-t", session)


async def test_three_boxes_in_a_real_terminal_one_stopped_and_restarted(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gamma_port = probe.getsockname()[1]
    session = f"pivot-tui-fleet-{os.getpid()}"
    async with running_daemon(tmp_path / "alpha") as alpha, running_daemon(tmp_path / "beta") as beta:
        gamma_up = contextlib.AsyncExitStack()  # gamma is stopped halfway
        gamma = await gamma_up.enter_async_context(running_daemon(tmp_path / "gamma", port=gamma_port))
        try:
            for daemon, run_id in zip((alpha, beta, gamma), ("alpha_run", "beta_run", "gamma_run"), strict=True):
                async with daemon_client(daemon.url) as http:
                    await http.post("/api/v1/metrics/layerwise", json=layerwise_payload(run_id, 0, layers=3))
            urls = " ".join(f"--url {daemon.url}" for daemon in (alpha, beta, gamma))
            command = f"{sys.executable} -m pivot_tui.cli {urls}"
            assert tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-eTERM=xterm-256color",
                        command).returncode == 0  # fmt: skip
            screen = await seen(session, "gamma_run", "3/3 online")
            gamma_host = gamma.url.removeprefix("http://")
            row = next(line for line in screen.splitlines() if "gamma_run" in line)
            assert row.split()[:4] == [gamma_host, "gamma_run", "script", "running"]  # a Host column, lined up

            tmux("send-keys", "-t", session, "5")
            # Three rows online: the boxes' rows are drawn after the header's count, so both are waited for (a
            # screen that never shows both fails the test with what it showed).
            await seen(session, "3/3 boxes online", online=3)

            # gamma stops: its row says offline, the others stay online.
            await gamma_up.aclose()
            await seen(session, "○ offline", "2/3 boxes online", online=2)
            async with running_daemon(tmp_path / "gamma", port=gamma_port):
                await seen(session, "3/3 boxes online", timeout=30)
                tmux("send-keys", "-t", session, "q")
        finally:
            tmux("kill-session", "-t", session)
            await gamma_up.aclose()  # nothing left to close once it was stopped
