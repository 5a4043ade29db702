from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pivotd.jobs import forkserver
from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.sshd import sshd  # noqa: F401 (a fixture: a real sshd on loopback, for the tunnel and the TUI)


def pytest_configure(config: pytest.Config) -> None:
    """Bytecode caches on, whatever the environment says (this VM exports PYTHONDONTWRITEBYTECODE=1): without
    them each xdist worker rewrites every test module's asserts again and every process the suite starts (about a
    hundred `pivotd`, `pivotctl`, SDK scripts, ranks) compiles the project from source, 0.3-0.5 s of CPU each.
    The caches go to the git-ignored `__pycache__` folders. Runs before xdist starts its workers, which inherit
    the environment."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """One worker more than there are cores for `-n auto`: a tenth of the suite's time is tests waiting on other
    processes, timers and sockets, which a third worker on two cores fills (249 s against 305 s on this VM; four
    workers took longer and made tests wait past their deadlines, docs/performance.md)."""
    return len(os.sched_getaffinity(0)) + 1


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", help="also run the long schema fuzz (docs/testing.md)")


@pytest.fixture(autouse=True)
def no_local_daemon_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clients in tests never pick up a developer's own daemon token: presented credentials are checked
    even from loopback, so a stray `~/.local/state/pivot/token` would turn trusted requests into 401s."""
    for name in ("PIVOT_URL", "PIVOT_TOKEN", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A module whose tests share one daemon runs on one xdist worker, which then boots that daemon once. The
    long fuzz takes minutes: `make test` and CI (plain `pytest`) leave it out; deselected, not skipped, so that it
    is not reported as something missing. Under xdist, `slow` tests go first: workers take tests in this order, and
    a long one started last keeps the run waiting for it with the other cores idle."""
    if not config.getoption("--fuzz-long"):
        long = [item for item in items if item.get_closest_marker("fuzz_long")]
        if long:
            config.hook.pytest_deselected(items=long)
            items[:] = [item for item in items if not item.get_closest_marker("fuzz_long")]
    for item in items:
        if item.get_closest_marker("shared_daemon") is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    if getattr(config.option, "numprocesses", None):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: otherwise as collected


@pytest.fixture
def fork_server() -> None:
    """This test process's training fork server (one for all its daemons), started if there is none and past its
    imports: a run that found it still importing would start in a fresh interpreter importing torch as well (1.5
    to 3 s of CPU each; a sweep starts several meanwhile). tests/training/test_forkserver.py tests that path."""
    assert forkserver.start(os.environ).ready.wait(120), "the training fork server did not start in 120 s"


@pytest.fixture(scope="module")
def daemon_settings() -> dict[str, Any]:
    """Settings for the `daemon` fixture's pivotd; a module or conftest overrides this to change them."""
    return {}


@pytest.fixture
async def own_daemon(tmp_path: Path, daemon_settings: dict[str, Any]) -> AsyncIterator[RunningDaemon]:
    """A pivotd for this test alone."""
    async with running_daemon(tmp_path / "state", **daemon_settings) as running:
        yield running


@pytest.fixture(scope="module")
async def module_daemon(
    tmp_path_factory: pytest.TempPathFactory, daemon_settings: dict[str, Any]
) -> AsyncIterator[RunningDaemon]:
    """One pivotd for every `shared_daemon` test of a module (as datasette's `ds_client`): those tests only read
    or write under their own ids, so they cannot see each other. It runs on the module's event loop."""
    async with running_daemon(tmp_path_factory.mktemp("module-daemon") / "state", **daemon_settings) as running:
        yield running


@pytest.fixture
def daemon(request: pytest.FixtureRequest) -> RunningDaemon:
    """The test's pivotd: the module's shared one where the test is marked `shared_daemon` (and not `own_daemon`),
    else one of its own. Tests that change daemon-wide state (settings, keys, restarts, limits) take their own."""
    node = request.node
    shared = node.get_closest_marker("shared_daemon") is not None and node.get_closest_marker("own_daemon") is None
    running: RunningDaemon = request.getfixturevalue("module_daemon" if shared else "own_daemon")
    return running


@pytest.fixture
async def http(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with daemon_client(daemon.url, timeout=10) as client:
        yield client
