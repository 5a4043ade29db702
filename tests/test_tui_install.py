"""The laptop install docs/tui.md gives: the `tui` extra alone, into a fresh virtualenv on a Python without
torch, from a copy of the checkout. It must install, leave out torch and the server stack, and start against
a real pivotd (in tmux, as a person would run it)."""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.daemon import RunningDaemon
from tests.node_packages import cache_dir
from tests.payloads import layerwise_payload
from tests.tui.test_tmux import seen, tmux

ROOT = Path(__file__).resolve().parent.parent
SERVER_STACK = ("torch", "fastapi", "starlette", "uvicorn", "aiosqlite", "scipy", "numpy", "psutil")

# One xdist group: both tests use the module's virtualenv, which a second worker would build again.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tui_install")]


def base_python() -> Path:
    """The interpreter under this virtualenv: a Python with none of the project's dependencies."""
    return Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def pip(python: Path, *args: str | Path) -> None:
    """This environment's pip, working on `python`'s environment (pip's `--python`)."""
    command = [sys.executable, "-m", "pip", "--python", python, *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def wheelhouse(checkout: Path) -> Path:
    """Wheels of everything `pip install './pivot[tui]'` resolves to, and of the build backend, downloaded from the
    configured indexes once a day per pyproject.toml and constraints.txt (shared by test runs and checkouts under a
    file lock, as tests/node_packages.py's installs are). The install then resolves the same requirements again,
    offline: a requirement that pulled in torch or the server stack would be here and be installed."""
    key = hashlib.sha256(f"python{sys.version_info.major}.{sys.version_info.minor} {datetime.date.today()}".encode())
    for name in ("pyproject.toml", "constraints.txt"):
        key.update((checkout / name).read_bytes())
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    house = cache / f"tui-wheels-{key.hexdigest()[:16]}"
    with (cache / "tui-wheels.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (house / "complete").is_file():
            build = tomllib.loads((checkout / "pyproject.toml").read_text())["build-system"]["requires"]
            staging = cache / f"{house.name}.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            pip(base_python(), "wheel", "-q", "-w", staging, "-c", checkout / "constraints.txt", f"{checkout}[tui]",
                *build)  # fmt: skip
            for own in staging.glob("pivot_ml-*.whl"):  # built from the checkout: installed from its copy below
                own.unlink()
            (staging / "complete").touch()
            shutil.rmtree(house, ignore_errors=True)  # one an older, unlocked run left half done
            staging.rename(house)
    return house


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
    # No pip of its own (ensurepip's install of pip and setuptools was a third of the time): this environment's
    # pip installs into it. The command docs/tui.md gives otherwise, with the repository's pins: the checkout's
    # `tui` extra, its wheel built from source in an isolated build environment. Not byte-compiled: the TUI
    # imports a fraction of what is installed.
    subprocess.run([base_python(), "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    house = wheelhouse(checkout)
    pip(venv / "bin" / "python", "install", "-q", "--no-compile", "--no-index", "--find-links", house,
        "-c", checkout / "constraints.txt", f"{checkout}[tui]")  # fmt: skip
    return venv


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
async def test_the_installed_tui_shows_a_remote_daemons_runs(
    tui_venv: Path, daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    """The daemon runs in the test process (what is tested is the installed TUI, in a process and a virtualenv
    of its own); it serves while `seen` reads the terminal from a thread."""
    await http.post("/api/v1/metrics/layerwise", json=layerwise_payload("laptop_run", 0, layers=3))
    session = f"pivot-tui-install-{os.getpid()}"
    command = f"{tui_venv / 'bin' / 'pivot-tui'} --url {daemon.url}"
    assert tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command).returncode == 0
    try:
        screen = await seen(session, "laptop_run")
        assert "online" in screen
    finally:
        tmux("kill-session", "-t", session)
