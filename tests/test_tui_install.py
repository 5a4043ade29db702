"""The laptop install docs/tui.md gives: the `tui` extra alone, into a fresh virtualenv on a Python without
torch, from a copy of the checkout. It must install, leave out torch and the server stack, and start against
a real pivotd (in tmux, as a person would run it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import DaemonProcess, start_daemon_process
from tests.payloads import layerwise_payload
from tests.tui.test_tmux import tmux, wait_for

ROOT = Path(__file__).resolve().parent.parent
SERVER_STACK = ("torch", "fastapi", "starlette", "uvicorn", "aiosqlite", "scipy", "numpy", "psutil")

# One xdist group: both tests use the module's virtualenv, which a second worker would build again (~16 s).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tui_install")]


def base_python() -> Path:
    """The interpreter under this virtualenv: a Python with none of the project's dependencies."""
    return Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def tui_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("laptop")
    # A copy, so that building the wheel leaves nothing (build/, *.egg-info) in the checkout.
    checkout = work / "pivot"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, checkout / name)
    for package in ("pivotd", "pivot_tui", "shared"):
        shutil.copytree(ROOT / package, checkout / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = work / "venv"
    subprocess.run([base_python(), "-m", "venv", venv], check=True, timeout=120)
    # The command docs/tui.md gives, with the repository's pins.
    install = [venv / "bin" / "pip", "install", "-q", "-c", checkout / "constraints.txt", f"{checkout}[tui]"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


@pytest.fixture
def daemon_process(tmp_path: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon_process(tmp_path / "state")
    yield daemon
    daemon.stop()


def test_the_tui_extra_installs_without_torch_or_the_server_stack(tui_venv: Path) -> None:
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run(
        [tui_venv / "bin" / "python", "-c", probe, *SERVER_STACK, "textual"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert found.stdout.split() == ["textual"]
    version = subprocess.run([tui_venv / "bin" / "pivot-tui", "--help"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "--url" in version.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_installed_tui_shows_a_remote_daemons_runs(tui_venv: Path, daemon_process: DaemonProcess) -> None:
    with httpx.Client(base_url=daemon_process.url) as http:
        http.post("/api/v1/metrics/layerwise", json=layerwise_payload("laptop_run", 0, layers=3))
    session = f"pivot-tui-install-{os.getpid()}"
    command = f"{tui_venv / 'bin' / 'pivot-tui'} --url {daemon_process.url}"
    assert tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command).returncode == 0
    try:
        screen = wait_for(session, "laptop_run")
        assert "online" in screen
    finally:
        tmux("kill-session", "-t", session)
