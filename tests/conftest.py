from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.daemon import RunningDaemon, running_daemon


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", help="also run the long schema fuzz (docs/testing.md)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long fuzz takes minutes: `make test` and CI (plain `pytest`) leave it out; deselected, not skipped, so
    that it is not reported as something missing."""
    if config.getoption("--fuzz-long"):
        return
    long = [item for item in items if item.get_closest_marker("fuzz_long")]
    if long:
        config.hook.pytest_deselected(items=long)
        items[:] = [item for item in items if not item.get_closest_marker("fuzz_long")]


@pytest.fixture(autouse=True)
def no_local_daemon_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clients in tests never pick up a developer's own daemon token: presented credentials are checked
    even from loopback, so a stray `~/.local/state/pivot/token` would turn trusted requests into 401s."""
    for name in ("PIVOT_URL", "PIVOT_TOKEN", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path / "state") as running:
        yield running


@pytest.fixture
async def http(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=10) as client:
        yield client
