"""pivot-tui in a real terminal (tmux) against a real daemon: keys in, screen text out."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import DaemonProcess, start_daemon_process
from tests.payloads import layerwise_payload

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"),
]


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10)


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon_process(tmp_path / "state")
    yield daemon
    daemon.signal(signal.SIGTERM)
    daemon.wait()


def screen_text(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def wait_for(session: str, *texts: str, timeout: float = 20) -> str:
    """Read the terminal until every one of `texts` shows up on one screen.

    The TUI renders asynchronously and its parts (table, header, status bar) catch up independently, so a test
    that needs two things on screen waits for both rather than asserting the second once the first appears.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = screen_text(session)
        if all(text in screen for text in texts):
            return screen
        time.sleep(0.2)  # polling a terminal: there is no event to await from outside tmux
    raise AssertionError(f"{texts!r} never all appeared; screen was:\n{screen_text(session)}")


def test_browse_a_live_run(daemon_process: DaemonProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=daemon_process.url) as http:
        for step in range(3):
            http.post("/api/v1/metrics/layerwise", json=layerwise_payload("tmux_run", step * 10, layers=3))
        http.post("/api/v1/runs/tmux_run/scalars", json=[{"step": 20, "values": {"train_loss": 0.75}}])
    session = f"pivot-tui-test-{os.getpid()}"
    command = f"{sys.executable} -m pivot_tui.cli --url {daemon_process.url}"
    env = {"TERM": "xterm-256color", "COLORTERM": ""}  # no truecolor: the palette must still read
    assert tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", *[f"-e{k}={v}" for k, v in env.items()],
                command).returncode == 0  # fmt: skip
    try:
        screen = wait_for(session, "tmux_run", "online", "0.75")
        row = next(line for line in screen.splitlines() if "tmux_run" in line)
        assert row.split()[:3] == ["tmux_run", "script", "running"]  # columns line up in a real terminal
        tmux("send-keys", "-t", session, "Enter")
        # A layer's row: the run's history has loaded (the heatmap's frame names its metric before that).
        wait_for(session, "encoder/linear0", "gradient_l2_norm · steps 0..20", "LIVE")
        tmux("send-keys", "-t", session, "Left")
        wait_for(session, "PAUSED")
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 10
        while tmux("has-session", "-t", session).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tmux("has-session", "-t", session).returncode != 0, "pivot-tui did not quit on q"
    finally:
        tmux("kill-session", "-t", session)


def test_three_boxes_in_a_real_terminal_one_stopped_and_restarted(tmp_path: Path) -> None:
    daemons = [start_daemon_process(tmp_path / name) for name in ("alpha", "beta", "gamma")]
    session = f"pivot-tui-fleet-{os.getpid()}"
    try:
        for daemon, run_id in zip(daemons, ("alpha_run", "beta_run", "gamma_run"), strict=True):
            httpx.post(f"{daemon.url}/api/v1/metrics/layerwise", json=layerwise_payload(run_id, 0, layers=3))
        urls = " ".join(f"--url {daemon.url}" for daemon in daemons)
        command = f"{sys.executable} -m pivot_tui.cli {urls}"
        assert tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-eTERM=xterm-256color",
                    command).returncode == 0  # fmt: skip
        screen = wait_for(session, "gamma_run", "3/3 online")
        gamma_host = daemons[2].url.removeprefix("http://")
        row = next(line for line in screen.splitlines() if "gamma_run" in line)
        assert row.split()[:4] == [gamma_host, "gamma_run", "script", "running"]  # a Host column, lined up

        tmux("send-keys", "-t", session, "5")
        screen = wait_for(session, "3/3 boxes online")
        assert sum("● online" in line for line in screen.splitlines()) == 3

        # gamma stops: its row says offline, the others stay online.
        port = gamma_host.rsplit(":", 1)[1]
        daemons[2].signal(signal.SIGTERM)
        daemons[2].wait()
        screen = wait_for(session, "○ offline", "2/3 boxes online")
        assert sum("● online" in line for line in screen.splitlines()) == 2
        daemons[2] = start_daemon_process(tmp_path / "gamma", "--port", port)
        wait_for(session, "3/3 boxes online", timeout=30)
        tmux("send-keys", "-t", session, "q")
    finally:
        tmux("kill-session", "-t", session)
        for daemon in daemons:
            if daemon.proc.poll() is None:
                daemon.signal(signal.SIGTERM)
                daemon.wait()
